"""Search benchmark: mailflow's archive against notmuch, on the same synthetic mail.

    .venv/bin/python bench/search.py                     # 200,000 messages
    .venv/bin/python bench/search.py --messages 1000000  # the full figure

Builds a Maildir of synthetic mail (fixed seed: realistic sizes, a few thousand
senders of very unequal activity, threads of reports, replies that quote, committee
discussion, the odd attachment), then in the same run:

- indexes it with ``notmuch new`` (the anchor) and imports it with ``mailflow import``,
  each timed from the outside as a process;
- runs a set of typical queries through both, in process (mailflow's ``search.run``,
  notmuch's library through ctypes), each returning the first 20 results with their
  subject and sender, and reports p50/p95 latencies;
- reports the size on disk of both.

Results go to stdout and to bench/results/search-N.json.  With ``--reuse`` the mail,
notmuch's index and mailflow's archive already in ``--workdir`` are kept and only the
queries run (results to bench/results/search-N-queries.json): for timing query changes
without an import each time.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from mailflow import config as config_mod  # noqa: E402
from mailflow import store  # noqa: E402
from mailflow.archive import search  # noqa: E402

DOMAIN = "example.org"
MEMBERS = ["chair@example.org", "m1@example.org", "m2@example.org"]
START = datetime(2019, 1, 1, tzinfo=UTC)
SPAN_DAYS = 7 * 365
# Real words the queries use, mixed into the generated vocabulary at realistic rates.
TOPIC_WORDS = ["harassment", "meeting", "insulting", "conference", "apology", "moderator",
               "threatening", "channel", "warning", "hackathon", "mediation", "timeline"]


class Corpus:
    """Deterministic synthetic mail; everything derives from the seed."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "st", "ng"]
        words = set()
        while len(words) < 20000:
            words.add("".join(self.rng.choice(syllables)
                              for _ in range(self.rng.choice((1, 2, 2, 3, 3, 4)))))
        self.words = sorted(words)
        self.rng.shuffle(self.words)
        self.words[50:50] = TOPIC_WORDS
        # Zipf: word i is drawn with weight 1/(i+1).
        self.word_cum = list(_cumulative(len(self.words)))
        names = sorted({self.rng.choice(syllables).title() + self.rng.choice(syllables)
                        for _ in range(3000)})
        self.people = []
        for i in range(5000):
            first, last = self.rng.choice(names), self.rng.choice(names)
            domain = self.rng.choice(["mail.test", "uni.test", "corp.test", "dev.test"])
            self.people.append((f"{first} {last}", f"{first}.{last}{i}@{domain}".lower()))
        self.people_cum = list(_cumulative(len(self.people)))

    def word(self) -> str:
        return self.words[_pick(self.rng, self.word_cum)]

    def person(self) -> tuple[str, str]:
        return self.people[_pick(self.rng, self.people_cum)]

    def sentence(self) -> str:
        n = max(3, int(self.rng.gauss(12, 5)))
        return " ".join(self.word() for _ in range(n)).capitalize() + "."

    def text(self) -> str:
        size = min(int(self.rng.lognormvariate(6.3, 0.9)), 30000)  # median ~550 bytes
        out: list[str] = []
        para: list[str] = []
        length = 0
        while length < size:
            s = self.sentence()
            para.append(s)
            length += len(s) + 1
            if len(para) >= self.rng.randint(2, 6):
                out.append(_wrap(" ".join(para)))
                para = []
        if para:
            out.append(_wrap(" ".join(para)))
        return "\n\n".join(out)

    def messages(self, count: int):
        """Yield (name, bytes) in date order, as an mbox export would list them."""
        made = 0
        pending: list[tuple[datetime, int, bytes]] = []
        thread = 0
        while made < count:
            thread += 1
            length = min(1 + int(self.rng.expovariate(1 / 5)), 60, count - made)
            for item in self._thread(thread, length):
                pending.append(item)
            made += length
        pending.sort(key=lambda t: (t[0], t[1]))
        for i, (_, _, raw) in enumerate(pending):
            yield f"{i:08d}", raw

    def _thread(self, thread: int, length: int):
        reporter_name, reporter = self.person()
        subject = " ".join(self.word() for _ in range(self.rng.randint(3, 8))).capitalize()
        when = START + timedelta(seconds=self.rng.uniform(0, SPAN_DAYS * 86400))
        root = f"<t{thread}.0@{reporter.split('@')[1]}>"
        refs: list[str] = []
        previous = ""
        for n in range(length):
            if n == 0:
                sender_name, sender, to = reporter_name, reporter, f"conduct@{DOMAIN}"
                subj, mid = subject, root
            elif self.rng.random() < 0.35:
                sender_name, sender, to = reporter_name, reporter, f"conduct@{DOMAIN}"
                subj, mid = f"Re: {subject}", f"<t{thread}.{n}@{reporter.split('@')[1]}>"
            else:
                sender = self.rng.choice(MEMBERS)
                sender_name, to = sender.split("@")[0].title(), f"committee@{DOMAIN}"
                subj, mid = f"Re: {subject}", f"<t{thread}.{n}@{DOMAIN}>"
            body = self.text()
            if previous and self.rng.random() < 0.7:
                quoted = "\n".join("> " + line for line in previous[:4000].splitlines())
                body += f"\n\nOn {format_datetime(when)}, someone wrote:\n{quoted}"
            headers = [
                f"From: {sender_name} <{sender}>", f"To: {to}", f"Subject: {subj}",
                f"Date: {format_datetime(when)}", f"Message-ID: {mid}",
            ]
            if refs:
                headers += [f"In-Reply-To: {refs[-1]}", f"References: {' '.join(refs[-10:])}"]
            headers.append("MIME-Version: 1.0")
            if self.rng.random() < 0.02:
                blob = self.rng.randbytes(self.rng.randint(5000, 40000))
                raw = _with_attachment(headers, body, blob)
            else:
                raw = "\n".join([*headers, "Content-Type: text/plain; charset=utf-8", "",
                                 body, ""]).encode()
            yield when, thread * 100 + n, raw
            refs.append(mid)
            previous = body
            when += timedelta(seconds=self.rng.expovariate(1 / 20000))


