"""Start-up benchmark: how long the commands an MTA or an administrator runs take,
side by side with a bare interpreter start.

    .venv/bin/python bench/startup.py [--runs 30]

Each round runs, in turn: ``python -c pass`` (the baseline: the same interpreter,
site-packages and all), ``mailflow ingest`` with a new report on standard input (as
Postfix's pipe transport runs it: the venv's console script, an absolute ``--config``),
and the read commands ``cases``, ``case show``, ``deadlines`` and ``search`` against a
small archive, with ``mailflow serve`` running on it as deployed (which also spares
each ingest the WAL checkpoint SQLite makes when the last connection closes).  Rounds
interleave the commands so that the machine's drift falls on all of them alike; the
figures are medians of wall-clock time and of CPU time (user and system, from the
kernel's accounting of each child), the second being steadier on a busy machine.
Then ``python -X importtime`` lists what ``mailflow ingest`` imports, the largest
first.  "ingest, no cache" is ingest where its cache of the configuration cannot be
written (``$XDG_CACHE_HOME`` unusable), so that it reads ``mailflow.toml`` each time.

Targets (issue 19): ingest at most 3x the bare start; each read command at most 2x
ingest.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mailflow
from mailflow.filecache import SETTLED
from mailflow.testing import MailflowServer, make_mail

PYTHON = sys.executable
MAILFLOW = str(Path(sys.executable).with_name("mailflow"))


def timed(argv: list[str], stdin: bytes | None = None, env: dict[str, str] | None = None
          ) -> tuple[float, float]:
    """(wall, CPU) seconds of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, input=stdin, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def setup(server: MailflowServer) -> str:
    """One processed case in the server's archive; its id."""
    report = make_mail("rita@people.test", "conduct@example.org", "Insults in the chat",
                       "Sam called my patch garbage in the chat.")
    server.send(report, "rita@people.test", ["conduct@example.org"])
    server.processed(1)
    case_id = re.search(rb"\d{4}-\d{4}", server.cli("cases").stdout)
    assert case_id, "the report made no case"
    return case_id.group().decode()


def measure(config: Path, case_id: str, runs: int, before: Path | None
            ) -> dict[str, list[tuple[float, float]]]:
    cfg = ["--config", str(config)]
    ingest = [MAILFLOW, *cfg, "ingest", "--sender", "r@people.test", "conduct@example.org"]
    commands = {
        "python -c pass": [PYTHON, "-c", "pass"],
        "mailflow ingest": ingest,
        "mailflow cases": [MAILFLOW, *cfg, "cases"],
        "mailflow case show": [MAILFLOW, *cfg, "case", "show", case_id],
        "mailflow deadlines": [MAILFLOW, *cfg, "deadlines"],
        "mailflow search": [MAILFLOW, *cfg, "search", "garbage"],
    }
    # Where the cache of the configuration cannot be written (see filecache.py).
    commands["ingest, no cache"] = ingest
    if before:  # the same commands, run from another tree (the code before a change)
        commands |= {"before: ingest": ingest, "before: cases": [MAILFLOW, *cfg, "cases"]}
    envs = {"ingest, no cache": {**os.environ, "XDG_CACHE_HOME": "/dev/null/cache"},
            "before: ingest": {**os.environ, "PYTHONPATH": str(before)},
            "before: cases": {**os.environ, "PYTHONPATH": str(before)}}
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for n in range(runs):
        for name, argv in commands.items():
            stdin = (make_mail(f"r{n}.{name[:3]}@people.test", "conduct@example.org",
                               f"Report {n}", "Someone was rude.")
                     if "ingest" in name else None)
            times[name].append(timed(argv, stdin, envs.get(name)))
    return times


def imports(config: Path, top: int) -> list[tuple[int, str]]:
    """(cumulative µs, module) of the ingest's top-level imports, the largest first."""
    out = subprocess.run(
        [PYTHON, "-X", "importtime", MAILFLOW, "--config", str(config), "ingest",
         "--sender", "r@people.test", "conduct@example.org"],
        input=make_mail("x@people.test", "conduct@example.org", "x", "x"),
        capture_output=True, check=True).stderr.decode()
    rows = []
    for line in out.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| ( *)(\S+)", line)
        if m and len(m.group(2)) <= 2:  # what the script itself and its first level load
            rows.append((int(m.group(1)), m.group(3)))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--before", type=Path, metavar="DIR",
                        help="also run ingest and cases from this tree (e.g. `git archive "
                             "main`), side by side")
    args = parser.parse_args()
    # As installed: pip compiles the package's bytecode (this sandbox sets
    # PYTHONDONTWRITEBYTECODE, which would have every run compile mailflow afresh).
    subprocess.run([PYTHON, "-m", "compileall", "-q", str(Path(mailflow.__file__).parent)],
                   check=True, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="mailflow-startup-") as tmp, \
            MailflowServer(Path(tmp), None).start() as server:
        case_id = setup(server)
        # As deployed, the configuration was written long before: the cache vouches
        # only for files left alone for filecache.SETTLED seconds.
        time.sleep(SETTLED)
        if args.before:
            subprocess.run([PYTHON, "-m", "compileall", "-q", str(args.before / "mailflow")],
                           check=True, capture_output=True)
        times = measure(server.config, case_id, args.runs, args.before)
        found = imports(server.config, 15)
    for i, kind in enumerate(("wall-clock", "CPU")):
        med = {name: statistics.median(t[i] for t in ts) for name, ts in times.items()}
        base, ingest = med["python -c pass"], med["mailflow ingest"]
        print(f"\n{kind:<22} {'median':>9} {'x bare':>7} {'x ingest':>9}")
        for name in times:
            print(f"{name:<22} {med[name] * 1000:>7.1f}ms {med[name] / base:>7.2f} "
                  f"{med[name] / ingest:>9.2f}")
    print("\nmailflow ingest, largest imports (cumulative, first levels):")
    for us, module in found:
        print(f"  {us / 1000:>6.1f} ms  {module}")


if __name__ == "__main__":
    main()
