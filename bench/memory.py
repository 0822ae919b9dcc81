"""Memory benchmark: what one large report costs each process of ``mailflow serve``,
and what the whole server holds during a burst.

    .venv/bin/python bench/memory.py [--size-mb 23] [--burst 5000]

1. A report of ``--size-mb`` (a video attached as evidence, base64: the largest that
   ``intake.max_size``'s default of 25 MiB takes, with room for the headers) goes
   through every stage of a running server: acknowledged, and copied to the three
   members with the original attached.  For each process, its resident memory
   before, and its peak while the report went through (Linux's VmHWM, reset just
   before the report is sent: ``/proc/PID/clear_refs``).  Target (issue 19): each
   process grows by less than 4 times the message.
2. ``--burst`` small reports (about 3 KB) over 4 SMTP sessions, as bench/intake.py
   sends them: the total resident memory of the server and its stages, sampled every
   100 ms, until every report is acknowledged and copied.

One warm-up report goes through every stage first, so that the figures are what
the report adds to a server that is up.  Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import os
import smtplib
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from mailflow.testing import CaptureRelay, MailflowServer, free_port, make_mail, wait_until

CONDUCT = "conduct@example.org"
MB = 1_000_000
TEXT = "Someone was rude to me in the chat, and again the next day.\r\n" * 48  # ~3 KB


def children(pid: int) -> dict[str, int]:
    """{name: pid} of the server and its stages (their names, as ps shows them)."""
    found = {"listener": pid}
    for task in Path("/proc").glob("[0-9]*"):
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found[(task / "comm").read_text().strip()] = int(task.name)
    return found


def status(pid: int, key: str) -> int:
    """A /proc/PID/status figure in bytes (VmRSS, VmHWM); 0 for a process gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0
    return next((int(line.split()[1]) * 1024 for line in lines
                 if line.startswith(key + ":")), 0)


def big_report(size: int) -> bytes:
    video = os.urandom(size * 3 // 4)
    encoded = base64.encodebytes(video).replace(b"\n", b"\r\n")
    head = make_mail("rita@people.test", CONDUCT, "Video of what happened",
                     "The video is attached.")
    head = head.replace(b"Content-Type: text/plain; charset=utf-8\r\n\r\n",
                        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
                        b"Content-Type: text/plain; charset=utf-8\r\n\r\n")
    return (head + b"\r\n--b1\r\nContent-Type: video/mp4\r\nContent-Transfer-Encoding: "
            b"base64\r\nContent-Disposition: attachment; filename=\"evidence.mp4\"\r\n\r\n"
            + encoded + b"--b1--\r\n")


def through_every_stage(server: MailflowServer, relay: CaptureRelay, raw: bytes,
                        sender: str, timeout: float = 300) -> float:
    before = len(relay.received)
    start = time.monotonic()
    server.send(raw, sender, [CONDUCT])
    wait_until(lambda: len(relay.received) >= before + 4, timeout=timeout,
               what="the acknowledgement and three copies")
    return time.monotonic() - start


def one_large_report(server: MailflowServer, relay: CaptureRelay, size: int) -> None:
    through_every_stage(server, relay, make_mail("w@people.test", CONDUCT, "Warm-up", "hi"),
                        "w@people.test")
    raw = big_report(size)
    pids = children(server.proc.pid)
    before = {name: status(pid, "VmRSS") for name, pid in pids.items()}
    for pid in pids.values():
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    took = through_every_stage(server, relay, raw, "rita@people.test")
    print(f"report of {len(raw) / MB:.1f} MB through every stage in {took:.1f} s")
    print(f"{'process':<14} {'before':>9} {'peak':>9} {'growth':>9} {'x message':>10}")
    for name, pid in sorted(pids.items()):
        peak = status(pid, "VmHWM")
        growth = peak - before[name]
        print(f"{name:<14} {before[name] / MB:>7.1f}MB {peak / MB:>7.1f}MB "
              f"{growth / MB:>7.1f}MB {growth / len(raw):>10.2f}")


def burst(server: MailflowServer, relay: CaptureRelay, count: int) -> None:
    pids = children(server.proc.pid)
    idle = sum(status(pid, "VmRSS") for pid in pids.values())
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append(sum(status(pid, "VmRSS") for pid in children(server.proc.pid)
                               .values()))
            time.sleep(0.1)

    def send(first: int) -> None:
        with smtplib.SMTP("127.0.0.1", server.port, timeout=60) as s:
            for n in range(first, count, 4):
                s.sendmail(f"r{n}@people.test", [CONDUCT], make_mail(
                    f"r{n}@people.test", CONDUCT, f"Report {n}", TEXT))

    before = len(relay.received)
    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.monotonic()
    senders = [threading.Thread(target=send, args=(k,)) for k in range(4)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    wait_until(lambda: len(relay.received) >= before + 4 * count, timeout=600,
               what="every acknowledgement and copy")
    done.set()
    sampler.join()
    print(f"\nburst of {count} reports, all acknowledged and copied in "
          f"{time.monotonic() - start:.1f} s")
    print(f"serve's total RSS (listener and stages): idle {idle / MB:.0f} MB, during the "
          f"burst median {statistics.median(samples) / MB:.0f} MB, peak "
          f"{max(samples) / MB:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=float, default=23)
    parser.add_argument("--burst", type=int, default=5000)
    args = parser.parse_args()
    relay = CaptureRelay(free_port())
    relay.start()
    try:
        # Each on a server of its own: memory a process took is not always given back.
        if args.size_mb:
            with tempfile.TemporaryDirectory(prefix="mailflow-memory-") as tmp, \
                    MailflowServer(Path(tmp), relay.port).start() as server:
                one_large_report(server, relay, int(args.size_mb * MB))
        relay.received.clear()
        if args.burst:
            with tempfile.TemporaryDirectory(prefix="mailflow-memory-") as tmp, \
                    MailflowServer(Path(tmp), relay.port).start() as server:
                through_every_stage(server, relay, make_mail(
                    "w@people.test", CONDUCT, "Warm-up", "hi"), "w@people.test")
                burst(server, relay, args.burst)
    finally:
        relay.stop()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