def _cumulative(n: int):
    total = 0.0
    for i in range(n):
        total += 1.0 / (i + 1)
        yield total


def _pick(rng: random.Random, cum: list[float]) -> int:
    import bisect

    return min(bisect.bisect_left(cum, rng.random() * cum[-1]), len(cum) - 1)


def _wrap(text: str, width: int = 72) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\n".join(lines)


def _with_attachment(headers: list[str], body: str, blob: bytes) -> bytes:
    import base64

    encoded = base64.encodebytes(blob).decode()
    parts = [
        *headers, 'Content-Type: multipart/mixed; boundary="b0undary"', "",
        "--b0undary", "Content-Type: text/plain; charset=utf-8", "", body, "",
        "--b0undary", "Content-Type: application/octet-stream",
        'Content-Disposition: attachment; filename="evidence.bin"',
        "Content-Transfer-Encoding: base64", "", encoded, "--b0undary--", "",
    ]
    return "\n".join(parts).encode()


QUERIES = {
    "a person's address": "from:{person}",
    "a phrase": '"{phrase}"',
    "a date range": "date:2023-03-01..2023-03-31",
    "a combination": "from:{person} harassment date:2020..2024",
    "a word": "mediation",
}
NOTMUCH_QUERIES = {
    "a person's address": "from:{person}",
    "a phrase": '"{phrase}"',
    "a date range": "date:2023-03-01..2023-03-31",
    "a combination": "from:{person} and harassment and date:2020..2024",
    "a word": "mediation",
}


class Notmuch:
    """libnotmuch in process, through ctypes: the same work as mailflow's search.run
    (open query, first 20 messages newest first, their subject and sender)."""

    def __init__(self, db_path: Path, config: Path):
        lib = ctypes.CDLL("libnotmuch.so.5")
        self.lib = lib
        lib.notmuch_query_create.restype = ctypes.c_void_p
        lib.notmuch_query_create.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.notmuch_query_search_messages.argtypes = [ctypes.c_void_p,
                                                      ctypes.POINTER(ctypes.c_void_p)]
        lib.notmuch_messages_valid.argtypes = [ctypes.c_void_p]
        lib.notmuch_messages_get.restype = ctypes.c_void_p
        lib.notmuch_messages_get.argtypes = [ctypes.c_void_p]
        lib.notmuch_messages_move_to_next.argtypes = [ctypes.c_void_p]
        lib.notmuch_message_get_header.restype = ctypes.c_char_p
        lib.notmuch_message_get_header.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.notmuch_message_destroy.argtypes = [ctypes.c_void_p]
        lib.notmuch_query_destroy.argtypes = [ctypes.c_void_p]
        lib.notmuch_query_set_sort.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.db = ctypes.c_void_p()
        err = ctypes.c_char_p()
        status = lib.notmuch_database_open_with_config(
            str(db_path).encode(), 0, str(config).encode(), None, ctypes.byref(self.db),
            ctypes.byref(err))
        if status:
            raise RuntimeError(f"notmuch open failed: {status} {err.value}")

    def search(self, query: str, limit: int = 20) -> list[tuple[bytes, bytes]]:
        lib = self.lib
        q = lib.notmuch_query_create(self.db, query.encode())
        lib.notmuch_query_set_sort(q, 1)  # NEWEST_FIRST
        msgs = ctypes.c_void_p()
        lib.notmuch_query_search_messages(q, ctypes.byref(msgs))
        out = []
        while len(out) < limit and lib.notmuch_messages_valid(msgs):
            m = lib.notmuch_messages_get(msgs)
            out.append((lib.notmuch_message_get_header(m, b"subject"),
                        lib.notmuch_message_get_header(m, b"from")))
            lib.notmuch_message_destroy(m)
            lib.notmuch_messages_move_to_next(msgs)
        lib.notmuch_query_destroy(q)
        return out


