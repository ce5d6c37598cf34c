"""Cross-check our zero-shot numbers against CLIP_benchmark (`clip_benchmark eval`).

clip-benchmark 1.6.2 cannot live in the project environment (it breaks with numpy 2.4), so it
runs from its own virtual environment, made from `clip_benchmark-requirements.txt` beside this
module: a venv whose own site-packages (clip-benchmark, numpy<2.4, scikit-learn, pycocoevalcap,
all installed --no-deps) come first and the project venv's packages (torch, open_clip,
webdataset, ...) after, through a `.pth` file. Nothing the project pins is changed.

    python = ensure_clip_benchmark_env(Path("bench/.venvs/clip-benchmark"))
    clip_benchmark_zero_shot(python, "local-dir:models/run/export", wds_root / "rare_species")
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

from treeoflife.errors import TreeOfLifeError

log = logging.getLogger(__name__)

REQUIREMENTS = Path(__file__).resolve().parent / "clip_benchmark-requirements.txt"
_STAMP = ".treeoflife-requirements.sha256"


class CrossCheckError(TreeOfLifeError):
    """The clip_benchmark environment could not be made or clip_benchmark failed."""


def _stamp_value(requirements: Path) -> str:
    purelib = sysconfig.get_paths()["purelib"]
    digest = hashlib.sha256(requirements.read_bytes() + purelib.encode()).hexdigest()
    return f"{digest}\n"


def ensure_clip_benchmark_env(venv: Path, requirements: Path = REQUIREMENTS) -> Path:
    """Create (once) the isolated clip_benchmark venv at `venv`; return its python.

    Reused while the requirements file and the project venv are unchanged (a stamp file,
    written last, says so); otherwise rebuilt from scratch. Needs the package index (pip).
    """
    venv = Path(venv).resolve()
    python = venv / "bin" / "python"
    stamp = venv / _STAMP
    want = _stamp_value(requirements)
    if stamp.is_file() and stamp.read_text() == want and python.exists():
        return python
    shutil.rmtree(venv, ignore_errors=True)
    venv.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    _check([base, "-m", "venv", str(venv)], "create the venv")
    site = Path(
        subprocess.check_output(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            text=True,
        ).strip()
    )
    # Appended to sys.path after the venv's own site-packages: its numpy<2.4 wins.
    (site / "treeoflife-project-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _check(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", "-r", str(requirements)],
        "install clip-benchmark",
    )
    stamp.write_text(want)
    log.info("clip_benchmark environment ready at %s", venv)
    return python


def clip_benchmark_zero_shot(
    python: Path,
    model: str,
    evalset_dir: Path,
    pretrained: str = "",
    batch_size: int = 64,
    split: str = "test",
) -> dict:
    """`clip_benchmark eval --dataset wds/NAME` on one set; its metrics dict
    (acc1, acc5, mean_per_class_recall). fp32 (--no_amp), in-process data loading."""
    evalset_dir = Path(evalset_dir).resolve()
    with tempfile.TemporaryDirectory(prefix="clip-benchmark-") as tmp:
        out = Path(tmp) / "result.json"
        command = [
            str(python), "-m", "clip_benchmark.cli", "eval",
            "--dataset", f"wds/{evalset_dir.name}",
            "--dataset_root", str(evalset_dir),
            "--split", split,
            "--task", "zeroshot_classification",
            "--model_type", "open_clip",
            "--model", model,
            "--pretrained", pretrained,
            "--batch_size", str(batch_size),
            "--num_workers", "0",
            "--no_amp",
            "--output", str(out),
        ]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        env.setdefault("OMP_NUM_THREADS", "1")
        _check(command, f"clip_benchmark eval on {evalset_dir.name}", env=env, cwd=tmp)
        return json.loads(out.read_text())["metrics"]


def _check(command: list[str], what: str, **kwargs) -> None:
    proc = subprocess.run(  # noqa: S603 - our own interpreters and arguments
        command, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise CrossCheckError(f"could not {what} (exit {proc.returncode}):\n{tail}")
