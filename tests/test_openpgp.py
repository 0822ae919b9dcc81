"""OpenPGP with real GnuPG: keys listed with their owner and expiry, mail sealed as
RFC 3156 PGP/MIME with protected headers and read back by the member's own GnuPG,
encrypted reports (PGP/MIME, inline, HTML-only) opened into clear text, and every
signature judged: good, bad, unknown, expired, or covering only part of the mail."""

from __future__ import annotations

import base64
import email
from email.policy import compat32

import pytest
from pgpkit import mime_mail, pgp_mime, pgp_signed

from mailflow.mail import gpgoutput, openpgp, pgpmime
from mailflow.mail.compose import compose
from mailflow.mail.parse import parse
from mailflow.testing import CHAIR, M1, M2, write_config

REPORTER = "ada@example.net"


def config(tmp_path):
    from mailflow import config as config_mod
    path = write_config(tmp_path / "mailflow.toml", listen_port=1, relay_port=None,
                        archive=tmp_path / "archive")
    return config_mod.load(str(path))


# -- keys --------------------------------------------------------------------------

def test_keys_are_listed_with_fingerprint_owner_and_expiry(gnupg_homes):
    rings = gnupg_homes.keyrings()
    m1 = gnupg_homes.person("Em One", M1, expires="2y")
    old = gnupg_homes.person("Old Chair", CHAIR, expires="1y", at="20200101T000000")
    rings.committee.import_keys(m1.public())
    rings.committee.import_keys(old.public())
    listed = {k.fingerprint: k for k in rings.committee.all_keys()}
    key = listed[m1.fingerprint]
    assert key.owner == f"Em One <{M1}>" and key.addresses == (M1,)
    assert key.expires is not None and key.expires.year >= key.created.year + 1
    assert key.usable() and not key.secret
    expired = listed[old.fingerprint]
    assert expired.expires is not None and expired.expires.date().isoformat() == "2020-12-31"
    assert not expired.usable() and expired.addresses == (CHAIR,)
    # Mail is encrypted only to a key that works.
    assert rings.committee.key_for(M1).fingerprint == m1.fingerprint
    assert rings.committee.key_for(CHAIR) is None
    assert rings.committee.key_for("M1@EXAMPLE.ORG").fingerprint == m1.fingerprint


def test_a_key_whose_encryption_subkey_ends_first_expires_then(gnupg_homes):
    rings = gnupg_homes.keyrings()
    m2 = gnupg_homes.person("Em Two", M2, subkey_expires="30d")  # the primary: never
    rings.committee.import_keys(m2.public())
    key = rings.committee.get(m2.fingerprint)
    assert key is not None and key.expires is not None
    assert 29 <= (key.expires - key.created).days <= 30
    assert key.usable() and not key.usable(at=key.created.replace(year=key.created.year + 1))


def test_the_newest_usable_key_of_a_member_is_the_one_used(gnupg_homes):
    rings = gnupg_homes.keyrings()
    first = gnupg_homes.person("M1 old", M1, at="20240101T000000")
    second = gnupg_homes.person("M1 new", M1)
    rings.committee.import_keys(second.public())
    rings.committee.import_keys(first.public())
    assert rings.committee.key_for(M1).fingerprint == second.fingerprint


def test_listing_does_not_start_gpg_agent_and_is_cached(gnupg_homes):
    from pgpkit import agents_of, stop_agents
    rings = gnupg_homes.keyrings()
    rings.committee.generate("Committee", "conduct@example.org")
    assert stop_agents(rings.committee.home)
    ring = openpgp.Keyring(rings.committee.home)  # a new process's view
    assert [k.secret for k in ring.all_keys()] == [True]
    assert agents_of(ring.home) == []
    assert ring.all_keys() == ring.all_keys() and ring._cache is not None