def timed(func, repeat: int) -> tuple[float, float, int]:
    """(p50 ms, p95 ms, results of the last run)."""
    times, n = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        n = func()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return statistics.median(times), times[max(0, math.ceil(0.95 * len(times)) - 1)], n


def size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=50, help="runs of each query")
    parser.add_argument("--workdir", default=str(HERE / "results" / "search-work"))
    parser.add_argument("--reuse", action="store_true",
                        help="keep the mail and both indexes in --workdir; only run the queries")
    args = parser.parse_args()
    work = Path(args.workdir)
    maildir = work / "Maildir"
    nm_config = work / "notmuch-config"
    cfg_path = work / "mailflow.toml"
    corpus = Corpus(args.seed)
    # The queries' person and phrase derive from the seed, not from the mail written.
    person = corpus.people[3][1]
    phrase = " ".join(corpus.words[60:62])
    result = reused(work) if args.reuse else build(args.messages, corpus, work)

    cfg = config_mod.load(str(cfg_path))
    db = store.connect(cfg.db_path)
    # A reused archive may predate the current schema.  Say so: a migration that rebuilds
    # the index also merges it into one segment, which makes lookups faster than after
    # an import.
    applied = store.migrate(db)
    if applied:
        print(f"migrated the archive: {', '.join(applied)}", flush=True)
    nm = Notmuch(maildir, nm_config)
    queries = {}
    for label, q in QUERIES.items():
        mq = q.format(person=person, phrase=phrase)
        nq = NOTMUCH_QUERIES[label].format(person=person, phrase=phrase)
        m50, m95, mn = timed(lambda mq=mq: len(search.run(db, mq)["results"]), args.repeat)
        n50, n95, nn = timed(lambda nq=nq: len(nm.search(nq)), args.repeat)
        queries[label] = {"mailflow": mq, "notmuch": nq, "mailflow_p50_ms": round(m50, 2),
                          "mailflow_p95_ms": round(m95, 2), "notmuch_p50_ms": round(n50, 2),
                          "notmuch_p95_ms": round(n95, 2), "p95_ratio": round(m95 / n95, 2),
                          "hits": [mn, nn]}
    result["queries"] = queries
    name = f"search-{result['messages']}{'-queries' if args.reuse else ''}.json"
    out = HERE / "results" / name
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


def build(messages: int, corpus: Corpus, work: Path) -> dict:
    """Write the Maildir, index it with notmuch and import it into mailflow, timed."""
    shutil.rmtree(work, ignore_errors=True)
    maildir = work / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True)
    start = time.perf_counter()
    total_bytes = 0
    for name, raw in corpus.messages(messages):
        (maildir / "cur" / f"{name}:2,").write_bytes(raw)
        total_bytes += len(raw)
    print(f"generated {messages} messages ({total_bytes / 1e6:.0f} MB) in "
          f"{time.perf_counter() - start:.0f}s", flush=True)

    nm_config = work / "notmuch-config"
    nm_config.write_text(f"[database]\npath={maildir}\n[new]\ntags=\n"
                         "[maildir]\nsynchronize_flags=false\n")
    env = {**os.environ, "NOTMUCH_CONFIG": str(nm_config)}
    start = time.perf_counter()
    subprocess.run(["notmuch", "new", "--quiet"], env=env, check=True)
    nm_seconds = time.perf_counter() - start
    print(f"notmuch new: {nm_seconds:.1f}s", flush=True)

    archive = work / "archive"
    cfg_path = work / "mailflow.toml"
    cfg_path.write_text(f'[storage]\npath = "{archive}"\n')
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mailflow", "--config", str(cfg_path), "import",
                    str(maildir), "-q"], check=True)
    mf_seconds = time.perf_counter() - start
    print(f"mailflow import: {mf_seconds:.1f}s", flush=True)
    return {
        "messages": messages, "mail_bytes": total_bytes,
        "notmuch_index_seconds": round(nm_seconds, 1),
        "notmuch_rate": round(messages / nm_seconds),
        "mailflow_import_seconds": round(mf_seconds, 1),
        "mailflow_rate": round(messages / mf_seconds),
        "import_ratio": round(nm_seconds / mf_seconds, 2),
        "mailflow_archive_bytes": size(archive),
        "notmuch_index_bytes": size(maildir / ".notmuch"),
    }


def reused(work: Path) -> dict:
    """What an earlier run left in ``work``: only its size is known."""
    for needed in ("Maildir", "archive", "mailflow.toml", "notmuch-config"):
        if not (work / needed).exists():
            sys.exit(f"--reuse: {work / needed} is missing; run once without --reuse")
    return {"messages": sum(1 for _ in (work / "Maildir" / "cur").iterdir()), "reused": str(work)}


if __name__ == "__main__":
    main()
