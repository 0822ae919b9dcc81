"""The committee's keys: whose key is whose (one member a key, a member adding only
their own), the committee's key made, exported and published as a Web Key Directory,
the [committee.encryption] policies validated, and the `mailflow keys` commands run as
an administrator runs them, leaving no gpg-agent behind."""

from __future__ import annotations

import json
import subprocess
import sys

import gnupg
import pytest
from pgpkit import agents_of

from mailflow import config as config_mod
from mailflow.case import keys
from mailflow.config import ConfigError
from mailflow.mail import openpgp, wkd
from mailflow.testing import CHAIR, M1, M2, wait_until, write_config

REPORTER = "ada@example.net"


def make_config(root, extra=""):
    path = write_config(root / "mailflow.toml", listen_port=1, relay_port=None,
                        archive=root / "archive", extra=extra)
    return config_mod.load(str(path))


@pytest.fixture
def cfg(gnupg_homes):
    return make_config(gnupg_homes.root)


# -- whose key is whose ------------------------------------------------------------

def test_an_administrators_import_files_each_key_where_it_belongs(gnupg_homes, cfg):
    rings = gnupg_homes.keyrings()
    m1 = gnupg_homes.person("Em One", M1)
    ada = gnupg_homes.person("Ada", REPORTER)
    both = gnupg_homes.person("Two Hats", M2)
    # One key carrying two members' addresses: whose signature would it be?
    subprocess.run(["gpg", "--homedir", str(both.home), "--batch", "--quick-add-uid",
                    both.fingerprint, f"Chair <{CHAIR}>"], check=True, capture_output=True)
    added = keys.add_keys(rings, cfg, m1.public() + ada.public() + both.public())
    where = {a.key.fingerprint: a for a in added}
    assert where[m1.fingerprint].ring == "committee" and where[m1.fingerprint].member == M1
    assert where[ada.fingerprint].ring == "correspondents"
    assert where[both.fingerprint].ring == "" and "several members" in \
        where[both.fingerprint].refused
    assert {k.fingerprint for k in rings.committee.all_keys()} == {m1.fingerprint}
    assert {k.fingerprint for k in rings.correspondents.all_keys()} == {ada.fingerprint}
    assert keys.member_key(rings, M1).fingerprint == m1.fingerprint
    # A reporter's key never speaks for anyone on the committee side.
    assert rings.committee.key_for(REPORTER) is None


def test_a_member_adding_a_key_by_mail_may_add_only_their_own(gnupg_homes, cfg):
    rings = gnupg_homes.keyrings()
    m1 = gnupg_homes.person("Em One", M1)
    chair = gnupg_homes.person("The Chair", CHAIR)
    stranger = gnupg_homes.person("Stranger", "someone@example.net")
    ok = keys.add_keys(rings, cfg, m1.public(), sender=M1)
    assert [a.ring for a in ok] == ["committee"]
    # M1 sends the chair's key (or a key they made with the chair's address on it).
    refused = keys.add_keys(rings, cfg, chair.public(), sender=M1)
    assert refused[0].ring == "" and "chair@example.org's key, not yours" in refused[0].refused
    refused = keys.add_keys(rings, cfg, stranger.public(), sender=M1)
    assert refused[0].ring == "" and "does not carry your address" in refused[0].refused
    expired = gnupg_homes.person("Em One", M1, expires="1y", at="20200101T000000")
    refused = keys.add_keys(rings, cfg, expired.public(), sender=M1)
    assert "cannot be used to encrypt" in refused[0].refused
    assert rings.committee.key_for(CHAIR) is None
    assert {k.fingerprint for k in rings.committee.all_keys()} == {m1.fingerprint}


def test_no_imported_key_may_carry_the_committees_own_address(gnupg_homes, cfg):
    rings = gnupg_homes.keyrings()
    fake = gnupg_homes.person("Conduct Committee", "conduct@example.org")
    added = keys.add_keys(rings, cfg, fake.public())
    assert added[0].ring == "" and "committee's own address" in added[0].refused
    assert rings.committee.all_keys() == [] and rings.correspondents.all_keys() == []


