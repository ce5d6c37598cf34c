"""Fault soak: ~1000 EOL URLs over a real loopback server with >= 10% of requests faulted.

Every transiently faulted row ends stored after more than one attempt, every permanent failure
ends with its reason, every manifest row is counted exactly once (ok + failed + skipped), and
the catalog and image store are byte-identical to a run where only the permanent faults exist.
Then the same soak is SIGKILLed mid-run in a subprocess and rerun: same bytes again.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import REPO
from tests.sources.builders import snapshot
from tests.support.mirror_server import MirrorServer
from treeoflife.config import config_from_dict
from treeoflife.sources import ingest_eol

from .eol_world import SETTINGS, TRANSIENT, World, build_world, config_dict

pytestmark = pytest.mark.slow

N_URLS = 1000
SEED = 20261124
ROWS_PER_PART = 50


def run_ingest(root: Path, world: World, server: MirrorServer):
    cfg = config_from_dict(config_dict(root, world, server.url, ROWS_PER_PART))
    return ingest_eol(cfg, settings=SETTINGS, decode_workers=0)


def eol_outputs(root: Path) -> dict[str, bytes]:
    """The reproducible outputs: catalog parts, _stats.json and image store tars."""
    return {
        **{f"catalog/{k}": v for k, v in snapshot(root / "catalog" / "eol").items()},
        **{f"images/{k}": v for k, v in snapshot(root / "images" / "eol").items()},
    }


def status_rows(root: Path) -> list[dict]:
    parts = sorted((root / "catalog" / "eol").glob("part-?????.status.parquet"))
    return [row for p in parts for row in pq.read_table(p).to_pylist()]


def catalog_rows(root: Path) -> list[dict]:
    parts = sorted((root / "catalog" / "eol").glob("part-?????.parquet"))
    return [row for p in parts for row in pq.read_table(p).to_pylist()]


def leftovers(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name)


def check_accounting(root: Path, world: World) -> dict[str, dict]:
    """Each manifest row exactly once in the status tables and the catalog, in the same order."""
    status = status_rows(root)
    catalog = catalog_rows(root)
    keys = [r["key"] for r in status]
    assert len(keys) == len(set(keys)) == world.rows, "a row lost or counted twice"
    assert [r["key"] for r in catalog] == keys
    assert set(keys) == set(world.expected)
    by_status = collections.Counter(r["status"] for r in status)
    assert by_status["ok"] + by_status["failed"] + by_status["skipped"] == world.rows
    for s, c in zip(status, catalog, strict=True):
        # the catalog's ok/failed agrees with the status table (skipped rows are failed there)
        assert (c["status"] == "ok") == (s["status"] == "ok"), s["key"]
        assert c["reason"] == s["reason"], s["key"]
    stats = json.loads((root / "catalog" / "eol" / "_stats.json").read_text())
    assert stats["rows"] == world.rows and stats["ok"] == by_status["ok"]
    return {r["key"]: r for r in status}


@pytest.fixture(scope="module")
def soak(tmp_path_factory):
    """The faulted run, the fault-free reference run and what the server saw."""
    base = tmp_path_factory.mktemp("soak")
    world = build_world(base / "in", N_URLS, SEED)
    with MirrorServer(world.mirror, faults=world.faults) as server:
        run_ingest(base / "faulted", world, server)
        hits, faulted = sum(server.hits.values()), sum(server.faulted.values())
    with MirrorServer(world.mirror, faults=world.permanent_faults) as server:
        run_ingest(base / "reference", world, server)
    return base, world, hits, faulted


def test_at_least_a_tenth_of_requests_are_faulted(soak):
    _, world, hits, faulted = soak
    assert faulted / hits >= 0.10, (faulted, hits)
    kinds = collections.Counter(e.kind for e in world.expected.values())
    assert all(kinds[k] > 0 for k in TRANSIENT), kinds  # every kind of transient fault occurs


def test_every_row_ends_with_its_planned_outcome_and_is_counted_once(soak):
    base, world, _, _ = soak
    status = check_accounting(base / "faulted", world)
    wrong = {}
    for key, expected in world.expected.items():
        got = status[key]
        outcome = (got["status"], got["reason"])
        # Stored rows: at least the planned attempts (a busy machine may add a timeout).
        # Failed and unfetched rows: exactly (a 4xx is never retried, a 5xx up to the limit).
        attempts_ok = (
            got["attempts"] >= expected.attempts
            if expected.status == "ok"
            else got["attempts"] == expected.attempts
        )
        if outcome != (expected.status, expected.reason) or not attempts_ok:
            wrong[key] = (expected.kind, outcome, got["attempts"], got["http_status"])
    assert not wrong, wrong
    transient = [k for k, e in world.expected.items() if e.kind in TRANSIENT]
    assert transient and all(status[k]["attempts"] > 1 for k in transient)
    assert all(status[k]["md5"] for k in transient)


def test_faulted_run_equals_the_fault_free_run(soak):
    base, world, _, _ = soak
    check_accounting(base / "reference", world)
    faulted, reference = eol_outputs(base / "faulted"), eol_outputs(base / "reference")
    assert sorted(faulted) == sorted(reference)
    assert [k for k in faulted if faulted[k] != reference[k]] == []
    assert leftovers(base / "faulted") == []


def test_sigkill_mid_soak_then_rerun_gives_the_same_bytes(soak, tmp_path):
    base, world, _, _ = soak
    root = tmp_path / "killed"
    rng = random.Random(SEED)
    with MirrorServer(world.mirror, faults=world.faults) as server:
        cfg_file = tmp_path / "config.json"
        cfg_file.write_text(json.dumps(config_dict(root, world, server.url, ROWS_PER_PART)))
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.eol_world", str(cfg_file)],
            cwd=REPO,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        catalog = root / "catalog" / "eol"
        deadline = time.monotonic() + 120
        while not list(catalog.glob("part-?????.parquet")) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        assert proc.poll() is None, "the child finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        n_parts = -(-world.rows // ROWS_PER_PART)
        done = len(list(catalog.glob("part-?????.parquet")))
        assert 0 < done < n_parts, done
        stats = run_ingest(root, world, server)
    assert stats.parts_skipped == done and stats.parts_written == n_parts - done
    check_accounting(root, world)
    assert leftovers(root) == []
    assert eol_outputs(root) == eol_outputs(base / "reference")
