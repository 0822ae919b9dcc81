"""``mailflow ingest``'s short way: its own reading of the command line, held to
argparse's, and the cache of the three settings it needs, which must never be used
once what it was made from changed, nor when somebody else could have written it.

Each test runs the real command (``python -m mailflow``) on a real archive, with its
own cache directory."""

from __future__ import annotations

import marshal
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from importkit import imported

from mailflow.cli import parser
from mailflow.cli.ingest import read_args
from mailflow.intake import pipeconfig
from mailflow.testing import make_mail

REPORT = make_mail("rita@people.test", "conduct@example.org", "Insults", "Sam was rude.")


# Command lines as MTAs and people write them, and mistakes.
ARGVS = [
    ["ingest"],
    ["--config", "m.toml", "ingest", "--sender", "a@b.test", "--", "conduct@example.org"],
    ["ingest", "--config", "m.toml", "--sender", "", "--", "conduct@example.org"],
    ["ingest", "--sender", "a@b.test", "conduct@example.org", "committee@example.org"],
    ["-v", "ingest", "--debug-content", "--config", "x.toml", "conduct@example.org"],
    ["--config", "a.toml", "ingest", "--config", "b.toml"],
    ["ingest", "--", "-odd@example.org", "--sender"],
    ["ingest", "ingest"],
    ["ingest", "conduct@example.org", "--sender", "a@b.test"],
    ["--sender", "a@b.test", "ingest"],
    ["--config", "--config", "x", "ingest"],
    ["ingest", "--sender"],
    ["ingest", "--sender", "-x"],
    ["ingest", "--config"],
    ["ingest", "--sender=a@b.test", "c@d.test"],
    ["ingest", "--send", "a@b.test"],
    ["ingest", "-h"],
    ["ingest", "--help"],
    ["ingest", "--unknown"],
    ["ingest", "a@b.test", "--", "c@d.test"],
    ["--config", "m.toml"],
]


def argparse_reading(argv: list[str]) -> tuple | None:
    """What the full parser makes of ``argv``: (config, sender, recipients), or None
    when it refuses it or prints help."""
    try:
        args = parser.build_parser("ingest").parse_args(argv)
    except SystemExit:
        return None
    if getattr(args, "func", None) is None:
        return None
    return args.config, args.sender, args.recipient


@pytest.mark.parametrize("argv", ARGVS, ids=" ".join)
def test_ingest_reads_a_command_line_as_argparse_does_or_leaves_it_to_argparse(argv):
    mine = read_args(argv)
    assert mine is None or mine == argparse_reading(argv)


def test_the_usual_forms_take_the_short_way():
    taken = [argv for argv in ARGVS if read_args(argv) is not None]
    assert len(taken) >= 7  # the forms above the first mistake
    assert read_args(["--config", "/etc/mailflow/mailflow.toml", "ingest", "--sender", "",
                      "--", "conduct@example.org"]) == (
        "/etc/mailflow/mailflow.toml", "", ["conduct@example.org"])


def ingest(config: Path, cache: Path, raw: bytes = REPORT, *extra: str
           ) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    return subprocess.run([sys.executable, *extra, "-m", "mailflow", "--config", str(config),
                           "ingest", "--sender", "rita@people.test", "--",
                           "conduct@example.org"],
                          input=raw, capture_output=True, env=env, timeout=60)


def spooled(archive: Path) -> int:
    with sqlite3.connect(archive / "spool.db") as conn:
        return int(conn.execute("SELECT count(*) FROM spool").fetchone()[0])


def settled(path: Path, ago: float = 10.0) -> None:
    """As if ``path`` had been written ``ago`` seconds ago: the cache vouches only for
    files left alone for two seconds (filecache.SETTLED)."""
    when = time.time() - ago
    os.utime(path, (when, when))


def setup(tmp_path: Path, max_size: int = 9000) -> tuple[Path, Path, Path]:
    config, archive = tmp_path / "mailflow.toml", tmp_path / "archive"
    config.write_text(f'[intake]\nmax_size = {max_size}\n[storage]\npath = "{archive}"\n')
    settled(config)
    return config, archive, tmp_path / "cache"


def numbered(n: int) -> bytes:
    return make_mail("rita@people.test", "conduct@example.org", f"Report {n}", "Rude.")


def test_a_second_ingest_reads_the_cache_and_loads_no_toml_nor_argparse(tmp_path):
    config, archive, cache = setup(tmp_path)
    assert ingest(config, cache).returncode == 0
    assert len(list((cache / "mailflow").glob("ingest-*"))) == 1
    second = ingest(config, cache, numbered(2), "-X", "importtime")
    assert second.returncode == 0, second.stderr
    modules = imported(second.stderr)
    assert "mailflow.intake.spool" in modules  # the measure sees what was loaded
    assert modules & {"tomllib", "argparse", "mailflow.config", "pathlib", "typing"} == set()
    assert spooled(archive) == 2


def test_an_edited_configuration_is_read_again_even_at_the_same_size(tmp_path):
    config, archive, cache = setup(tmp_path, max_size=9000)
    big = numbered(1) + b"x" * 3000
    assert ingest(config, cache, big).returncode == 0
    config.write_text(config.read_text().replace("9000", "2048"))  # same length
    settled(config, ago=5)
    refused = ingest(config, cache, numbered(2) + b"x" * 3000)
    assert refused.returncode == 65 and b"max_size" in refused.stderr
    assert spooled(archive) == 1


