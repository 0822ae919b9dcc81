"""Intake benchmark: mailflow serve against a bare aiosmtpd sink, side by side.

    .venv/bin/python bench/intake.py [--messages 5000] [--connections 4]

1. A bare aiosmtpd sink that accepts and discards: the baseline intake rate, measured
   just before each mailflow run.  The same sink on uvloop (the listener's event loop)
   is measured too, for reference.
2. ``mailflow serve`` with its durable settings (WAL, synchronous=FULL, 250 only after
   the commit), relaying to a capturing aiosmtpd process, once one report has been
   through every stage (the server is up): its intake rate, the time
   until every acknowledgement and every committee copy reached the relay, and the
   latency from end of DATA to the acknowledgement's arrival.  Twice: with the default
   flow control, and with ``intake.flow_delay = 0`` (intake at full speed).
3. The same server with a paced load (default 1000 messages at 50/s): the
   acknowledgement latency when mail is not arriving faster than it can be handled.

Load generators, sinks and mailflow are separate processes, so no one shares a GIL
with what it measures.  Loopback only.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import signal
import smtplib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mailflow.mail.openpgp import Keyring
from mailflow.testing import MEMBERS, MailflowServer, free_port

SINK = r"""
import re, sys, time
from aiosmtpd.controller import Controller
port, out, loop = int(sys.argv[1]), sys.argv[2], sys.argv[3]
log = open(out, "a", buffering=1) if out != "-" else None
IRT = re.compile(rb"^in-reply-to:[ \t]*(\S*)", re.IGNORECASE | re.MULTILINE)
class Handler:
    async def handle_DATA(self, server, session, envelope):
        if log:
            # The header only: the capture shares the CPU with what it measures.
            content = envelope.original_content
            found = IRT.search(content, 0, content.find(b"\r\n\r\n"))
            irt = found.group(1).decode() if found else ""
            sealed = b"multipart/encrypted" in content[:content.find(b"\r\n\r\n")]
            kind = "ack" if envelope.mail_from in ("", "<>") else (
                "sealed" if sealed else "relay")
            log.write(f"{time.monotonic()} {kind} {irt}\n")
        return "250 OK"
if loop == "uvloop":
    import uvloop
    extra = {"loop": uvloop.new_event_loop()}
else:
    extra = {}
c = Controller(Handler(), hostname="127.0.0.1", port=port, **extra)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"""


def message(i: int) -> tuple[str, str, bytes]:
    sender = f"reporter{i}@people.test"
    mid = f"<bench-{i}-{os.getpid()}@people.test>"
    body = ("I want to report what happened in the #general channel yesterday. " * 12 + "\r\n") * 4
    raw = (f"From: Reporter {i} <{sender}>\r\nTo: conduct@example.org\r\n"
           f"Subject: Report number {i}\r\nMessage-ID: {mid}\r\n"
           "Date: Tue, 24 Nov 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=utf-8\r\n\r\n{body}").encode()
    return sender, mid, raw


def client(port: int, indexes: list[int], out: mp.Queue, interval: float) -> None:
    done: list[tuple[str, float]] = []
    next_at = time.monotonic()
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        for i in indexes:
            if interval:
                time.sleep(max(0.0, next_at - time.monotonic()))
                next_at += interval
            sender, mid, raw = message(i)
            s.sendmail(sender, ["conduct@example.org"], raw)
            done.append((mid, time.monotonic()))
    out.put(done)


def load(port: int, n: int, connections: int, rate: float = 0, first: int = 0
         ) -> tuple[float, dict[str, float]]:
    """Send n messages over `connections` parallel sessions, as fast as they go or at
    `rate` messages per second in all; (seconds, {mid: end of DATA})."""
    out: mp.Queue = mp.Queue()
    interval = connections / rate if rate else 0.0
    procs = [mp.Process(target=client,
                        args=(port, list(range(first + k, first + n, connections)), out,
                              interval))
             for k in range(connections)]
    start = time.monotonic()
    for p in procs:
        p.start()
    ends: dict[str, float] = {}
    for _ in procs:
        ends.update(dict(out.get()))
    for p in procs:
        p.join()
    return time.monotonic() - start, ends


def captured(log: str, count: int, timeout: float) -> list[str]:
    """The capture log's lines, once it has ``count`` of them (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = Path(log).read_text().splitlines()
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def start_sink(port: int, log: str, loop: str = "asyncio") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", SINK, str(port), log, loop],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout and proc.stdout.readline().strip() == "ready"
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.stdin:
        proc.stdin.close()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def sink_rate(n: int, connections: int, loop: str = "asyncio") -> float:
    port = free_port()
    sink = start_sink(port, "-", loop)
    try:
        seconds, _ = load(port, n, connections)
    finally:
        stop(sink)
    return n / seconds


