"""OpenPGP through GnuPG: the committee's keyrings, and what mailflow asks of them.

Two GnuPG homes live under ``archive/keyring/`` (mode 0700):

- ``committee/``: the committee's own key (its secret half decrypts reports) and the
  members' keys.  Only the administrator (``mailflow keys import``) and a proven
  member sending their own key (``#key``) add to it, so a key here that carries a
  member's address is that member's key: mail is encrypted to it, and a good
  signature by it proves the member.
- ``correspondents/``: keys reporters attach to their mail, used only to encrypt the
  replies to them.  Anyone can send one, so none of them is ever proof of anything.

GnuPG is run through python-gnupg with the network shut off (no keyserver, no
dirmngr); the keyring is trusted because of who may write it (``--trust-model
always``), never because of web-of-trust signatures nobody here checks.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import gnupg

from mailflow.mail.gpgoutput import (
    Decrypted,
    Key,
    Signature,
    decrypt_error,
    parse_listing,
    signature_of,
    statuses,
)

COMMITTEE, CORRESPONDENTS = "committee", "correspondents"
# What GnuPG may write when it decrypts one message: the sender controls the
# compression, so a small message could otherwise unpack to fill the disk.
MAX_DECRYPTED = 64 * 1024 * 1024
# Linux's limit for a socket's path (sun_path, with its NUL): gpg-agent cannot listen
# on a longer one, and then no secret key works.
MAX_SOCKET_PATH = 107
# python-gnupg warns of every non-zero exit, and gpg exits 2 for an unknown signer:
# mailflow reads GnuPG's status lines instead and says what matters itself.
logging.getLogger("gnupg").setLevel(logging.ERROR)
OPTIONS = ["--disable-dirmngr", "--no-auto-key-retrieve", "--auto-key-locate", "local",
           "--trust-model", "always", "--no-greeting"]


class OpenPGPError(Exception):
    """GnuPG could not do what was asked; the message says why, for a person."""


class Keyring:
    """One GnuPG home.  Listing is cached until the keyring's files change, so that
    choosing a key for each copy of a message costs no process."""

    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        home.chmod(0o700)  # GnuPG refuses to trust a home others can read
        self.home = home
        self.gpg = gnupg.GPG(gnupghome=str(home), options=OPTIONS)
        self.gpg.encoding = "utf-8"
        self._cache: tuple[tuple[int, int], list[Key]] | None = None
        self._agent_checked = False
        self.max_output = MAX_DECRYPTED

    # -- listing ---------------------------------------------------------------
    def _state(self) -> tuple[int, int]:
        stamps = []
        for name in ("pubring.kbx", "private-keys-v1.d"):
            try:
                stamps.append(os.stat(self.home / name).st_mtime_ns)
            except FileNotFoundError:
                stamps.append(0)
        return stamps[0], stamps[1]

    def all_keys(self) -> list[Key]:
        """Every public key here, the committee's own marked ``secret``."""
        state = self._state()
        if self._cache is None or self._cache[0] != state:
            listing = self.gpg.list_keys()
            # Which secret keys are held, from their files: asking gpg would start
            # gpg-agent just to list them.
            held = frozenset(p.stem for p in (self.home / "private-keys-v1.d").glob("*.key"))
            self._cache = (state, parse_listing(listing.data.decode("utf-8", "replace"), held))
        return list(self._cache[1])

    def key_for(self, address: str, at: datetime | None = None) -> Key | None:
        """The usable key carrying ``address`` as a user ID: the newest, if several."""
        address = address.lower()
        usable = [k for k in self.all_keys() if address in k.addresses and k.usable(at)]
        return max(usable, key=lambda k: k.created) if usable else None

    def get(self, fingerprint: str) -> Key | None:
        return next((k for k in self.all_keys() if k.fingerprint == fingerprint.upper()), None)

    def import_keys(self, data: bytes) -> list[str]:
        """Import public keys; the fingerprints of those imported or updated.
        Secret keys in ``data`` are refused: only ``generate`` makes one here."""
        scanned = self.gpg.scan_keys_mem(data).data.decode("utf-8", "replace")
        if any(line.startswith("sec:") for line in scanned.splitlines()):
            raise OpenPGPError("it holds a secret key; only public keys are taken")
        result = self.gpg.import_keys(data, extra_args=["--import-options", "import-clean"])
        if not result.fingerprints and not result.unchanged:
            raise OpenPGPError("no OpenPGP public key found")
        return list(dict.fromkeys(f for f in result.fingerprints if f))

    def delete(self, fingerprint: str) -> None:
        """Remove a public key (a purged case's reporter's, say)."""
        self.gpg.delete_keys(fingerprint)

    # -- encryption ------------------------------------------------------------
    def encrypt(self, data: bytes, fingerprints: Sequence[str]) -> bytes:
        """``data`` encrypted to every key in ``fingerprints``, ASCII-armored."""
        if not fingerprints:
            raise ValueError("encrypt to whom?")
        result = self.gpg.encrypt(data, list(fingerprints), armor=True, always_trust=True)
        if not result.ok:
            raise OpenPGPError(f"could not encrypt: {result.status or 'gpg failed'}")
        return bytes(result.data)

    def encrypt_many(self, items: Sequence[tuple[bytes, Sequence[str]]]) -> list[bytes | None]:
        """Each ``(data, fingerprints)`` encrypted, in one gpg run for each set of
        recipients (``--multifile``): starting gpg costs more than encrypting a report,
        so the pipeline seals a whole batch at once.  None where one failed."""
        out: list[bytes | None] = [None] * len(items)
        groups: dict[tuple[str, ...], list[int]] = {}
        for n, (_, fingerprints) in enumerate(items):
            groups.setdefault(tuple(fingerprints), []).append(n)
        for fingerprints, indexes in groups.items():
            with tempfile.TemporaryDirectory(dir=self.home, prefix="seal-") as tmp:
                files = [Path(tmp) / str(n) for n in indexes]
                for n, path in zip(indexes, files, strict=True):
                    path.write_bytes(items[n][0])
                self.gpg.encrypt_file(io.BytesIO(), list(fingerprints), armor=True,
                                      always_trust=True,
                                      extra_args=["--multifile", *map(str, files)])
                for n, path in zip(indexes, files, strict=True):
                    sealed = path.with_name(path.name + ".asc")
                    out[n] = sealed.read_bytes() if sealed.exists() else None
        return out

    def decrypt(self, data: bytes) -> Decrypted:
        """Decrypt an OpenPGP message (or read a clearsigned one), checking any
        signature inside it against the keys here."""
        self.agent_socket()
        result = self.gpg.decrypt(data, extra_args=["--max-output", str(self.max_output)])
        status = statuses(result.stderr)
        words = {k for k, _ in status}
        signature = signature_of(status)
        if len(result.data) >= self.max_output:  # gpg stops writing, and still says OK
            return Decrypted(False, b"", signature, f"larger than {self.max_output >> 20} MiB "
                             "once decrypted (a compressed bomb?)")
        if "DECRYPTION_OKAY" in words or ("PLAINTEXT" in words and "BEGIN_DECRYPTION" not in words):
            return Decrypted(True, bytes(result.data), signature)
        return Decrypted(False, b"", signature, decrypt_error(status))

    def verify_detached(self, data: bytes, signature: bytes) -> Signature:
        """A detached signature (PGP/MIME's application/pgp-signature) over ``data``."""
        with tempfile.NamedTemporaryFile(dir=self.home, suffix=".sig") as sig:
            sig.write(signature)
            sig.flush()
            result = self.gpg.verify_data(sig.name, data)
        return signature_of(statuses(result.stderr))

    # -- the committee's own key -------------------------------------------------
    def secret_key(self, address: str) -> Key | None:
        """The key here whose secret half we hold, for ``address``."""
        address = address.lower()
        found = [k for k in self.all_keys() if k.secret and address in k.addresses]
        return max(found, key=lambda k: k.created) if found else None

    def generate(self, name: str, address: str, expires: str = "0") -> Key:
        """A new key pair (Ed25519 signing, Curve25519 encryption) for ``address``.
        It has no passphrase: mailflow runs unattended, and the secret half is kept
        as the archive is, readable by its owner alone."""
        self.agent_socket()
        params = self.gpg.gen_key_input(
            key_type="EDDSA", key_curve="ed25519", key_usage="sign",
            subkey_type="ECDH", subkey_curve="cv25519", subkey_usage="encrypt",
            name_real=name, name_email=address, expire_date=expires, no_protection=True)
        result = self.gpg.gen_key(params)
        key = self.get(str(result.fingerprint or ""))
        if key is None:
            raise OpenPGPError(f"could not generate a key: {_last_error(result.stderr)}")
        return key

    def export(self, fingerprint: str, *, armor: bool = True) -> bytes:
        """The public key, minimal (no third-party signatures), for publication."""
        data = self.gpg.export_keys(fingerprint, armor=armor, minimal=True)
        exported = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        if not exported:
            raise OpenPGPError(f"no key {fingerprint} to export")
        return exported

    # -- gpg-agent ---------------------------------------------------------------
    def agent_socket(self) -> None:
        """Before the first use of a secret key: can gpg-agent listen for this home?
        Refused with a clear reason when its socket's path would be too long."""
        if self._agent_checked:
            return
        socket = _gpgconf(self.home, "--list-dirs", "agent-socket").strip()
        if len(socket.encode()) > MAX_SOCKET_PATH:
            raise OpenPGPError(
                f"{self.home}: gpg-agent's socket would be {socket} ({len(socket)} "
                f"characters, at most {MAX_SOCKET_PATH}): use a shorter archive path, or "
                "run on a system with /run/user/UID (systemd's login directories)")
        self._agent_checked = True

    def stop_agent(self) -> None:
        """End the gpg-agent this home started, if any."""
        self.stop_agent_of(self.home)

    @staticmethod
    def stop_agent_of(home: Path) -> None:
        _gpgconf(home, "--kill", "all")