def test_a_user_id_without_a_valid_self_signature_names_nobody(gnupg_homes, cfg):
    rings = gnupg_homes.keyrings()
    m1 = gnupg_homes.person("Em One", M1)
    # Take M1's public key and graft a user ID for the chair onto it, unsigned: the
    # OpenPGP packets allow it, GnuPG's import drops it.
    grafted = _graft_unsigned_uid(m1, f"Chair <{CHAIR}>")
    added = keys.add_keys(rings, cfg, grafted)
    assert [a.member for a in added] == [M1]
    assert rings.committee.key_for(CHAIR) is None


def _graft_unsigned_uid(person, uid: str) -> bytes:
    """The person's binary public key with a user ID packet (tag 13) inserted after the
    primary key packet, without its self-signature."""
    data = person.gpg.export_keys(person.fingerprint, armor=False)
    first_len = _packet_length(data)
    body = uid.encode()
    packet = bytes([0xC0 | 13, len(body)]) + body
    return data[:first_len] + packet + data[first_len:]


def _packet_length(data: bytes) -> int:
    """The length of the first OpenPGP packet (new or old format), header included."""
    tag = data[0]
    if tag & 0x40:  # new format
        first = data[1]
        if first < 192:
            return 2 + first
        if first < 224:
            return 3 + ((first - 192) << 8) + data[2] + 192
        return 6 + int.from_bytes(data[2:6], "big")
    kind = tag & 3
    size = {0: 1, 1: 2, 2: 4}[kind]
    return 1 + size + int.from_bytes(data[1:1 + size], "big")


def test_the_committee_key_is_the_newest_held_for_the_conduct_address(gnupg_homes, cfg):
    rings = gnupg_homes.keyrings()
    assert keys.committee_key(rings, cfg) is None
    first = rings.committee.generate(cfg.committee.name, cfg.committee.conduct_address)
    m1 = gnupg_homes.person("Em One", M1)
    rings.committee.import_keys(m1.public())
    assert keys.committee_key(rings, cfg).fingerprint == first.fingerprint
    assert first.secret and first.usable() and first.owner.endswith("<conduct@example.org>")


# -- the Web Key Directory ---------------------------------------------------------

def test_wkd_names_follow_the_draft_and_gnupg():
    # The example of draft-koch-openpgp-webkey-service.
    assert wkd.local_part_hash("Joe.Doe@Example.ORG") == "iy9q119eutrkn8s1mk4r39qejnbu3n5q"
    assert wkd.zbase32(b"") == "" and len(wkd.zbase32(b"\xff" * 20)) == 32


def test_the_wkd_tree_serves_the_committee_key_both_ways(gnupg_homes, cfg, tmp_path):
    rings = gnupg_homes.keyrings()
    key = rings.committee.generate(cfg.committee.name, "Conduct@example.org")
    listing = subprocess.run(["gpg", "--homedir", str(rings.committee.home), "--with-wkd-hash",
                              "--list-keys", key.fingerprint], capture_output=True, text=True)
    hashed = wkd.local_part_hash("Conduct@example.org")
    assert f"{hashed}@example.org" in listing.stdout  # GnuPG computes the same name
    written = wkd.write_tree(tmp_path / "wkd", "Conduct@example.org",
                             rings.committee.export(key.fingerprint, armor=False))
    base = tmp_path / "wkd" / ".well-known" / "openpgpkey"
    assert set(written) == {base / "hu" / hashed, base / "policy",
                            base / "example.org" / "hu" / hashed, base / "example.org" / "policy"}
    assert (base / "hu" / hashed).stat().st_mode & 0o777 == 0o644
    # What a client fetches is the binary key, and it is the committee's.
    fetched = (base / "example.org" / "hu" / hashed).read_bytes()
    assert not fetched.startswith(b"-----")
    reader = openpgp.Keyring(gnupg_homes.root / "reader")
    gnupg_homes.homes.append(reader.home)
    assert reader.import_keys(fetched) == [key.fingerprint]


# -- [committee.encryption] --------------------------------------------------------

def test_encryption_policies_default_and_per_member(tmp_path):
    cfg = make_config(tmp_path, extra='[committee.encryption]\ndefault = "required"\n'
                      '"M1@example.org" = "never"\n')
    assert cfg.committee.encryption_policy(M1) == "never"
    assert cfg.committee.encryption_policy(M2) == "required"
    assert make_config(tmp_path).committee.encryption_policy(M2) == "if-key"


