"""Every shell and Python block of README.md and docs/ runs, as written (tests/docs/doc_blocks.py).

A page fails on the first block that exits non-zero, naming it (`README.md:24`). The README's
build and the Prefect deployment run must also give a release byte-identical to the CLI's
build of the sample, and the Prefect flow runs must end Completed on the server the block
started (checked while it still runs).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.docs.doc_blocks import MARKS, REPO, SHELL, blocks, doc_pages, run_page
from treeoflife.config import config_from_dict

PAGES = doc_pages()
ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]


def _id(page: Path) -> str:
    return str(page.relative_to(REPO))


def test_every_block_runs_or_says_why_not():
    problems = []
    for b in ALL_BLOCKS:
        if b.mark is not None and b.mark not in MARKS:
            problems.append(f"{b.where}: unknown marker {b.mark!r} (known: {MARKS})")
        elif b.mark in ("skip", "excerpt", "loopback") and not b.note:
            problems.append(f"{b.where}: a {b.mark} marker must say why")
        elif b.lang not in (*SHELL, "python", "yaml") and b.mark != "excerpt":
            problems.append(f"{b.where}: a ```{b.lang} block must be marked excerpt")
    assert not problems, "\n".join(problems)
    assert sum(b.runs for b in ALL_BLOCKS) >= 15
    assert {b.page.name for b in ALL_BLOCKS if b.runs} >= {"README.md", "operations.md"}


@pytest.mark.parametrize(
    "block",
    [b for b in ALL_BLOCKS if b.lang == "yaml" and b.mark != "excerpt"],
    ids=lambda b: b.where,
)
def test_config_excerpts_are_valid_settings(block):
    config_from_dict(yaml.safe_load(block.text))  # raises ConfigError naming the key


def _release_digests(root: Path) -> dict[str, str]:
    release = root / "release"
    return {
        str(p.relative_to(release)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(release.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def cli_release(tmp_path_factory) -> dict[str, str]:
    """The release of the sample built by the CLI (what the documented builds must equal)."""
    root = tmp_path_factory.mktemp("cli-build")
    done = subprocess.run(
        [sys.executable, "-m", "treeoflife.cli", "build", "--config", "configs/sample.yaml"]
        + ["--data-root", str(root), "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    return _release_digests(root)


def _check(run) -> None:
    server_log = run.workspace / "data" / "prefect-server.log"  # the operations page's server
    server = server_log.read_text()[-3000:] if server_log.exists() else ""
    assert run.returncode == 0, (
        f"block {run.failed_block} failed (exit {run.returncode}):\n{run.output[-6000:]}"
        + (f"\n--- prefect-server.log:\n{server}" if server else "")
    )
    assert "::doctest end" in run.output
    noisy = [ln for ln in run.output.splitlines() if re.search(r"\bERROR\b|Traceback", ln)]
    assert not noisy, "error lines in the output:\n" + "\n".join(noisy[:20])


def _flow_runs(api: str) -> list[dict]:
    request = urllib.request.Request(
        f"{api}/flow_runs/filter",
        data=json.dumps({"sort": "START_TIME_ASC"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.load(response)


def _deployment_names(api: str) -> dict[str, str]:
    request = urllib.request.Request(
        f"{api}/deployments/filter", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return {d["id"]: d["name"] for d in json.load(response)}


def test_readme_blocks_run_and_build_the_same_release_as_the_cli(tmp_path, cli_release):
    run = run_page(REPO / "README.md", tmp_path, timeout=900)
    _check(run)
    assert "Seven-spotted Lady Beetle" in run.output  # the example query finds its species
    assert _release_digests(run.workspace / "data") == cli_release


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_operations_blocks_run_against_a_real_prefect_server_and_worker(tmp_path, cli_release):
    seen: dict = {}

    def while_running(run) -> None:  # the server the block started is still up
        api = f"http://127.0.0.1:{run.ports[4200]}/api"
        seen["runs"] = _flow_runs(api)
        seen["deployments"] = _deployment_names(api)

    run = run_page(REPO / "docs" / "operations.md", tmp_path, 1700, while_running)
    _check(run)
    assert "Flow run finished successfully in 'Completed'" in run.output
    parents = [r for r in seen["runs"] if r["parent_task_run_id"] is None]
    by_deployment = {}
    for r in parents:
        by_deployment.setdefault(seen["deployments"].get(r["deployment_id"]), []).append(r)
    # the sample build, then the same on the Dask cluster: both Completed
    assert [r["state"]["type"] for r in by_deployment["local"]] == ["COMPLETED", "COMPLETED"]
    # the GPU deployment: registered and its run scheduled (no Kubernetes worker here)
    assert [r["state"]["type"] for r in by_deployment["gpu"]] == ["SCHEDULED"]
    assert all(
        r["state"]["type"] == "COMPLETED" for r in seen["runs"] if r["deployment_id"] is None
    )
    data = run.workspace / "data"
    assert _release_digests(data) == cli_release
    assert _release_digests(data / "on-dask") == cli_release


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    "page",
    [
        p
        for p in PAGES
        if p.name not in ("README.md", "operations.md") and any(b.runs for b in blocks(p))
    ],
    ids=_id,
)
def test_page_blocks_run(page, tmp_path):
    _check(run_page(page, tmp_path, timeout=1700))
