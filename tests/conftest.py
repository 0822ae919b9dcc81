"""Shared fixtures: a capturing SMTP relay (aiosmtpd) and a real ``mailflow serve``
subprocess on loopback, talking real SMTP both ways.  The harness itself ships with
mailflow (:mod:`mailflow.testing`), which the tests import from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pgpkit import GnuPG

from mailflow.testing import CaptureRelay, MailflowServer, free_port


@pytest.fixture(autouse=True, scope="session")
def cache_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """`mailflow ingest` keeps its settings in the user's cache directory: the tests'
    own, not the home directory of whoever runs them."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def relay() -> Iterator[CaptureRelay]:
    r = CaptureRelay(free_port())
    r.start()
    yield r
    r.stop()


@pytest.fixture
def server(tmp_path: Path, relay: CaptureRelay) -> Iterator[MailflowServer]:
    s = MailflowServer(tmp_path, relay.port).start()
    yield s
    s.stop()


@pytest.fixture
def gnupg_homes() -> Iterator[GnuPG]:
    """GnuPG homes for people and the committee's keyrings; no agent outlives the test."""
    homes = GnuPG()
    yield homes
    homes.close()
