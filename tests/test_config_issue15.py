"""Issue 15's settings bullets, each as the user meets it: the `treeoflife build` command.

Every bad value the issue found accepted (or crashing, or hanging) is refused before any work,
one line each, all at once, exit 2; two evaluation sets with one name are refused; the table of
single cases is tests/test_config_settings.py, `val_fraction: 0` building and verifying is
tests/release/test_empty_val_split.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EOL_MEDIA = "https://content.eol.org/data/media/"

ISSUE_15 = {
    "data_root": "",
    "sample": {"seed": "abc"},
    "sources": {
        "eol": {
            "concurrency": 0,
            "retries": -1,
            "timeout_s": 0,
            "per_host_rps": -3,
            "max_bytes": 0,
            "jpeg_quality": 1000,
            "mirror": {EOL_MEDIA: 5},
        }
    },
}
LINES = [
    "data_root: must not be empty",
    "sample.seed: expected int, got 'abc'",
    "sources.eol.concurrency: must be >= 1, got 0",
    "sources.eol.retries: must be >= 0, got -1",
    "sources.eol.timeout_s: must be > 0, got 0",
    "sources.eol.per_host_rps: must be >= 0, got -3",
    "sources.eol.max_bytes: must be >= 1, got 0",
    "sources.eol.jpeg_quality: must be in 1..100, got 1000",
    f"sources.eol.mirror[{EOL_MEDIA!r}]: expected str, got 5",
]


def _build(config: Path, cwd: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "treeoflife.cli", "build", "-q", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)},
        timeout=120,
    )


def test_every_bad_setting_of_issue_15_is_refused_at_once_before_any_work(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(ISSUE_15))
    done = _build(config, tmp_path)
    assert done.returncode == 2, done.stderr
    assert sorted(done.stderr.splitlines()) == sorted(f"error: {ln}" for ln in LINES)
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"], "work started"


def test_two_eval_sets_with_one_name_are_refused_by_the_build(tmp_path):
    data = yaml.safe_load((REPO / "configs" / "sample.yaml").read_text())
    data["data_root"] = str(tmp_path / "data")
    data["evalsets"] = [
        {"name": "rare", "metadata": "sample/evalsets/rare_species/metadata.csv"},
        {"name": "rare", "metadata": "sample/evalsets/seen_species/metadata.csv"},
    ]
    config = tmp_path / "twice.yaml"
    config.write_text(yaml.safe_dump(data))
    done = _build(config, REPO)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: evalsets[1].name: 'rare' is already the name of evalsets[0] (each set needs "
        "its own name: its hashes and packaged folder are named by it)"
    ]
    assert not (tmp_path / "data").exists(), "work started"
