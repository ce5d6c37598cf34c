"""Test-wide settings: Prefect, Hugging Face and mlcroissant stay local and quiet; one Prefect
server per run; the sample built once by the CLI for the tests that read a real release."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Must be set before prefect is imported anywhere.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="treeoflife-prefect-"))
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
# mlcroissant extracts archives (the shards) into this cache: one per session, not in $HOME.
os.environ.setdefault("CROISSANT_CACHE", tempfile.mkdtemp(prefix="treeoflife-croissant-"))

REPO = Path(__file__).resolve().parents[1]
REAL_FIXTURES = REPO / "tests" / "fixtures" / "real"  # third-party data, see its SOURCES.md


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect server for every flow test of the session (it starts slowly)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def s3_server():
    """One loopback S3-compatible server (moto) for every shared-storage test of the session."""
    from tests.support.s3_server import S3Server

    with S3Server() as server:
        yield server


@pytest.fixture
def s3_storage(s3_server):
    """A fresh prefix on the loopback S3 server, as treeoflife.storage sees it."""
    import uuid

    from treeoflife.storage import FsspecStorage

    return FsspecStorage(s3_server.url(f"t-{uuid.uuid4().hex[:10]}"), s3_server.options)


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`treeoflife ARGS` as a user runs it: a real process, from the repository, not a TTY."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "treeoflife.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def built_sample(tmp_path_factory) -> dict:
    """The bundled sample built once per session by `treeoflife build` (about 10 s): its data
    root, release folder and the summary the build printed. Tests must not change it."""
    root = tmp_path_factory.mktemp("cli-sample") / "data"
    proc = run_cli("build", "--config", "configs/sample.yaml", "--data-root", str(root), "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {"root": root, "release": root / "release", "stdout": proc.stdout}