def run(n: int, connections: int, paced: int, paced_rate: float) -> dict:
    results: dict = {"messages": n, "connections": connections}
    # The default (flow control on), then intake at full speed whatever the backlog;
    # each just after its own baseline, since this machine's speed drifts by the minute.
    for name, flow_delay in (("flow_control", 1.0), ("no_flow_control", 0.0)):
        sink = sink_rate(n, connections)
        # For reference: the same sink on the event loop the listener uses.
        sink_uvloop = sink_rate(n, connections, "uvloop")
        results[name] = run_mailflow(n, connections, paced, paced_rate, flow_delay)
        results[name].update(sink_rate=sink, sink_uvloop_rate=sink_uvloop,
                             ratio=results[name]["mailflow_rate"] / sink,
                             ratio_uvloop=results[name]["mailflow_rate"] / sink_uvloop)
    return results


def key_members(server: MailflowServer, tmp: Path) -> None:
    """Give every member an OpenPGP key (Ed25519/Curve25519), as `mailflow keys import`
    would: each committee copy is then encrypted."""
    maker = Keyring(tmp / "members")
    try:
        made = [maker.generate(m, m) for m in MEMBERS]
        (tmp / "members.asc").write_bytes(b"".join(maker.export(k.fingerprint) for k in made))
    finally:
        maker.stop_agent()
    server.cli("keys", "import", str(tmp / "members.asc"))


