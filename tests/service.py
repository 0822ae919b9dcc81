"""mailflow as a service user runs it, for tests that run as root: a directory that
user can reach, holding an archive it owns, and a way for it to start mailflow."""

from __future__ import annotations

import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

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
    Python of the same version, with the venv's packages (an interpreter under root's
    home, as pyenv's, is out of a service user's reach)."""
    with suppress(OSError):
        if subprocess.run([sys.executable, "-c", "pass"], user=user).returncode == 0:
            return [str(Path(sys.executable).with_name("mailflow"))]
    system = Path(f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}")
    if not system.exists():
        pytest.skip(f"{user} can run neither {sys.executable} nor {system}")
    wrapper = where / "mailflow"
    wrapper.write_text(f"#!{system} -I\nimport site, sys\n"
                       f"site.addsitedir({sysconfig.get_path('purelib')!r})\n"
                       "from mailflow.cli.main import main\n"
                       "if __name__ == '__main__':\n    sys.exit(main())\n")
    wrapper.chmod(0o755)
    reached = subprocess.run([str(wrapper), "--help"], user=user, capture_output=True)
    if reached.returncode != 0:  # the checkout itself is out of the user's reach
        pytest.skip(f"{user} cannot run mailflow from {sysconfig.get_path('purelib')}: "
                    f"{reached.stderr.decode()[-300:]}")
    return [str(wrapper)]
