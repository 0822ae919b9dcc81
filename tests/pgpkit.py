"""Real GnuPG for the tests: people with keys made on the spot, and the committee's
keyrings, each in a GnuPG home of its own under a short temporary directory (gpg-agent
cannot listen on a long socket path), with no agent left running afterwards.

Keys are Ed25519/Curve25519: generating one takes a few milliseconds.  ``at`` (GnuPG's
``--faked-system-time``) makes a key or a signature in the past, which is how a test
gets a key that has since expired.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from email.utils import formataddr, make_msgid
from pathlib import Path

import gnupg

from mailflow.mail.compose import crlf
from mailflow.mail.openpgp import Keyrings
from mailflow.testing import MailflowServer, wait_until

KEY_PARAMS = dict(key_type="EDDSA", key_curve="ed25519", key_usage="sign",
                  subkey_type="ECDH", subkey_curve="cv25519", subkey_usage="encrypt",
                  no_protection=True)


def short_tmp(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def agents_of(home: Path) -> list[int]:
    """Processes still running with ``home`` as their GnuPG home."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        if state != "Z" and str(home).encode() in cmdline and b"--homedir" in cmdline:
            found.append(int(proc.name))
    return found


def stop_agents(home: Path) -> bool:
    """Stop ``home``'s agent; whether it is gone within a few seconds (it exits on its own
    time after being told)."""
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"],
                   capture_output=True, check=False)
    try:
        wait_until(lambda: not agents_of(home), timeout=5, what=f"gpg-agent of {home} to end")
    except AssertionError:
        return False
    return True


class Person:
    """Someone with their own GnuPG: a member or a reporter, and their key."""

    def __init__(self, root: Path, name: str, address: str, *, expires: str = "0",
                 at: str | None = None, subkey_expires: str | None = None):
        self.home = Path(tempfile.mkdtemp(prefix=address.split("@")[0], dir=root))
        self.home.chmod(0o700)
        self.gpg = gnupg.GPG(gnupghome=str(self.home), options=["--trust-model", "always"])
        self.address = address
        self.name = name
        params = dict(KEY_PARAMS)
        if subkey_expires:  # the encryption subkey is added after, with its own end
            params = {k: v for k, v in params.items() if not k.startswith("subkey")}
        text = self.gpg.gen_key_input(name_real=name, name_email=address,
                                      expire_date=expires, **params)
        result = self.gpg.gen_key(text) if at is None else self._at(at, text)
        assert result.fingerprint, result.stderr
        self.fingerprint = str(result.fingerprint)
        if subkey_expires:
            subprocess.run(["gpg", "--homedir", str(self.home), "--batch", "--pinentry-mode",
                            "loopback", "--passphrase", "", "--quick-add-key", self.fingerprint,
                            "cv25519", "encr", subkey_expires], capture_output=True, check=True)

    def _at(self, when: str, params: str):
        past = gnupg.GPG(gnupghome=str(self.home), options=["--faked-system-time", when])
        return past.gen_key(params)

    def public(self) -> bytes:
        return self.gpg.export_keys(self.fingerprint).encode()

    def secret(self) -> bytes:
        return self.gpg.export_keys(self.fingerprint, secret=True,
                                    expect_passphrase=False).encode()

    def learn(self, key: bytes) -> None:
        """Import someone else's public key (the committee's, say)."""
        assert self.gpg.import_keys(key).fingerprints

    def _time(self, at: str | None) -> list[str]:
        return ["--faked-system-time", at] if at else []

    def sign_detached(self, data: bytes, at: str | None = None) -> bytes:
        result = self.gpg.sign(data, keyid=self.fingerprint, detach=True,
                               extra_args=self._time(at))
        assert result.data, result.stderr
        return bytes(result.data)

    def clearsign(self, text: str, at: str | None = None) -> str:
        result = self.gpg.sign(text.encode(), keyid=self.fingerprint, clearsign=True,
                               extra_args=self._time(at))
        assert result.data, result.stderr
        return bytes(result.data).decode()

    def encrypt(self, data: bytes, to: str, *, sign: bool = False) -> bytes:
        result = self.gpg.encrypt(data, [to], armor=True, always_trust=True,
                                  sign=self.fingerprint if sign else None)
        assert result.ok, result.stderr
        return bytes(result.data)

    def decrypt(self, data: bytes) -> gnupg.Crypt:
        return self.gpg.decrypt(data)


