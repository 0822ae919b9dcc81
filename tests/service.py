"""mailflow as a service user runs it, for tests that run as root: a directory that
user can reach, holding an archive it owns, and a way for it to start mailflow."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

USER = "nobody"  # exists everywhere; Postfix's pipe transport refuses root


@contextmanager
def service_root() -> Iterator[Path]:
    """A directory ``USER`` can reach, with ``archive/`` owned by it."""
    root = Path(tempfile.mkdtemp(prefix="mailflow-service-"))
    root.chmod(0o711)
    archive = root / "archive"
    archive.mkdir()
    shutil.chown(archive, USER, pwd.getpwnam(USER).pw_gid)
    try:
        yield root
    finally:
        log = root / "serve.log"
        print(log.read_text(errors="replace")[-20000:] if log.exists() else "")  # on failure
        shutil.rmtree(root, ignore_errors=True)


def mailflow_for(user: str, where: Path) -> list[str]:
    """How ``user`` runs mailflow: the venv's own ``mailflow`` script when the user can
    run this interpreter, else a script of the same shape in ``where`` for the system's
    Python of the same version (an interpreter under root's home, as pyenv's, is out
    of a service user's reach), with the venv's packages; and when the checkout itself
    is out of reach too, with a copy of what mailflow needs in ``where``."""
    with suppress(OSError):
        if subprocess.run([sys.executable, "-c", "pass"], user=user).returncode == 0:
            return [str(Path(sys.executable).with_name("mailflow"))]
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    assert system.exists(), f"{user} can run neither {sys.executable} nor {system}"
    wrapper = where / "mailflow"
    _write_wrapper(wrapper, system, [sysconfig.get_path("purelib")])
    if subprocess.run([str(wrapper), "--help"], user=user, capture_output=True).returncode:
        _write_wrapper(wrapper, system, _reachable_copy(where / "lib"))
    reached = subprocess.run([str(wrapper), "--help"], user=user, capture_output=True)
    assert reached.returncode == 0, reached.stderr.decode()[-300:]
    return [str(wrapper)]


def _write_wrapper(wrapper: Path, python: Path, paths: list[str]) -> None:
    wrapper.write_text(f"#!{python} -I\nimport site, sys\n"
                       + "".join(f"site.addsitedir({p!r})\n" for p in paths)
                       + "from mailflow.cli.main import main\n"
                       "if __name__ == '__main__':\n    sys.exit(main())\n")
    wrapper.chmod(0o755)


# Tools of the test environment that mailflow does not run with.
NOT_NEEDED = ("mypy", "mypyc", "*__mypyc*", "pip", "setuptools", "ruff", "pygments",
              "_pytest", "pytest", "__pycache__")


def _reachable_copy(lib: Path) -> list[str]:
    """The venv's packages and the checkout's mailflow (with its templates and rules,
    where :mod:`mailflow.resources` looks for them) copied where the service user can
    read them: hard links where the file system allows, else copies."""
    import mailflow

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    ignore = shutil.ignore_patterns(*NOT_NEEDED)
    shutil.copytree(sysconfig.get_path("purelib"), lib / "site", ignore=ignore,
                    copy_function=link)
    checkout = Path(mailflow.__file__).resolve().parent.parent
    for name in ("mailflow", "templates", "rules"):
        shutil.copytree(checkout / name, lib / "src" / name, ignore=ignore, copy_function=link)
    for path in [lib, *lib.rglob("*")]:
        if path.is_dir():  # made here; the files are the venv's own, readable already
            path.chmod(0o755)
    return [str(lib / "src"), str(lib / "site")]
