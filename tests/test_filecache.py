"""The per-user cache of parsed TOML files (``mailflow.toml``, ``rules/*.toml``): the
same tables as tomllib gives, never once the file changed, never from an entry that
others could have written; and a read command that finds it warm loads no tomllib."""

from __future__ import annotations

import marshal
import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from importkit import loaded

from mailflow import filecache, tomlfile

RULES = """\
# rules a committee might write, with TOML's dates and times
timezone = "Europe/Berlin"
holidays = [2026-12-25, 2027-01-01]
opens = 09:00:00
reviewed = 2026-03-02T09:30:00+01:00
logged = 2026-03-02T08:30:00Z
local = 2026-03-02T08:30:00
[[clock]]
name = "acknowledge"
after = ["24 hours"]
[clock.nested]
ratio = 0.5
flags = [true, false]
"""


def write(path: Path, text: str, ago: float = 10.0) -> None:
    """``text`` into ``path``, as if written ``ago`` seconds ago: the cache vouches only
    for files left alone for two seconds (filecache.SETTLED)."""
    path.write_text(text)
    when = time.time() - ago
    os.utime(path, (when, when))


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "mailflow"


def test_a_file_read_from_the_cache_is_what_tomllib_reads(tmp_path, cache):
    path = tmp_path / "clocks.toml"
    write(path, RULES)
    first = tomlfile.read(path)
    assert list(cache.glob("toml-*")), "the first read keeps an entry"
    second = tomlfile.read(path)
    expected = tomllib.loads(RULES)
    assert first == second == expected
    assert [type(d) for d in second["holidays"]] == [type(d) for d in expected["holidays"]]
    assert second["reviewed"].utcoffset() == expected["reviewed"].utcoffset()
    assert second["local"].tzinfo is None


def test_an_edited_file_is_read_again_even_at_the_same_size(tmp_path, cache):
    path = tmp_path / "m.toml"
    write(path, "max_size = 9000\n")
    assert tomlfile.read(path) == {"max_size": 9000}
    write(path, "max_size = 2048\n", ago=5)
    assert tomlfile.read(path) == {"max_size": 2048}


def test_a_file_broken_after_it_was_kept_is_reported_broken(tmp_path, cache):
    path = tmp_path / "m.toml"
    write(path, "[intake]\nmax_size = 9000\n")
    tomlfile.read(path)
    write(path, "[intake\n", ago=5)
    with pytest.raises(tomlfile.TOMLError):
        tomlfile.read(path)


def test_an_entry_others_could_write_is_not_used(tmp_path, cache):
    path = tmp_path / "m.toml"
    write(path, "chair = 'chair@example.org'\n")
    tomlfile.read(path)
    (entry,) = cache.glob("toml-*")
    key, _ = marshal.loads(entry.read_bytes())
    entry.write_bytes(marshal.dumps((key, {"chair": "mallory@example.net"})))
    entry.chmod(0o646)
    assert tomlfile.read(path) == {"chair": "chair@example.org"}
    # The same forgery, private: used, so the mode is what stopped it above.
    entry.write_bytes(marshal.dumps((key, {"chair": "mallory@example.net"})))
    assert tomlfile.read(path) == {"chair": "mallory@example.net"}


def test_an_entry_that_is_a_link_is_not_followed(tmp_path, cache):
    """A forgery of the right key, private and this user's own, put in place as a
    symbolic link to it: not read."""
    path = tmp_path / "m.toml"
    write(path, "chair = 'chair@example.org'\n")
    tomlfile.read(path)
    (entry,) = cache.glob("toml-*")
    key, _ = marshal.loads(entry.read_bytes())
    forged = tmp_path / "forged"
    forged.write_bytes(marshal.dumps((key, {"chair": "mallory@example.net"})))
    forged.chmod(0o600)
    entry.unlink()
    entry.symlink_to(forged)
    assert tomlfile.read(path) == {"chair": "chair@example.org"}


def test_a_damaged_entry_is_ignored(tmp_path, cache):
    path = tmp_path / "m.toml"
    write(path, "a = 1\n")
    tomlfile.read(path)
    (entry,) = cache.glob("toml-*")
    entry.write_bytes(b"\x00garbage")
    assert tomlfile.read(path) == {"a": 1}


def test_without_a_cache_directory_files_are_still_read(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    path = tmp_path / "m.toml"
    write(path, "a = 1\n")
    assert tomlfile.read(path) == tomlfile.read(path) == {"a": 1}
    assert filecache.directory().startswith(str(blocker))  # the one it could not make


def test_entries_are_private(tmp_path, cache):
    path = tmp_path / "m.toml"
    write(path, "a = 1\n")
    tomlfile.read(path)
    (entry,) = cache.glob("toml-*")
    assert entry.stat().st_mode & 0o777 == 0o600
    assert cache.stat().st_mode & 0o777 == 0o700


def test_a_read_command_with_a_warm_cache_loads_no_tomllib(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    assert subprocess.run([sys.executable, "-m", "mailflow", "init"], cwd=tmp_path, env=env,
                          capture_output=True, timeout=60).returncode == 0
    config = tmp_path / "mailflow.toml"
    write(config, config.read_text())

    assert "tomllib" in loaded("deadlines", cwd=tmp_path, env=env)  # the first reads all
    warm = loaded("deadlines", cwd=tmp_path, env=env)
    assert "mailflow.clocks.alarms" in warm and "tomllib" not in warm


def test_a_file_changed_in_the_last_two_seconds_gets_no_entry(tmp_path, cache):
    path = tmp_path / "m.toml"
    path.write_text("a = 1\n")
    assert tomlfile.read(path) == {"a": 1}
    assert not list(cache.glob("toml-*"))


def test_check_notes_a_cache_that_cannot_be_written(tmp_path):
    assert subprocess.run([sys.executable, "-m", "mailflow", "init"], cwd=tmp_path,
                          capture_output=True, timeout=60).returncode == 0
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")

    def check_output(cache_home: Path) -> str:
        env = {**os.environ, "XDG_CACHE_HOME": str(cache_home)}
        return subprocess.run([sys.executable, "-m", "mailflow", "check"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=60).stdout

    assert f"note: the cache cannot be written ({blocker}/mailflow:" in check_output(blocker)
    assert "the cache cannot be written" not in check_output(tmp_path / "cache")