class GnuPG:
    """Everyone's GnuPG homes for one test, and the cleanup after it."""

    def __init__(self) -> None:
        self.root = short_tmp("mfpgp-")
        self.homes: list[Path] = []

    def person(self, name: str, address: str, **kw: str) -> Person:
        person = Person(self.root, name, address, **kw)
        self.homes.append(person.home)
        return person

    def keyrings(self) -> Keyrings:
        """The committee's keyrings, as an archive holds them."""
        rings = Keyrings.open(self.root / "archive" / "keyring")
        self.homes += [rings.committee.home, rings.correspondents.home]
        return rings

    def server(self, relay_port: int, extra: str = "") -> MailflowServer:
        """A ``mailflow serve`` (not started) whose archive is under this short root, so
        that its gpg-agent can listen; its agent is stopped with the others."""
        tmp = self.root / "srv"
        tmp.mkdir()
        server = MailflowServer(tmp, relay_port, extra=extra)
        self.homes += [server.archive / "keyring" / "committee",
                       server.archive / "keyring" / "correspondents"]
        return server

    def close(self) -> None:
        left = {str(h): agents_of(h) for h in self.homes if not stop_agents(h)}
        shutil.rmtree(self.root, ignore_errors=True)
        assert not left, f"gpg-agent left running: {left}"


def mime_mail(sender: str, to: str, subject: str, content_type: str, body: bytes,
              name: str = "", headers: tuple[str, ...] = ()) -> bytes:
    """A mail whose body is ``body`` under ``content_type``, as a client writes it."""
    head = [f"From: {formataddr((name, sender))}", f"To: {to}", f"Subject: {subject}",
            "Date: Tue, 24 Nov 2026 10:00:00 +0000",
            f"Message-ID: {make_msgid(domain='sender.test')}", *headers,
            "MIME-Version: 1.0", f"Content-Type: {content_type}"]
    return "\r\n".join(head).encode() + b"\r\n\r\n" + body


def pgp_mime(ciphertext: bytes, boundary: str = "------------enc42") -> tuple[str, bytes]:
    """RFC 3156 multipart/encrypted, as Thunderbird writes it."""
    body = (f"This is an OpenPGP/MIME encrypted message (RFC 4880 and 3156)\r\n"
            f"--{boundary}\r\nContent-Type: application/pgp-encrypted\r\n"
            f"Content-Description: PGP/MIME version identification\r\n\r\nVersion: 1\r\n\r\n"
            f"--{boundary}\r\nContent-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
            f"Content-Description: OpenPGP encrypted message\r\n"
            f"Content-Disposition: inline; filename=\"encrypted.asc\"\r\n\r\n").encode() \
        + crlf(ciphertext) + f"\r\n--{boundary}--\r\n".encode()
    ctype = f'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="{boundary}"'
    return ctype, body


def pgp_signed(person: Person, entity: bytes, boundary: str = "------------sig42",
               at: str | None = None) -> tuple[str, bytes]:
    """RFC 3156 multipart/signed over ``entity`` (a MIME part: headers, blank line, body)."""
    signature = person.sign_detached(entity, at=at)
    body = (f"This is an OpenPGP/MIME signed message (RFC 4880 and 3156)\r\n"
            f"--{boundary}\r\n").encode() + entity + (
        f"\r\n--{boundary}\r\nContent-Type: application/pgp-signature; name=\"signature.asc\"\r\n"
        f"Content-Description: OpenPGP digital signature\r\n"
        f"Content-Disposition: attachment; filename=\"signature.asc\"\r\n\r\n").encode() \
        + crlf(signature) + f"\r\n--{boundary}--\r\n".encode()
    ctype = (f'multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature"; '
             f'boundary="{boundary}"')
    return ctype, body
