"""A real Prefect server and process worker on loopback: `prefect deploy --all` from prefect.yaml,
then `prefect deployment run tree-of-life/local` builds the sample."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow

PREFECT = [sys.executable, "-m", "prefect"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError("prefect server did not become healthy")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_deployment_run_through_a_process_worker(tmp_path):
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PWD": str(REPO),  # prefect.yaml's pull step runs flows in this checkout
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    server = subprocess.Popen(
        [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=REPO,
        stdout=open(logs / "server.log", "wb"),  # noqa: SIM115 - lives as long as the server
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        _wait_healthy(api, server)

        def prefect(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
            """Run a prefect command; on failure show its output and the worker's log tail."""
            proc = subprocess.run(
                [*PREFECT, *args],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=timeout,
            )
            worker_log = logs / "worker.log"
            tail = worker_log.read_text(errors="replace")[-4000:] if worker_log.exists() else ""
            assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:] + tail
            return proc

        prefect("work-pool", "create", "local", "--type", "process")
        deployed = prefect("--no-prompt", "deploy", "--all")
        for name in ("tree-of-life", "ingest", "taxonomy", "dedup", "release", "train", "evaluate"):
            assert f"'{name}/local' successfully created" in deployed.stdout, name
        worker = subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", "local"],
            env=env,
            cwd=REPO,
            stdout=open(logs / "worker.log", "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        root = tmp_path / "data"
        run = prefect(
            "deployment",
            "run",
            "tree-of-life/local",
            "--param",
            f"data_root={root}",
            "--watch",
            "--watch-timeout",
            "600",
            timeout=660,
        )
        assert "Completed" in run.stdout, run.stdout[-2000:]
        summary = json.loads((root / "release" / "summary.json").read_text())
        assert summary["by_status"]["kept"] > 0
        assert Path(root / "release" / "catalog.parquet").exists()
    finally:
        if worker is not None:
            _stop(worker)
        _stop(server)