def test_a_broken_configuration_is_never_covered_by_the_cache(tmp_path):
    config, archive, cache = setup(tmp_path)
    assert ingest(config, cache).returncode == 0
    config.write_text(config.read_text() + "[intake\n")
    settled(config, ago=5)
    failed = ingest(config, cache, numbered(2))
    assert failed.returncode == 75 and b"not valid TOML" in failed.stderr
    assert spooled(archive) == 1


def forge(cache: Path, db_path: str) -> Path:
    """Rewrite the one cache file so that it sends the spool to ``db_path``, its key
    left as it was (a forgery that would pass if only the key were checked)."""
    (entry,) = (cache / "mailflow").glob("ingest-*")
    key, values = marshal.loads(entry.read_bytes())
    entry.write_bytes(marshal.dumps((key, (db_path, *values[1:]))))
    return entry


def test_a_cache_others_could_write_is_not_trusted(tmp_path):
    config, archive, cache = setup(tmp_path)
    assert ingest(config, cache).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    entry = forge(cache, str(elsewhere / "mailflow.db"))
    entry.chmod(0o666)
    assert ingest(config, cache, numbered(2)).returncode == 0
    assert spooled(archive) == 2 and not elsewhere.exists()
    assert entry.stat().st_mode & 0o777 == 0o600  # written anew, its own


def test_the_forgery_check_is_what_stopped_it(tmp_path):
    """The same forgery, left 0600: the cache is used (so the test above shows the mode
    check at work, not some other difference)."""
    config, archive, cache = setup(tmp_path)
    assert ingest(config, cache).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    forge(cache, str(elsewhere / "mailflow.db")).chmod(0o600)
    assert ingest(config, cache, numbered(2)).returncode == 0
    assert spooled(archive) == 1 and spooled(elsewhere) == 1


def test_a_damaged_cache_is_ignored_and_replaced(tmp_path):
    config, archive, cache = setup(tmp_path)
    assert ingest(config, cache).returncode == 0
    (entry,) = (cache / "mailflow").glob("ingest-*")
    entry.write_bytes(entry.read_bytes()[:20])
    assert ingest(config, cache, numbered(2)).returncode == 0
    assert spooled(archive) == 2
    _, values = marshal.loads(entry.read_bytes())
    assert values[0] == str(archive / "mailflow.db")


def test_without_a_writable_cache_directory_ingest_still_commits(tmp_path):
    config, archive, _ = setup(tmp_path)
    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    for n in range(2):
        result = ingest(config, not_a_directory, numbered(n))
        assert result.returncode == 0, result.stderr
    assert spooled(archive) == 2


def test_the_cache_follows_the_code_that_reads_the_configuration(tmp_path, monkeypatch):
    """A new mailflow (another config.py) makes another key: an upgrade that changes
    a default is never hidden by the cache of the old one."""
    config, _, _ = setup(tmp_path)
    key = pipeconfig._key(str(config))
    copy = tmp_path / "config.py"
    copy.write_text(Path(pipeconfig.CONFIG_CODE).read_text() + "\n# changed\n")
    monkeypatch.setattr(pipeconfig, "CONFIG_CODE", str(copy))
    assert key is not None and pipeconfig._key(str(config)) != key


def test_the_full_parser_still_gives_ingest_its_help():
    result = subprocess.run([sys.executable, "-m", "mailflow", "ingest", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "null_sender=" in result.stdout


def test_a_file_just_written_gets_no_entry(tmp_path):
    """Written in the last two seconds, the file could change again within the same
    clock tick unseen: nothing vouches for it yet."""
    config, archive, cache = setup(tmp_path)
    config.write_text(config.read_text())
    assert ingest(config, cache).returncode == 0
    assert not list((cache / "mailflow").glob("ingest-*"))
    assert spooled(archive) == 1


def test_a_change_that_keeps_size_and_modification_time_is_still_seen(tmp_path):
    """Rewritten in place with its old modification time put back: the change time,
    which nothing can set back, tells the versions apart."""
    config, archive, cache = setup(tmp_path, max_size=9000)
    assert ingest(config, cache).returncode == 0
    before = config.stat()
    config.write_text(config.read_text().replace("9000", "2048"))
    os.utime(config, ns=(before.st_atime_ns, before.st_mtime_ns))
    refused = ingest(config, cache, numbered(2) + b"x" * 3000)
    assert refused.returncode == 65
    assert spooled(archive) == 1


def test_an_envelope_that_is_not_utf8_is_committed_not_deferred_for_ever(tmp_path):
    """Bytes that are not UTF-8 in the sender or a recipient (Python holds them as lone
    surrogates, which SQLite refuses): the message is committed, the bytes written as
    \\xNN, and the pipeline handles it like any other."""
    config, archive, cache = setup(tmp_path)
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    argv = [sys.executable.encode(), b"-m", b"mailflow", b"--config", bytes(config),
            b"ingest", b"--sender", b"r\xff@people.test", b"--", b"conduct\xfe@example.org",
            b"conduct@example.org"]
    result = subprocess.run(argv, input=REPORT, capture_output=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(archive / "spool.db") as conn:
        assert conn.execute("SELECT envelope_from, rcpts FROM spool").fetchall() == [
            ("r\\xff@people.test", '["conduct\\\\xfe@example.org","conduct@example.org"]')]
    processed = subprocess.run([sys.executable, "-m", "mailflow", "--config", str(config),
                                "process"], capture_output=True, text=True, env=env, timeout=120)
    assert processed.returncode == 0, processed.stderr
    with sqlite3.connect(archive / "mailflow.db") as conn:
        assert conn.execute("SELECT count(*) FROM cases").fetchone()[0] == 1
        assert conn.execute("SELECT count(*) FROM spool_state WHERE state = 'quarantined'"
                            ).fetchone()[0] == 0
