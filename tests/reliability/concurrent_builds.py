"""Two `treeoflife build` processes started together on one data root (issue 15: 16 of 22 such
trials ended with an opaque `No such file or directory: .../.shard-000001.tar.<pid>.tmp`, once
with no release at all).

A trial starts both builds on a fresh root (the second a seeded moment after the first) and
checks: both exit 0, one of them said it waited for the other, nothing opaque on stderr, no
temporary left anywhere, and the release equals a single build's. Used by
tests/reliability/test_concurrent_builds.py (a few trials) and bench/reliability.py (20).
"""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "sample.yaml"
# files whose bytes carry timings (as /work's comparison scripts skip them)
TIMED = ("summary.json",)
OPAQUE = ("Traceback", "No such file or directory", "Errno")


def _command(root: Path) -> list[str]:
    return [sys.executable, "-m", "treeoflife.cli", "build", "-q", "--config", str(CONFIG),
            "--data-root", str(root)]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "DO_NOT_TRACK": "1"}


def release_hashes(root: Path) -> dict[str, str]:
    """sha256 of every release file but the timed ones and the HTML report."""
    release = root / "release"
    return {
        str(p.relative_to(release)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(release.rglob("*"))
        if p.is_file() and p.name not in TIMED and "report" not in p.relative_to(release).parts
    }


def temporaries(root: Path) -> list[str]:
    """Temporary files or folders left anywhere under the root."""
    return sorted(
        str(p.relative_to(root))
        for p in root.rglob(".*")
        if ".tmp" in p.name or p.name.startswith((".staging-", ".backbone-"))
    )


def single_build(root: Path) -> dict[str, str]:
    done = subprocess.run(
        _command(root), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"the single build failed: {done.stderr[-2000:]}")
    return release_hashes(root)


@dataclass
class Trial:
    exit_codes: list[int]
    waited: bool  # one build said "waiting for build pid N on <root>"
    opaque: list[str] = field(default_factory=list)  # stderr lines of an opaque error
    temporaries: list[str] = field(default_factory=list)
    same_as_single: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (
            self.exit_codes == [0, 0]
            and not self.opaque
            and not self.temporaries
            and self.same_as_single
        )


def trial(root: Path, reference: dict[str, str], rng: random.Random) -> Trial:
    """Two builds on the fresh root `root`, the second started 0-1.5 s after the first."""
    t0 = time.perf_counter()
    procs = []
    for i in range(2):
        if i:
            time.sleep(rng.uniform(0, 1.5))
        procs.append(
            subprocess.Popen(
                _command(root),
                cwd=REPO,
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outs = [p.communicate(timeout=900) for p in procs]
    errs = [err for _out, err in outs]
    result = Trial(
        exit_codes=[p.returncode for p in procs],
        waited=any("waiting for build pid" in err for err in errs),
        opaque=[ln for err in errs for ln in err.splitlines() if any(o in ln for o in OPAQUE)],
        temporaries=temporaries(root),
        seconds=time.perf_counter() - t0,
    )
    result.same_as_single = (root / "release").is_dir() and release_hashes(root) == reference
    return result