def _gpgconf(home: Path, *args: str) -> str:
    # /run/user/UID, where it exists, takes the sockets of a home with a long path.
    subprocess.run(["gpgconf", "--homedir", str(home), "--create-socketdir"],
                   capture_output=True, check=False)
    done = subprocess.run(["gpgconf", "--homedir", str(home), *args],
                          capture_output=True, text=True, check=False)
    return done.stdout


def _last_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("gpg:")]
    return lines[-1][5:] if lines else "gpg failed"


@dataclass
class Keyrings:
    """Both homes of an archive: the committee's and the correspondents'."""

    committee: Keyring
    correspondents: Keyring

    @classmethod
    def open(cls, keyring_dir: Path) -> Keyrings:
        keyring_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        keyring_dir.chmod(0o700)
        return cls(Keyring(keyring_dir / COMMITTEE), Keyring(keyring_dir / CORRESPONDENTS))

    def stop_agents(self) -> None:
        for ring in (self.committee, self.correspondents):
            ring.stop_agent()

    @contextmanager
    def scratch(self) -> Iterator[Keyring]:
        """A keyring of its own for keys not yet accepted: GnuPG imports them (and
        drops what is not validly self-signed) before anything is decided."""
        home = Path(tempfile.mkdtemp(prefix="import-", dir=self.committee.home.parent))
        try:
            yield Keyring(home)
        finally:
            Keyring.stop_agent_of(home)
            shutil.rmtree(home, ignore_errors=True)