@pytest.mark.parametrize(("table", "problem"), [
    ('default = "always"', "'always' is not one of if-key, required, never"),
    ('"x@example.net" = "required"', '"x@example.net": not a member'),
    ("default = 1", "1 is not one of"),
])
def test_a_wrong_encryption_policy_is_named(tmp_path, table, problem):
    with pytest.raises(ConfigError, match=problem):
        make_config(tmp_path, extra=f"[committee.encryption]\n{table}\n")


# -- the commands ------------------------------------------------------------------

def mailflow(cfg, *args, stdin=None):
    return subprocess.run([sys.executable, "-m", "mailflow", "--config", cfg.source, *args],
                          capture_output=True, input=stdin, timeout=60)


def test_the_keys_commands_make_list_import_and_export(gnupg_homes, cfg):
    done = mailflow(cfg, "keys", "export")
    assert done.returncode == 78 and b"keys generate" in done.stderr
    made = mailflow(cfg, "keys", "generate")
    assert made.returncode == 0, made.stderr
    again = mailflow(cfg, "keys", "generate")
    assert again.returncode == 78 and b"already has a key" in again.stderr
    m1 = gnupg_homes.person("Em One", M1, expires="2y")
    keyfile = gnupg_homes.root / "m1.asc"
    keyfile.write_bytes(m1.public())
    imported = mailflow(cfg, "keys", "import", str(keyfile))
    assert imported.returncode == 0 and f"imported for {M1}".encode() in imported.stdout
    assert mailflow(cfg, "keys", "import", "-", stdin=b"junk").returncode == 65
    listed = json.loads(mailflow(cfg, "keys", "--json").stdout)
    whose = {k["fingerprint"]: k["whose"] for k in listed["keys"]}
    assert whose[listed["committee_key"]] == "committee" and whose[m1.fingerprint] == M1
    m1_entry = next(k for k in listed["keys"] if k["fingerprint"] == m1.fingerprint)
    assert m1_entry["owner"] == f"Em One <{M1}>" and m1_entry["expires"]
    by_member = {m["member"]: m for m in listed["members"]}
    assert by_member[M1]["key"] == m1.fingerprint and by_member[M2]["key"] is None
    text = mailflow(cfg, "keys").stdout.decode()
    assert m1.fingerprint in text and "committee:" in text
    exported = mailflow(cfg, "keys", "export")
    assert exported.stdout.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert b"Web Key Directory" in exported.stderr
    hashed = wkd.local_part_hash("conduct@example.org")
    assert (cfg.archive_dir / "wkd" / ".well-known" / "openpgpkey" / "hu" / hashed).exists()
    # The keyring is the owner's alone, and no command leaves an agent running.
    assert cfg.keyring_dir.stat().st_mode & 0o777 == 0o700
    assert (cfg.keyring_dir / "committee").stat().st_mode & 0o777 == 0o700
    wait_until(lambda: agents_of(cfg.keyring_dir / "committee") == [], timeout=5,
               what="the agent `keys generate` stopped to end")


def test_init_with_key_makes_the_committee_key(gnupg_homes):
    target = gnupg_homes.root / "site" / "mailflow.toml"
    target.parent.mkdir()
    done = subprocess.run([sys.executable, "-m", "mailflow", "init", str(target), "--with-key"],
                          capture_output=True, cwd=target.parent, timeout=60)
    assert done.returncode == 0, done.stderr
    assert b"committee key" in done.stdout
    keyring = target.parent / "archive" / "keyring" / "committee"
    gnupg_homes.homes.append(keyring)
    held = gnupg.GPG(gnupghome=str(keyring)).list_keys(secret=True)
    assert [k["uids"] for k in held] == [["Example Code of Conduct Committee "
                                          "<conduct@example.org>"]]
    plain = subprocess.run([sys.executable, "-m", "mailflow", "init", "--force", str(target)],
                           capture_output=True, cwd=target.parent, timeout=60)
    assert b"mailflow keys generate" in plain.stdout
