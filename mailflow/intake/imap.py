"""IMAP intake: take mail from a mailbox instead of (or as well as) the SMTP listener.

Reliability, in the order a message travels:

- It is fetched with ``BODY.PEEK[]``, so its ``\\Seen`` flag stays as it was.
- It is committed to the spool by the same durable intake as SMTP mail
  (:func:`mailflow.intake.commit_rows`), a batch per transaction.
- Only then is it moved to the processed folder: ``UID MOVE``, else (UIDPLUS)
  ``UID COPY`` + ``\\Deleted`` + ``UID EXPUNGE`` of exactly those UIDs.  Never a plain
  ``EXPUNGE``: it would also remove mail another client had marked deleted.  A server
  with neither extension keeps the message where it is.
- Only then is ``(UIDVALIDITY, last UID)`` of the folder recorded in the store.  A
  crash anywhere before that reads the message again on the next pass, and
  deduplication (Message-ID + body, or the bytes) makes it the same spool row: nothing
  is lost, nothing is doubled.
- A UIDVALIDITY other than the recorded one (the folder was recreated or restored)
  makes the recorded UID meaningless: the folder is read from the start, and
  deduplication absorbs what was taken before.
- ``UID n:*`` always matches the highest UID, even one below ``n`` (RFC 3501, 6.4.8),
  so search results are filtered to UIDs above the recorded one.
- Waiting uses IDLE, renewed every ``idle_renew`` seconds (servers may end an IDLE
  after 29 minutes), and each renewal runs a full pass as a backstop for a missed
  notification; without IDLE, a pass every ``poll_interval`` seconds.
- A dropped connection, a timeout or a server restart reconnects with exponential
  backoff (``reconnect_min`` to ``reconnect_max``).  What needs the administrator
  (login refused, certificate not trusted, folder or password missing) is logged as
  one clear line and retried only every ``reconnect_max``: no crash loop.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import sqlite3
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from multiprocessing.synchronize import Event as MPEvent

from imapclient import DELETED, IMAPClient
from imapclient.exceptions import LoginError

from mailflow import store, timestamps
from mailflow.config import Config
from mailflow.intake.mailbox import envelope_from_headers
from mailflow.intake.spool import commit_many
from mailflow.store.sqlite import Database

log = logging.getLogger("mailflow.imap")

# Messages fetched and committed together: one fsync for many small messages,
# bounded memory for large ones.
BATCH_COUNT = 50
BATCH_BYTES = 32 * 1024 * 1024
# Longest blocking wait inside IDLE, so that a stop request is seen promptly.
IDLE_TICK = 1.0
# Crash-simulation point for tests: with N set, the process kills itself (SIGKILL)
# right after committing its N-th message and before moving it, exactly as a kill -9
# landing in that window would.
CRASH_AFTER_COMMIT = "MAILFLOW_IMAP_STOP_AFTER_COMMIT"


@dataclass
class Session:
    client: IMAPClient
    db: Database      # mailflow.db: the folder's UIDVALIDITY and last UID
    spool: Database   # spool.db: where intake commits


class AdminError(Exception):
    """A problem only the administrator can fix; the message says what to check."""


@dataclass
class Counts:
    new: int = 0
    duplicates: int = 0

    def __iadd__(self, other: Counts) -> Counts:
        self.new += other.new
        self.duplicates += other.duplicates
        return self


def error_text(e: BaseException) -> str:
    """An error's message; for IMAP errors the server's text, without the bytes repr."""
    arg = e.args[0] if e.args else ""
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(e)
    # imapclient's LoginError carries the repr of the server's bytes.
    quoted = re.fullmatch(r"b(['\"])(.*)\1", text)
    return (quoted.group(2) if quoted else text) or type(e).__name__


def problems(cfg: Config) -> list[str]:
    """For ``mailflow check``: what would stop the poller before it reaches the server."""
    if cfg.intake.imap is None:
        return []
    poller = Poller(cfg)
    found = []
    for probe in (poller._password, poller._tls_context):
        try:
            probe()
        except AdminError as e:
            found.append(f"{cfg.source}: {e}")
    return found


class Poller:
    """Fetch, commit, move.  :meth:`poll_once` for one pass, :meth:`run` until stopped."""

    def __init__(self, cfg: Config, stop: threading.Event | MPEvent | None = None,
                 on_commit: Callable[[], None] = lambda: None):
        assert cfg.intake.imap is not None
        self.cfg = cfg
        self.imap = cfg.intake.imap
        self.stop = stop or threading.Event()
        self.on_commit = on_commit
        self.where = f"{self.imap.host}:{self.imap.effective_port}"
        self.account = f"{self.imap.user}@{self.where}"
        self.committed = 0
        self.can_move = False
        self.crash_after = int(os.environ.get(CRASH_AFTER_COMMIT) or 0)
        # imapclient reports every connect and close at INFO; ours say what matters.
        logging.getLogger("imapclient").setLevel(logging.WARNING)

    # -- connecting -------------------------------------------------------------

    def _password(self) -> str:
        if self.imap.password_env:
            value = os.environ.get(self.imap.password_env)
            if not value:
                raise AdminError(f"intake.imap.password_env: ${self.imap.password_env} "
                                 "is not set")
            return value
        path = self.cfg.resolve(self.imap.password_file)
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as e:
            raise AdminError(f"intake.imap.password_file: cannot read {path}: "
                             f"{e.strerror}") from None

    def _tls_context(self) -> ssl.SSLContext | None:
        if self.imap.tls == "none":
            return None
        cafile = str(self.cfg.resolve(self.imap.ca_file)) if self.imap.ca_file else None
        try:
            # With a cafile, only that CA is trusted: a private CA, not the world's.
            return ssl.create_default_context(cafile=cafile)
        except (OSError, ssl.SSLError) as e:
            raise AdminError(f"intake.imap.ca_file: cannot load {cafile}: {e}") from None

    def _connect(self) -> IMAPClient:
        context = self._tls_context()
        password = self._password()
        try:
            client = IMAPClient(self.imap.host, port=self.imap.effective_port,
                                ssl=self.imap.tls == "implicit", ssl_context=context,
                                timeout=self.imap.timeout)
        except ssl.SSLError as e:
            raise self._tls_error(e) from None
        try:
            if self.imap.tls == "starttls":
                client.starttls(context)
            client.login(self.imap.user, password)
        except Exception as e:
            with suppress(OSError):
                client.shutdown()
            if isinstance(e, ssl.SSLError):
                raise self._tls_error(e) from None
            if isinstance(e, LoginError) and "[UNAVAILABLE]" in error_text(e):
                # RFC 5530: the server cannot check passwords just now (restarting, say).
                raise ConnectionError(f"login temporarily refused: {error_text(e)}") from None
            if isinstance(e, LoginError):
                source = (f"${self.imap.password_env}" if self.imap.password_env
                          else self.cfg.resolve(self.imap.password_file))
                raise AdminError(f"IMAP login as {self.imap.user} at {self.where} refused: "
                                 f"{error_text(e)}; check intake.imap.user and the password in "
                                 f"{source}") from None
            if isinstance(e, IMAPClient.Error) and not isinstance(e, IMAPClient.AbortError):
                raise AdminError(f"STARTTLS with {self.where} failed: {error_text(e)}; "
                                 "check intake.imap.tls") from None
            raise
        return client

    def _tls_error(self, e: ssl.SSLError) -> AdminError:
        if isinstance(e, ssl.SSLCertVerificationError):
            return AdminError(f"TLS certificate of {self.where} not trusted: "
                              f"{e.verify_message}; for a private CA set intake.imap.ca_file")
        return AdminError(f"TLS with {self.where} failed: {e.reason or e}; check "
                          "intake.imap.tls ('implicit' on port 993, 'starttls' on 143) "
                          "and port")

    @contextmanager
    def _session(self) -> Iterator[Session]:
        path = self.cfg.db_path
        with closing(store.open_db(path)) as db, \
                closing(store.connect_spool(path)) as spool, \
                self._connect() as client:  # logs out, or closes a connection already gone
            self.can_move = client.has_capability("MOVE") or client.has_capability("UIDPLUS")
            if not self.can_move:
                log.warning("%s offers neither MOVE nor UIDPLUS: messages stay in %s "
                            "(mailflow remembers which it has taken)",
                            self.where, self.imap.folder)
            elif not client.folder_exists(self.imap.processed_folder):
                client.create_folder(self.imap.processed_folder)
                log.info("created IMAP folder %s", self.imap.processed_folder)
            yield Session(client, db, spool)

    # -- one pass ---------------------------------------------------------------

    def _select(self, client: IMAPClient) -> int:
        try:
            return client.select_folder(self.imap.folder)[b"UIDVALIDITY"]
        except IMAPClient.AbortError:
            raise
        except IMAPClient.Error as e:
            raise AdminError(f"cannot open IMAP folder {self.imap.folder!r} at {self.where}: "
                             f"{error_text(e)}; check intake.imap.folder") from None

    def _last_uid(self, db: Database, uidvalidity: int) -> int:
        row = db.execute("SELECT uidvalidity, last_uid FROM imap_state WHERE account = ? "
                         "AND folder = ?", [self.account, self.imap.folder]).fetchone()
        if row is None or row[0] == uidvalidity:
            return row[1] if row else 0
        log.warning("UIDVALIDITY of %s changed (%s, was %s): the folder was recreated; "
                    "reading it again from the start (what was taken before is recognised)",
                    self.imap.folder, uidvalidity, row[0])
        self._save(db, uidvalidity, 0)
        return 0

    def _save(self, db: Database, uidvalidity: int, last_uid: int) -> None:
        with store.transaction(db):
            db.execute(
                "INSERT INTO imap_state (account, folder, uidvalidity, last_uid, updated_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (account, folder) DO UPDATE SET "
                "uidvalidity = excluded.uidvalidity, last_uid = excluded.last_uid, "
                "updated_at = excluded.updated_at",
                [self.account, self.imap.folder, uidvalidity, last_uid, timestamps.stamp()])

    def _batches(self, client: IMAPClient, uids: list[int]) -> Iterator[list[int]]:
        for start in range(0, len(uids), BATCH_COUNT):
            chunk = uids[start:start + BATCH_COUNT]
            sizes = client.fetch(chunk, ["RFC822.SIZE"])
            batch: list[int] = []
            total = 0
            for uid in chunk:
                size = sizes.get(uid, {}).get(b"RFC822.SIZE", 0)
                if batch and total + size > BATCH_BYTES:
                    yield batch
                    batch, total = [], 0
                batch.append(uid)
                total += size
            if batch:
                yield batch

    def _pass(self, s: Session) -> Counts:
        uidvalidity = self._select(s.client)
        last_uid = self._last_uid(s.db, uidvalidity)
        uids = sorted(u for u in s.client.search(["UID", f"{last_uid + 1}:*"]) if u > last_uid)
        counts = Counts()
        for batch in self._batches(s.client, uids):
            if self.stop.is_set():
                break
            counts += self._take(s, uidvalidity, batch)
        return counts

    def _take(self, s: Session, uidvalidity: int, batch: list[int]) -> Counts:
        fetched = s.client.fetch(batch, ["BODY.PEEK[]"])
        # A UID missing from the answer was expunged by someone else meanwhile.
        raws = [fetched[u][b"BODY[]"] for u in batch if b"BODY[]" in fetched.get(u, {})]
        domain = self.cfg.committee.domain
        results = commit_many(s.spool, [(raw, envelope_from_headers(raw, domain, "imap"))
                                        for raw in raws])
        self.committed += len(raws)
        if self.crash_after and self.committed >= self.crash_after:
            os.kill(os.getpid(), signal.SIGKILL)
        self.on_commit()
        self._move(s.client, batch)
        self._save(s.db, uidvalidity, batch[-1])
        counts = Counts(sum(not dup for _, dup in results), sum(dup for _, dup in results))
        log.info("took %d message(s) from %s (%d new, %d already taken)%s", len(raws),
                 self.imap.folder, counts.new, counts.duplicates,
                 f"; moved to {self.imap.processed_folder}" if self.can_move else "")
        return counts

    def _move(self, client: IMAPClient, uids: list[int]) -> None:
        target = self.imap.processed_folder
        if client.has_capability("MOVE"):
            client.move(uids, target)
        elif client.has_capability("UIDPLUS"):
            client.copy(uids, target)
            client.add_flags(uids, [DELETED], silent=True)
            client.uid_expunge(uids)

    # -- waiting ----------------------------------------------------------------

    def _wait(self, client: IMAPClient) -> None:
        """Until the folder changes, the IDLE is due for renewal, or we are stopped."""
        if not client.has_capability("IDLE"):
            self.stop.wait(self.imap.poll_interval)
            return
        client.idle()
        deadline = time.monotonic() + self.imap.idle_renew
        while (not self.stop.is_set() and not self._received(client)
               and (left := deadline - time.monotonic()) > 0):
            tick = min(IDLE_TICK, left)
            started = time.monotonic()
            responses = client.idle_check(timeout=tick)
            # Anything but "* OK still here" (new mail, expunges, BYE) calls for a pass.
            if any(r[0] != b"OK" for r in responses):
                break
            # imapclient swallows end-of-file and returns nothing at once: end the IDLE,
            # which fails on a dead connection (we reconnect) or costs one extra pass.
            if not responses and time.monotonic() - started < tick / 2:
                break
        client.idle_done()

    def _received(self, client: IMAPClient) -> bool:
        """Whether imaplib already holds server data it has not parsed.

        The server reports what changed since our last command right after "+ idling",
        often in the same packet; imaplib's buffered reader then holds it, the socket
        is no longer readable, and IMAPClient.idle_check (which only polls the socket)
        would not see it until the next renewal.  Peek at the buffer, without blocking.
        """
        reader = getattr(client._imap, "file", None)
        if reader is None:  # another imaplib: renewal remains the backstop
            return False
        sock = client.socket()
        sock.setblocking(False)
        try:
            return bool(reader.peek(1))
        except OSError:  # nothing buffered, nothing on the socket (TLS: SSLWantReadError)
            return False
        finally:
            sock.settimeout(self.imap.timeout)

    # -- driving ----------------------------------------------------------------

    def poll_once(self) -> Counts:
        """One connection, one pass.  Raises on failure (AdminError: fix the config)."""
        with self._session() as s:
            return self._pass(s)

    def run(self) -> None:
        """Pass, wait, pass ... until stopped; reconnect with backoff on any failure."""
        delay = 0.0
        while not self.stop.is_set():
            try:
                with self._session() as s:
                    log.info("IMAP: watching %s on %s as %s (%s)", self.imap.folder,
                             self.where, self.imap.user,
                             "IDLE" if s.client.has_capability("IDLE")
                             else f"polling every {self.imap.poll_interval:g}s")
                    while not self.stop.is_set():
                        self._pass(s)
                        delay = 0.0  # a pass worked: the next failure starts over
                        self._wait(s.client)
            except Exception as e:
                delay = self._failed(e, delay)
                self.stop.wait(delay)
        log.info("IMAP poller stopped")

    def _failed(self, e: Exception, delay: float) -> float:
        """Log one clear line; return how long to wait before trying again."""
        imap = self.imap
        if isinstance(e, AdminError):
            log.error("%s; retrying in %gs", e, imap.reconnect_max)
            return imap.reconnect_max
        delay = min(imap.reconnect_max, delay * 2) if delay else imap.reconnect_min
        if isinstance(e, IMAPClient.AbortError | OSError):
            log.warning("IMAP connection to %s lost or refused (%s); reconnecting in %gs",
                        self.where, error_text(e), delay)
        elif isinstance(e, IMAPClient.Error):
            log.error("IMAP server %s refused a command: %s; retrying in %gs",
                      self.where, error_text(e), delay)
        elif isinstance(e, sqlite3.Error):
            log.error("archive database unavailable: %s; retrying in %gs", e, delay)
        else:
            log.exception("IMAP poller failed; retrying in %gs", delay)
        return delay