def test_a_secret_key_is_never_imported(gnupg_homes):
    rings = gnupg_homes.keyrings()
    m1 = gnupg_homes.person("Em One", M1)
    with pytest.raises(openpgp.OpenPGPError, match="secret key"):
        rings.committee.import_keys(m1.secret())
    assert rings.committee.all_keys() == []
    with pytest.raises(openpgp.OpenPGPError, match="no OpenPGP public key"):
        rings.committee.import_keys(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnonsense\n")


def test_a_home_too_long_for_gpg_agent_is_refused_with_the_reason(gnupg_homes):
    ring = openpgp.Keyring(gnupg_homes.root / ("x" * 90))
    gnupg_homes.homes.append(ring.home)
    with pytest.raises(openpgp.OpenPGPError, match="shorter archive path"):
        ring.generate("Committee", "conduct@example.org")


# -- sealing mail for a member -----------------------------------------------------

def test_a_sealed_copy_is_rfc3156_and_only_the_member_reads_it(gnupg_homes, tmp_path):
    cfg = config(tmp_path)
    rings = gnupg_homes.keyrings()
    m1 = gnupg_homes.person("Em One", M1)
    rings.committee.import_keys(m1.public())
    out = compose(cfg, from_=("Conduct report via X", "committee@example.org"),
                  to=["committee@example.org"], subject="[coc #2026-0001] New report: Sam "
                  "shouted at Ada", body="Sam shouted at Ada in #general.\n",
                  reply_to="committee+tok@example.org", headers={"Precedence": "list"})
    sealed = pgpmime.seal(rings.committee, out, [m1.fingerprint], "[coc #2026-0001] Amber Fox")
    wire = email.message_from_bytes(sealed.raw, policy=compat32)
    assert wire["Subject"] == "[coc #2026-0001] Amber Fox"
    assert wire["Reply-To"] == "committee+tok@example.org" and wire["Precedence"] == "list"
    assert wire.get_content_type() == "multipart/encrypted"
    assert wire.get_param("protocol") == "application/pgp-encrypted"
    control, data = wire.get_payload()
    assert control.get_content_type() == "application/pgp-encrypted"
    assert control.get_payload().strip() == "Version: 1"
    assert data.get_content_type() == "application/octet-stream"
    assert b"Sam" not in sealed.raw and b"shouted" not in sealed.raw
    # The member's own GnuPG opens it: the real subject inside, protected-headers v1.
    opened = m1.decrypt(data.get_payload().encode())
    assert opened.ok, opened.stderr
    inner = email.message_from_bytes(opened.data, policy=compat32)
    assert inner.get_param("protected-headers") == "v1"
    assert inner["Subject"] == "[coc #2026-0001] New report: Sam shouted at Ada"
    assert inner["From"] == out["From"] and inner["Reply-To"] is None
    assert inner.get_payload(decode=True) == b"Sam shouted at Ada in #general.\r\n"
    # The archive keeps the clear subject and text.
    assert sealed["Subject"] == out["Subject"] and sealed.text == out.text
    # Someone else's GnuPG cannot.
    m2 = gnupg_homes.person("Em Two", M2)
    assert not m2.decrypt(data.get_payload().encode()).ok


def test_a_sealed_copy_with_the_original_attached_keeps_it_inside(gnupg_homes, tmp_path):
    cfg = config(tmp_path)
    rings = gnupg_homes.keyrings()
    m1 = gnupg_homes.person("Em One", M1)
    rings.committee.import_keys(m1.public())
    original = b"From: ada@example.net\r\nSubject: screenshot\r\n\r\nsee attached\r\n"
    out = compose(cfg, from_=("x", "committee@example.org"), to=[M1], subject="S",
                  body="text\n", attach_spool_id=7)  # by reference: delivery streams it
    with pytest.raises(ValueError, match="by reference"):
        pgpmime.seal(rings.committee, out, [m1.fingerprint], "x")
    whole = out.inlined(original)
    assert whole.attach_spool_id is None and whole.raw.endswith(out.tail)
    sealed = pgpmime.seal(rings.committee, whole, [m1.fingerprint], "[coc #2026-0002] Blue Owl")
    data = email.message_from_bytes(sealed.raw, policy=compat32).get_payload()[1]
    inner = email.message_from_bytes(m1.decrypt(data.get_payload().encode()).data,
                                     policy=compat32)
    assert inner.get_content_type() == "multipart/mixed"
    assert inner.get_param("protected-headers") == "v1" and inner["Subject"] == "S"
    attached = inner.get_payload()[1]
    assert attached.get_content_type() == "message/rfc822"
    assert attached.get_payload()[0]["Subject"] == "screenshot"


def test_encrypting_to_an_expired_key_fails_loudly(gnupg_homes):
    rings = gnupg_homes.keyrings()
    old = gnupg_homes.person("Old", M1, expires="1y", at="20200101T000000")
    rings.committee.import_keys(old.public())
    with pytest.raises(openpgp.OpenPGPError, match="could not encrypt"):
        rings.committee.encrypt(b"x", [old.fingerprint])


# -- encrypted reports -------------------------------------------------------------

@pytest.fixture
def committee(gnupg_homes):
    """The committee's keyrings with its own key, and a reporter who has learnt it."""
    rings = gnupg_homes.keyrings()
    key = rings.committee.generate("Test Conduct Committee", "conduct@example.org")
    ada = gnupg_homes.person("Ada", REPORTER)
    ada.learn(rings.committee.export(key.fingerprint))
    return rings, key, ada


THUNDERBIRD_INNER = (
    b'Content-Type: multipart/mixed; boundary="------------inner7";\r\n'
    b' protected-headers="v1"\r\n'
    b"From: Ada <ada@example.net>\r\nTo: conduct@example.org\r\n"
    b"Subject: Sam keeps messaging me after I said stop\r\n\r\n"
    b"--------------inner7\r\nContent-Type: text/plain; charset=UTF-8; format=flowed\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"Sam messaged me 40 times on the forum after I asked him to stop. =\r\n"
    b"Caf=C3=A9 meetup, 12 March.\r\n\r\n"
    b"--------------inner7--\r\n")


def test_a_pgp_mime_report_opens_into_the_clear_message(committee):
    rings, key, ada = committee
    ctype, body = pgp_mime(ada.encrypt(THUNDERBIRD_INNER, key.fingerprint))
    raw = mime_mail(REPORTER, "conduct@example.org", "...", ctype, body, name="Ada")
    opened = pgpmime.unwrap(rings.committee, raw)
    assert opened.encrypted and opened.decrypted and not opened.error
    assert opened.signature.status == "none"
    parsed = parse(opened.raw)
    assert parsed.subject == "Sam keeps messaging me after I said stop"
    assert "40 times on the forum" in parsed.body_text and "Café meetup" in parsed.body_text
    assert parsed.from_addr == REPORTER and parsed.message_id
    assert parsed.attachments == []
    # The outer From and Message-ID stay; the protected From inside is not repeated.
    assert opened.raw.count(b"\nFrom:") + opened.raw.startswith(b"From:") == 1


def test_signed_then_encrypted_and_signed_and_encrypted_at_once_both_verify(committee,
                                                                            gnupg_homes):
    rings, key, _ = committee
    m1 = gnupg_homes.person("Em One", M1)
    m1.learn(rings.committee.export(key.fingerprint))
    rings.committee.import_keys(m1.public())
    entity = b"Content-Type: text/plain; charset=utf-8\r\n\r\n#vote agree\r\n"
    # RFC 3156 6.2: one OpenPGP message, signed and encrypted.
    once = m1.encrypt(entity, key.fingerprint, sign=True)
    ctype, body = pgp_mime(once)
    opened = pgpmime.unwrap(rings.committee, mime_mail(M1, "committee@example.org", "...",
                                                       ctype, body))
    assert opened.decrypted and opened.signature.good
    assert opened.signature.fingerprint == m1.fingerprint
    # RFC 3156 6.1: multipart/signed, then encrypted.
    sctype, sbody = pgp_signed(m1, entity)
    signed_entity = f"Content-Type: {sctype}\r\n\r\n".encode() + sbody
    ctype, body = pgp_mime(m1.encrypt(signed_entity, key.fingerprint))
    opened = pgpmime.unwrap(rings.committee, mime_mail(M1, "committee@example.org", "...",
                                                       ctype, body))
    assert opened.decrypted and opened.signature.good
    assert parse(opened.raw).new_text.strip() == "#vote agree"
    assert parse(opened.raw).attachments == []  # the signature is not left as a file


def test_inline_pgp_in_plain_text_and_in_html_only_mail_is_read(committee):
    rings, key, ada = committee
    block = ada.encrypt("Er hat mich bedroht. Größe egal.\n".encode(), key.fingerprint)
    text = b"Hello,\r\n\r\n" + block.replace(b"\n", b"\r\n") + b"\r\nAda\r\n"
    raw = mime_mail(REPORTER, "conduct@example.org", "Report", "text/plain; charset=utf-8",
                    text)
    opened = pgpmime.unwrap(rings.committee, raw)
    assert opened.decrypted and "Er hat mich bedroht. Größe egal." in parse(opened.raw).body_text
    assert "BEGIN PGP" not in parse(opened.raw).body_text
    # A webmail extension pastes the armor into HTML: <br> for each line.
    html = "<div>" + "<br>".join(block.decode().splitlines()) + "</div>"
    raw = mime_mail(REPORTER, "conduct@example.org", "Report", "text/html; charset=utf-8",
                    html.encode())
    opened = pgpmime.unwrap(rings.committee, raw)
    assert opened.decrypted, opened.error
    assert "Er hat mich bedroht" in parse(opened.raw).body_text


def test_mail_the_committee_cannot_decrypt_is_kept_as_received_and_says_why(committee,
                                                                           gnupg_homes):
    rings, key, ada = committee
    stranger = gnupg_homes.person("Someone", "someone@example.net")
    ctype, body = pgp_mime(_encrypt_to(ada, stranger))
    raw = mime_mail(REPORTER, "conduct@example.org", "...", ctype, body)
    opened = pgpmime.unwrap(rings.committee, raw)
    assert opened.encrypted and not opened.decrypted and opened.raw == raw
    assert "not encrypted to a key the committee holds" in opened.error
    # Damaged on the way: one character of the ciphertext changed.
    good = ada.encrypt(THUNDERBIRD_INNER, key.fingerprint)
    lines = good.split(b"\n")
    middle = len(lines) // 2
    lines[middle] = bytes([lines[middle][0] ^ 1]) + lines[middle][1:]
    ctype, body = pgp_mime(b"\n".join(lines))
    raw = mime_mail(REPORTER, "conduct@example.org", "...", ctype, body)
    opened = pgpmime.unwrap(rings.committee, raw)
    assert opened.encrypted and not opened.decrypted and opened.raw == raw and opened.error
    # multipart/encrypted with its OpenPGP part missing.
    raw = mime_mail(REPORTER, "conduct@example.org", "...",
                    'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="b"',
                    b"--b\r\nContent-Type: application/pgp-encrypted\r\n\r\n"
                    b"Version: 1\r\n--b--\r\n")
    opened = pgpmime.unwrap(rings.committee, raw)
    assert opened.encrypted and not opened.decrypted and opened.raw == raw


def _encrypt_to(sender, recipient):
    sender.learn(recipient.public())
    return sender.encrypt(THUNDERBIRD_INNER, recipient.fingerprint)


def test_a_compressed_bomb_is_refused_not_unpacked(committee):
    rings, key, ada = committee
    bomb = ada.encrypt(b"\0" * (2 * 1024 * 1024), key.fingerprint)  # compresses to ~2 KB
    assert len(bomb) < 20_000
    small = openpgp.Keyring(rings.committee.home)
    small.max_output = 1024 * 1024
    ctype, body = pgp_mime(bomb)
    opened = pgpmime.unwrap(small, mime_mail(REPORTER, "conduct@example.org", "...", ctype, body))
    assert opened.encrypted and not opened.decrypted and "larger than 1 MiB" in opened.error


def test_plain_mail_is_left_alone_without_a_parse(committee):
    rings, _, _ = committee
    raw = mime_mail(REPORTER, "conduct@example.org", "Hi", "text/plain", b"nothing secret\r\n")
    assert pgpmime.unwrap(rings.committee, raw) == pgpmime.Unwrapped(raw)


# -- signatures --------------------------------------------------------------------

@pytest.fixture
def member(committee, gnupg_homes):
    rings, _, _ = committee
    m1 = gnupg_homes.person("Em One", M1)
    rings.committee.import_keys(m1.public())
    return rings, m1


ENTITY = b"Content-Type: text/plain; charset=utf-8\r\n\r\n#violation yes\r\n"


def signed_mail(person, entity=ENTITY, at=None, sender=M1):
    ctype, body = pgp_signed(person, entity, at=at)
    return mime_mail(sender, "committee@example.org", "Re: [coc #2026-0001] Amber Fox",
                     ctype, body)


def test_a_members_pgp_mime_signature_is_good_and_names_their_key(member):
    rings, m1 = member
    opened = pgpmime.unwrap(rings.committee, signed_mail(m1))
    assert opened.signature.good and opened.signature.fingerprint == m1.fingerprint
    assert not opened.encrypted
    parsed = parse(opened.raw)
    assert parsed.new_text.strip() == "#violation yes" and parsed.attachments == []


def test_a_signature_survives_lf_line_ends_and_reencoding_by_a_store(member):
    rings, m1 = member
    raw = signed_mail(m1).replace(b"\r\n", b"\n")
    assert pgpmime.unwrap(rings.committee, raw).signature.good


def test_forged_and_tampered_signatures_are_bad(member, gnupg_homes):
    rings, m1 = member
    tampered = signed_mail(m1).replace(b"#violation yes", b"#violation no!")
    assert pgpmime.unwrap(rings.committee, tampered).signature.status == "bad"
    # The attacker's own key, with the member's address on it: not in the keyring.
    mallory = gnupg_homes.person("Em One", M1)
    verdict = pgpmime.unwrap(rings.committee, signed_mail(mallory)).signature
    assert verdict.status == "unknown" and not verdict.good
    # A signature part that is not a signature.
    raw = signed_mail(m1)
    start = raw.index(b"-----BEGIN PGP SIGNATURE-----")
    end = raw.index(b"-----END PGP SIGNATURE-----") + 27
    junk = raw[:start] + b"not a signature" + raw[end:]
    assert not pgpmime.unwrap(rings.committee, junk).signature.good


def test_a_signature_by_an_expired_key_is_expired_not_good(committee, gnupg_homes):
    rings, _, _ = committee
    old = gnupg_homes.person("Em One", M1, expires="1y", at="20200101T000000")
    rings.committee.import_keys(old.public())
    # Signed while the key was valid; read now, after it expired.
    raw = signed_mail(old, at="20200601T000000")
    verdict = pgpmime.unwrap(rings.committee, raw).signature
    assert verdict.status == "expired" and not verdict.good


def test_a_signature_over_part_of_the_mail_proves_nothing(member):
    rings, m1 = member
    # Inline: a signed line with unsigned commands around it.
    signed = m1.clearsign("#note harmless\n")
    text = f"#close\n\n{signed}".replace("\n", "\r\n").encode()
    raw = mime_mail(M1, "committee@example.org", "Re: x", "text/plain; charset=utf-8", text)
    verdict = pgpmime.unwrap(rings.committee, raw).signature
    assert verdict.status == "partial" and not verdict.good
    # The whole text clearsigned: good, and the text is read without the armor.
    raw = mime_mail(M1, "committee@example.org", "Re: x", "text/plain; charset=utf-8",
                    m1.clearsign("#violation yes\n- dash line\n").replace("\n", "\r\n").encode())
    opened = pgpmime.unwrap(rings.committee, raw)
    assert opened.signature.good and not opened.encrypted
    assert parse(opened.raw).body_text.strip() == "#violation yes\n- dash line"
    # PGP/MIME: a signed part inside a multipart/mixed beside an unsigned part.
    ctype, body = pgp_signed(m1, ENTITY)
    mixed = (b"--outer\r\nContent-Type: " + ctype.encode() + b"\r\n\r\n" + body
             + b"\r\n--outer\r\nContent-Type: text/plain\r\n\r\n#close\r\n--outer--\r\n")
    raw = mime_mail(M1, "committee@example.org", "Re: x",
                    'multipart/mixed; boundary="outer"', mixed)
    assert not pgpmime.unwrap(rings.committee, raw).signature.good


def test_blocks_signed_by_two_keys_or_signed_beside_unsigned_are_partial():
    good_a = gpgoutput.Signature("good", "A" * 40)
    good_b = gpgoutput.Signature("good", "B" * 40)
    assert pgpmime.combined([good_a, good_a]) == good_a
    assert pgpmime.combined([good_a, good_b]).status == "partial"
    assert pgpmime.combined([good_a, gpgoutput.UNSIGNED]).status == "partial"
    assert pgpmime.combined([good_a, gpgoutput.Signature("bad")]).status == "bad"
    assert pgpmime.combined([gpgoutput.Signature("unknown"), good_a]).status == "unknown"
    assert pgpmime.combined([]) == gpgoutput.UNSIGNED


# -- keys sent by mail -------------------------------------------------------------

def test_a_key_is_found_attached_as_a_file_as_pgp_keys_or_pasted(gnupg_homes):
    m1 = gnupg_homes.person("Em One", M1)
    armored = m1.public()
    binary = m1.gpg.export_keys(m1.fingerprint, armor=False)

    def attached(ctype: str, name: str, data: bytes) -> bytes:
        body = (b"--b\r\nContent-Type: text/plain\r\n\r\n#key\r\n--b\r\n"
                + f"Content-Type: {ctype}; name=\"{name}\"\r\n"
                  f"Content-Disposition: attachment; filename=\"{name}\"\r\n"
                  "Content-Transfer-Encoding: base64\r\n\r\n".encode()
                + base64.encodebytes(data) + b"--b--\r\n")
        return mime_mail(M1, "committee@example.org", "my key",
                         'multipart/mixed; boundary="b"', body)

    ring = openpgp.Keyring(gnupg_homes.root / "reader")
    gnupg_homes.homes.append(ring.home)
    for raw in (attached("application/pgp-keys", "0xABCD.asc", armored),
                attached("application/octet-stream", "m1.asc", armored),
                attached("application/octet-stream", "m1.gpg", binary),
                mime_mail(M1, "committee@example.org", "k", "text/plain",
                          b"#key\r\n\r\n" + armored.replace(b"\n", b"\r\n"))):
        found = pgpmime.attached_keys(raw)
        assert found and m1.fingerprint in ring.import_keys(found)
    # A photo or an encrypted file is not a key.
    assert pgpmime.attached_keys(attached("image/png", "m1.png", b"\x89PNG....")) == b""
    assert pgpmime.attached_keys(attached("application/octet-stream", "x.gpg",
                                          b"\x85\x01\x0c...")) == b""
