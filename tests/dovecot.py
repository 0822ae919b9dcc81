"""A throwaway Dovecot on loopback for the IMAP tests.

Everything lives in one temporary directory: configuration, a passwd-file user,
the Maildir, the runtime (base_dir) and state directories, and the log.  As root,
Dovecot insists that its login processes run unprivileged, so they run as the
package's ``dovenull``/``dovecot`` users and the mail as ``nobody``; otherwise all of
it runs as the current user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from imapclient import IMAPClient

from mailflow.testing import free_port, wait_until

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "mailflow"
PASSWORD = "imap-test-secret"


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (and localhost): (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True)
    return cert, key


def running_in_group(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the process group."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError):
            continue
        if int(group) == pgid and state != "Z":
            return True
    return False


class Dovecot:
    def __init__(self, cert: Path, key: Path, capability: str | None = None):
        self.cert = cert
        self.root = Path(tempfile.mkdtemp(prefix="mailflow-dovecot-"))
        # Dovecot's login and auth processes (other users, as root) must reach in here.
        self.root.chmod(0o711)
        self.imap_port, self.imaps_port = free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        if os.geteuid() == 0:
            login_user, internal_user = "dovenull", "dovecot"
            mail = pwd.getpwnam("nobody")
        else:
            login_user = internal_user = pwd.getpwuid(os.getuid()).pw_name
            mail = pwd.getpwuid(os.getuid())
        self.mail_uid, self.mail_gid = mail.pw_uid, mail.pw_gid
        home = self.root / "mail"
        home.mkdir()
        os.chown(home, self.mail_uid, self.mail_gid)
        self.maildir = home / "Maildir"
        passwd = self.root / "passwd"
        passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{self.mail_uid}:{self.mail_gid}::{home}::\n")
        passwd.chmod(0o644)
        self.log = self.root / "dovecot.log"
        self.config = self.root / "dovecot.conf"
        self.config.write_text(f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
instance_name = mailflow-test-{self.imaps_port}
protocols = imap
listen = 127.0.0.1
log_path = {self.log}
default_internal_user = {internal_user}
default_internal_group = {internal_user}
default_login_user = {login_user}
first_valid_uid = {self.mail_uid}
mail_location = maildir:~/Maildir
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
# The wrong-password tests need not wait for the penalties of failed logins: a
# delay before the answer, and growing waits for more attempts from the same address.
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
# Should inotify be unavailable, IDLE still notices new mail within a second.
mailbox_idle_check_interval = 1 secs
{f"imap_capability = {capability}" if capability else ""}
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
""")

    def start(self) -> Dovecot:
        logf = open(self.root / "stderr.log", "ab")  # noqa: SIM115 - the child owns it
        # Its own session, so that stop() reaches the master and all its children.
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(self.config)], stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)

        def ready() -> bool:
            assert self.proc and self.proc.poll() is None, self.logs()
            try:
                with self.client():
                    return True
            except (OSError, IMAPClient.Error):
                return False
        wait_until(ready, what="dovecot to accept IMAP logins")
        return self

    def stop(self) -> None:
        """Stop the master and every process of it, as a service manager would: SIGTERM,
        then SIGKILL to whatever is left after 5 s (a login process in the middle of a
        reconnecting client's handshake can keep the master waiting)."""
        if not self.proc:
            return
        pgid = self.proc.pid
        os.killpg(pgid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        # Its children hold the listening sockets: gone before a restart may bind.
        wait_until(lambda: not running_in_group(pgid), timeout=5, what="dovecot to stop")

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in
                         (self.log, self.root / "stderr.log") if p.exists())

    @contextmanager
    def client(self) -> Iterator[IMAPClient]:
        context = ssl.create_default_context(cafile=str(self.cert))
        with IMAPClient("127.0.0.1", port=self.imaps_port, ssl=True, ssl_context=context,
                        timeout=10) as c:
            c.login(USER, PASSWORD)
            yield c

    def append(self, raw: bytes, folder: str = "INBOX") -> int:
        """Deliver one message by IMAP APPEND; returns its UID."""
        with self.client() as c:
            response = c.append(folder, raw)
        return int(response.split(b"APPENDUID ")[1].split(b" ")[1].rstrip(b"]"))

    def deliver_to_maildir(self, raw: bytes) -> None:
        """Deliver into INBOX as an MTA's local delivery would, server running or not."""
        name = f"{time.time_ns()}.mailflow-test.localhost"
        tmp, new = self.maildir / "tmp" / name, self.maildir / "new" / name
        tmp.write_bytes(raw)
        os.chown(tmp, self.mail_uid, self.mail_gid)
        tmp.rename(new)

    def messages(self, folder: str) -> dict[int, dict]:
        """{uid: {b"BODY[]": ..., b"FLAGS": ...}} without changing any flag."""
        with self.client() as c:
            c.select_folder(folder, readonly=True)
            return c.fetch(c.search("ALL"), ["BODY.PEEK[]", "FLAGS"])

    def count(self, folder: str) -> int:
        with self.client() as c:
            return c.folder_status(folder, ["MESSAGES"])[b"MESSAGES"] if c.folder_exists(
                folder) else 0

    def uidvalidity(self, folder: str) -> int:
        with self.client() as c:
            return c.folder_status(folder, ["UIDVALIDITY"])[b"UIDVALIDITY"]

    def create(self, folder: str) -> None:
        with self.client() as c:
            c.create_folder(folder)

    def delete(self, folder: str) -> None:
        with self.client() as c:
            c.delete_folder(folder)
