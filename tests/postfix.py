"""A throwaway Postfix on loopback for the MTA tests, set up as docs/deploy.md says.

Everything lives in one temporary directory: ``main.cf`` and ``master.cf``, the maps,
the queue, the data directory and the log (``maillog_file``, so nothing goes to
syslog).  It listens on 127.0.0.1 only, delivers nothing locally, and routes each of
mailflow's addresses (``conduct@``, ``committee@``, and their ``+token`` forms through
``recipient_delimiter``) to one transport: LMTP to ``mailflow serve``, or the pipe
transport running ``mailflow ingest``.  Every other address of the domain is unknown
(550 at RCPT), except those given to :class:`Postfix` as ``elsewhere``, which go
with all mail for other domains to ``relayhost``: the outside world of the test.

The master runs in the foreground as a child of the test (``start-fg``), so it is
reaped, and :meth:`Postfix.stop` ends it whatever state it is in.  Postfix's master
needs root; its daemons run as the package's ``postfix`` user.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from mailflow.testing import free_port, wait_until

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
POSTQUEUE = shutil.which("postqueue") or "/usr/sbin/postqueue"

# The daemons of a master.cf with nothing local (no local(8) or virtual(8)); chroot off
# (a chroot would need copies of /etc files).  pickup is there for `postqueue -f`.
MASTER_CF = """\
{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
showq     unix  n - n - - showq
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
lmtp      unix  - - n - - lmtp
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

def pipe_entry(name: str, user: str, argv: list[str]) -> str:
    """A master.cf pipe service as docs/deploy.md gives it: ``null_sender=`` so that a
    bounce's empty sender stays empty (else Postfix writes MAILER-DAEMON)."""
    return (f"{name} unix - n n - - pipe\n"
            f"  flags= user={user} null_sender= argv={' '.join(argv)}\n")


class Postfix:
    """A private Postfix instance: ``routes`` maps each of mailflow's addresses to its
    transport (``lmtp:inet:127.0.0.1:PORT``, or the name of a ``services`` entry such
    as a pipe); ``elsewhere`` are other addresses of the domain that it relays to
    ``relayhost`` (HOST:PORT) with the rest of the world."""

    def __init__(self, *, domain: str, routes: dict[str, str], relayhost: str,
                 elsewhere: tuple[str, ...] = (), services: str = "", port: int = 0):
        self.root = Path(tempfile.mkdtemp(prefix="mailflow-postfix-"))
        # The daemons (user postfix) and a pipe's user reach their files in here.
        self.root.chmod(0o711)
        self.etc, self.queue, self.data = (self.root / d for d in ("etc", "queue", "data"))
        for d in (self.etc, self.queue, self.data):
            d.mkdir()
        shutil.chown(self.data, "postfix")
        self.port = port or free_port()
        self.maillog = self.root / "maillog"
        self.proc: subprocess.Popen | None = None
        self._write_maps(routes, elsewhere, relayhost)
        (self.etc / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.data}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.maillog}
maillog_file_prefixes = {self.root}
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.postfix.test
mydestination =
local_transport = error:5.1.1 no local delivery here
alias_maps =
alias_database =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relay_domains = {domain}
relay_recipient_maps = texthash:{self.etc}/recipients
transport_maps = texthash:{self.etc}/transport
recipient_delimiter = +
relayhost = [{relayhost.rpartition(':')[0]}]:{relayhost.rpartition(':')[2]}
smtp_host_lookup = native
# A test waits seconds, not minutes, for a retry.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
lmtp_connect_timeout = 5s
""")
        (self.etc / "master.cf").write_text(
            MASTER_CF.format(listen=f"127.0.0.1:{self.port}") + services)

    def _write_maps(self, routes: dict[str, str], elsewhere: tuple[str, ...], relayhost: str
                    ) -> None:
        host, _, port = relayhost.rpartition(":")
        transport = {**routes, **{a: f"smtp:[{host}]:{port}" for a in elsewhere}}
        (self.etc / "transport").write_text(
            "".join(f"{address} {to}\n" for address, to in transport.items()))
        (self.etc / "recipients").write_text("".join(f"{a} ok\n" for a in transport))

    def start(self) -> Postfix:
        subprocess.run([POSTFIX, "-c", str(self.etc), "check"], check=True,
                       capture_output=True)
        shutil.chown(self.data, "postfix")
        logf = open(self.root / "stderr.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen([POSTFIX, "-c", str(self.etc), "start-fg"], stdout=logf,
                                     stderr=subprocess.STDOUT, start_new_session=True)

        def ready() -> bool:
            assert self.proc and self.proc.poll() is None, self.logs()
            return "daemon started" in self.logs() and self._listening()
        wait_until(ready, what="postfix to listen")
        return self

    def _listening(self) -> bool:
        import socket

        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        """``postfix stop``, then whatever is left of the instance is killed."""
        if not self.proc:
            return
        with suppress(subprocess.SubprocessError, OSError):
            subprocess.run([POSTFIX, "-c", str(self.etc), "stop"], capture_output=True,
                           timeout=10)
        with suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        with suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in
                         (self.maillog, self.root / "stderr.log") if p.exists())

    def flush(self) -> None:
        """Retry deferred mail now (``postqueue -f``)."""
        subprocess.run([POSTQUEUE, "-c", str(self.etc), "-f"], check=True, capture_output=True)

    def flush_until_empty(self, timeout: float = 30.0) -> None:
        """Flush, as an administrator would after a fix, until the queue is empty (a
        message whose retry was under way during a flush waits for its next one)."""
        deadline = time.monotonic() + timeout
        while self.queued():
            assert time.monotonic() < deadline, f"Postfix still holds {self.queued()}"
            self.flush()
            with suppress(AssertionError):
                wait_until(lambda: not self.queued(), timeout=2, what="the queue to empty")

    def queued(self) -> list[str]:
        """The queue ids of the mail Postfix still holds."""
        out = subprocess.run([POSTQUEUE, "-c", str(self.etc), "-j"], check=True,
                             capture_output=True, text=True).stdout
        return re.findall(r'"queue_id": "([0-9A-F]+)"', out)

    def queue_id(self, message_id: str) -> str:
        """The queue id Postfix gave the message with this Message-ID (``<...>``)."""
        found = re.findall(rf"([0-9A-F]{{6,}}): message-id={re.escape(message_id)}",
                           self.logs())
        assert found, f"no {message_id} in the Postfix log"
        return found[0]

    def delivered(self, to: str) -> list[str]:
        """The log lines of deliveries to ``to`` that succeeded."""
        return [line for line in self.logs().splitlines()
                if f"to=<{to}>" in line and "status=sent" in line]