def run_mailflow(n: int, connections: int, paced: int, paced_rate: float,
                 flow_delay: float, keyed: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        relay_port = free_port()
        capture_log = f"{tmp}/captured.log"
        Path(capture_log).touch()
        server = MailflowServer(Path(tmp), relay_port, intake_extra=(
            f"commit_timeout = 10.0\nflow_delay = {flow_delay}"))
        if keyed:
            key_members(server, Path(tmp))
        cpu_before = children_cpu()
        capture = start_sink(relay_port, capture_log)
        mails = 1 + len(MEMBERS)  # an acknowledgement and a copy for each member
        try:
            server.start()
            listen_port = server.port
            # One report through every stage first: the stages are processes of their
            # own, still starting (importing their modules) when the port opens, and
            # the burst is to meet a server that is up.
            load(listen_port, 1, 1, first=n + paced)
            warm = len(captured(capture_log, mails, 60))
            start = time.monotonic()
            seconds, ends = load(listen_port, n, connections)
            lines = captured(capture_log, warm + n * mails, 600)
            finished = time.monotonic()
            lines_at_burst = len(lines)
            # A paced run, well below capacity, as real conduct mail arrives.
            _, paced_ends = load(listen_port, paced, connections, rate=paced_rate, first=n)
            lines = captured(capture_log, lines_at_burst + paced * mails, 120)
        finally:
            server.stop(timeout=60)
            Keyring.stop_agent_of(server.archive / "keyring" / "committee")
            stop(capture)
        # Every process of the run, reaped: server, stages, gpg, load and capture alike.
        cpu_ms = (children_cpu() - cpu_before) * 1000 / (1 + n + paced)
        acks = {}
        relays = sealed = 0
        for n_line, line in enumerate(lines):
            at, kind, irt = [*line.split(" ", 2), ""][:3]
            if kind == "ack":
                acks[irt.strip()] = float(at)
            elif warm <= n_line < lines_at_burst:
                relays += 1
                sealed += kind == "sealed"
        latencies = [(acks[mid] - end) * 1000 for mid, end in ends.items() if mid in acks]
        paced_latencies = [(acks[mid] - end) * 1000 for mid, end in paced_ends.items()
                           if mid in acks]
        return {
            "flow_delay": flow_delay, "mailflow_rate": n / seconds,
            "acks": len(acks), "relays": relays, "encrypted_relays": sealed,
            "cpu_ms_per_report": cpu_ms,
            "all_delivered_seconds": finished - start,
            "processed_rate": n / (finished - start),
            "ack_p50_ms": percentile(latencies, 50), "ack_p99_ms": percentile(latencies, 99),
            "paced": paced, "paced_rate": paced_rate, "paced_acks": len(paced_latencies),
            "paced_p50_ms": percentile(paced_latencies, 50),
            "paced_p99_ms": percentile(paced_latencies, 99),
        }


def run_keyed(n: int, connections: int, paced: int, paced_rate: float) -> dict:
    """The cost of encryption: the same burst with no member keyed, then every member
    keyed (each committee copy encrypted), side by side, with default settings."""
    return {"messages": n, "connections": connections,
            "plain": run_mailflow(n, connections, paced, paced_rate, 1.0),
            "keyed": run_mailflow(n, connections, paced, paced_rate, 1.0, keyed=True)}


def print_keyed(r: dict) -> None:
    plain, keyed = r["plain"], r["keyed"]
    print(json.dumps(r, indent=2))
    print("\n| measure | no member keyed | every member keyed | target |\n|---|---|---|---|")
    for name, fmt, target in (
            ("committee copies encrypted", lambda x: f"{x['encrypted_relays']} of "
             f"{x['relays']}", ""),
            ("CPU a report, every process (server, stages, gpg, load, capture)",
             lambda x: f"{x['cpu_ms_per_report']:.1f} ms", ""),
            ("mailflow serve intake", lambda x: f"{x['mailflow_rate']:.0f} msg/s", ""),
            ("reports fully processed", lambda x: f"{x['processed_rate']:.0f} reports/s",
             ">= 100 keyed"),
            ("ack latency p50 / p99, saturated",
             lambda x: f"{x['ack_p50_ms']:.0f} / {x['ack_p99_ms']:.0f} ms", ""),
            ("ack latency p50 / p99, paced",
             lambda x: f"{x['paced_p50_ms']:.0f} / {x['paced_p99_ms']:.0f} ms", "")):
        print(f"| {name} | {fmt(plain)} | {fmt(keyed)} | {target} |")
    print(f"\nkeyed / plain, reports fully processed: "
          f"{keyed['processed_rate'] / plain['processed_rate']:.2f}; CPU a report: "
          f"{keyed['cpu_ms_per_report'] / plain['cpu_ms_per_report']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--paced", type=int, default=1000, help="messages in the paced run")
    parser.add_argument("--paced-rate", type=float, default=50.0, help="messages/s, paced run")
    parser.add_argument("--keyed", action="store_true",
                        help="compare no member keyed with every member keyed (OpenPGP)")
    args = parser.parse_args()
    if args.keyed:
        print_keyed(run_keyed(args.messages, args.connections, args.paced, args.paced_rate))
        return
    r = run(args.messages, args.connections, args.paced, args.paced_rate)
    print(json.dumps(r, indent=2))
    on, off = r["flow_control"], r["no_flow_control"]

    def both(fmt) -> str:
        return " | ".join(fmt(x) for x in (on, off))

    rows = [
        ("bare aiosmtpd sink, just before", both(lambda x: f"{x['sink_rate']:.0f} msg/s"),
         "baseline"),
        ("the same sink on uvloop", both(lambda x: f"{x['sink_uvloop_rate']:.0f} msg/s"), ""),
        ("mailflow serve intake", both(lambda x: f"{x['mailflow_rate']:.0f} msg/s"), ""),
        ("intake ratio (mailflow / sink)", both(lambda x: f"{x['ratio']:.2f}"), ">= 0.5"),
        ("intake ratio against the uvloop sink", both(lambda x: f"{x['ratio_uvloop']:.2f}"),
         ""),
        (f"all {r['messages']} acks and their relays delivered after",
         both(lambda x: f"{x['all_delivered_seconds']:.1f} s"), ""),
        ("reports fully processed", both(lambda x: f"{x['processed_rate']:.0f} reports/s"),
         ">= 200"),
        ("ack latency p50 / p99, saturated",
         both(lambda x: f"{x['ack_p50_ms']:.0f} / {x['ack_p99_ms']:.0f} ms"), "p99 < 250 ms"),
        (f"ack latency p50 / p99, {args.paced} at {args.paced_rate:.0f}/s",
         both(lambda x: f"{x['paced_p50_ms']:.0f} / {x['paced_p99_ms']:.0f} ms"),
         "p99 < 250 ms"),
    ]
    print("\n| measure | flow control (default) | flow_delay = 0 | target |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
