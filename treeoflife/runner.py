"""The stage runner: one place that decides whether a stage runs, and records what it wrote.

A stage (`Stage`, declared in treeoflife.pipeline) is skipped when its fingerprint (the files it
reads from outside the build, its settings, the code version and its upstream stages'
fingerprints and recorded outputs) is that of its last finished run *and* every output file
that run recorded is still there with the size and mtime it had. Otherwise the runner sweeps
temporaries a killed run left, lets the stage remove what a damaged output makes stale
(`Stage.repair`), runs it, and writes `state/<stage>.done.json`: the fingerprint, the stage's
summary and every output file as (path relative to the data root, size, mtime_ns). The marker
is written last (atomically), so a killed stage has no marker and runs again; the parts or
shards it finished are kept by the stage's own resume, which then redoes only what is missing
or damaged.

Paths in fingerprints and markers are relative to the data root, so a data root that is moved,
copied with its times (`cp -a`, `shutil.copytree`) or reached through a symlink is up to date.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from treeoflife import __version__
from treeoflife.config import BuildConfig
from treeoflife.fanout import PartMapper
from treeoflife.io import remove_stale_temporaries, write_text_atomic
from treeoflife.layout import Layout
from treeoflife.progress import Progress

log = logging.getLogger(__name__)

_TEMPORARY = re.compile(r"^\..+\.tmp(?:\.|$)")  # io.atomic_path's `.name.<pid>.tmp` (and derived)


@dataclass(frozen=True)
class StageContext:
    """What a stage's run gets besides the config."""

    fingerprint: str  # of this run's inputs (e.g. names the hash parts it may keep)
    progress: Progress | None = None
    map_parts: PartMapper | None = None  # treeoflife.fanout: where parts or shards run


def _nothing(cfg: BuildConfig) -> list:
    return []


def _always(cfg: BuildConfig) -> str | None:
    return None


def _never(cfg: BuildConfig) -> bool:
    return False


def remove_files(cfg: BuildConfig, damaged: list[Path]) -> None:
    """The default repair: remove the damaged files, so the stage's resume writes them again."""
    for path in damaged:
        path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Stage:
    """One step of the build: what it reads, what it writes, what it needs first, how it runs.

    `inputs` are the files from outside the build the stage reads (raw sources, the backbone,
    every evaluation-set list and image): what an upstream stage wrote is covered by that
    stage's fingerprint (`depends`) and its own output check. `outputs` are the files or
    folders it writes (every file under them is recorded after a run). `settings` is the config
    its outputs depend on. `skip` says why the stage does not run (None: it runs); `rerun`
    makes an up-to-date stage run again (EOL's transient failures); `repair` removes what
    damaged output files make stale before the stage runs again.
    """

    name: str
    run: Callable[[BuildConfig, StageContext], dict]
    outputs: Callable[[BuildConfig], list[Path]]
    inputs: Callable[[BuildConfig], list[Path | None]] = _nothing
    settings: Callable[[BuildConfig], Any] = _nothing
    depends: tuple[str, ...] = ()
    skip: Callable[[BuildConfig], str | None] = _always
    rerun: Callable[[BuildConfig], bool] = _never
    repair: Callable[[BuildConfig, list[Path]], None] = remove_files


@dataclass
class StageResult:
    """What a stage run did: its summary (the marker's), and whether it had anything to do."""

    stage: str
    summary: dict = field(default_factory=dict)
    up_to_date: bool = False
    skipped: str | None = None  # why the stage did not run at all (e.g. a source not configured)
    repaired: list[str] = field(default_factory=list)  # recorded outputs found damaged


# --------------------------------------------------------------------------- fingerprints


def _relative(path: Path, root: Path) -> str:
    """`path` relative to the data root when it lies under it (lexically or once both are
    resolved), else absolute."""
    for p, r in ((path, root), (path.resolve(), root.resolve())):
        try:
            return p.relative_to(r).as_posix()
        except ValueError:
            continue
    return str(path.resolve())


def _files_under(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(f for f in path.rglob("*") if f.is_file())
    return [path]


def fingerprint_paths(paths: list[Path | None], root: Path | None = None) -> list[list]:
    """(name, size, mtime_ns) of every file under the given paths, sorted; names relative to
    `root` when given and under it. A missing path is listed with no size, so its appearance
    changes the fingerprint."""
    out: list[list] = []
    for p in paths:
        if p is None:
            continue
        for f in _files_under(Path(p)):
            name = _relative(f, Path(root)) if root is not None else str(f)
            try:
                st = f.stat()
            except OSError:
                out.append([name, None, None])
                continue
            out.append([name, st.st_size, st.st_mtime_ns])
    return sorted(out, key=lambda r: r[0])


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _upstream(state: Path, name: str) -> list:
    """An upstream stage as its fingerprint and the outputs it recorded: when a repair or a
    revalidation rewrote its files (perhaps with other bytes: a remote image changed), what
    follows runs again, and its own content-keyed resume redoes only what changed."""
    marker = read_marker(state, name) or {}
    return [name, marker.get("fingerprint"), fingerprint(marker.get("outputs"))]


def stage_fingerprint(stage: Stage, cfg: BuildConfig) -> str:
    """The stage's name, the code version, its settings, its inputs (relative to the data root,
    size, mtime_ns) and its upstream stages' fingerprints and recorded outputs."""
    state = Layout(cfg.root).state_dir
    upstream = [_upstream(state, s) for s in stage.depends]
    inputs = fingerprint_paths(stage.inputs(cfg), cfg.root)
    return fingerprint(stage.name, __version__, stage.settings(cfg), inputs, upstream)


# --------------------------------------------------------------------------- markers


def marker_path(state_dir: Path, stage: str) -> Path:
    return state_dir / f"{stage.replace('/', '-')}.done.json"


def read_marker(state_dir: Path, stage: str) -> dict | None:
    try:
        marker = json.loads(marker_path(state_dir, stage).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def record_outputs(root: Path, outputs: list[Path]) -> list[list]:
    """Every file under `outputs` as [path relative to root, size, mtime_ns] (not a temporary
    a concurrent writer still holds: it is renamed or removed later)."""
    return [
        r
        for r in fingerprint_paths(outputs, root)
        if r[1] is not None and not _TEMPORARY.match(r[0].rsplit("/", 1)[-1])
    ]


def damaged_outputs(root: Path, recorded: list) -> list[str]:
    """Recorded output files that are missing or have another size or mtime now."""
    damaged = []
    for rel, size, mtime_ns in recorded:
        try:
            st = os.stat(Path(root) / rel)
        except OSError:
            damaged.append(rel)
            continue
        if st.st_size != size or st.st_mtime_ns != mtime_ns:
            damaged.append(rel)
    return damaged


def mark_done(
    state_dir: Path, stage: str, fp: str, result: dict, outputs: list[list] | None = None
) -> None:
    body = {"stage": stage, "fingerprint": fp, "result": result, "outputs": outputs or []}
    write_text_atomic(marker_path(state_dir, stage), json.dumps(body, indent=1, sort_keys=True))


# --------------------------------------------------------------------------- running


def _sweep(root: Path, outputs: list[Path], state_dir: Path) -> None:
    """Remove what a killed run left half-written where the stage writes (the folders it
    writes, the folders of the files it writes) and in the markers; files whose writer is
    still alive (e.g. a concurrent stage of this run) are kept."""
    folders = {p if p.is_dir() else p.parent for p in outputs if p.exists() or p.parent.is_dir()}
    for folder in sorted((folders - {root}) | {state_dir}):
        remove_stale_temporaries(folder)


def run_stage(
    stage: Stage,
    cfg: BuildConfig,
    progress: Progress | None = None,
    map_parts: PartMapper | None = None,
) -> StageResult:
    """Run `stage` unless it is up to date (see the module docstring); repair damaged outputs."""
    reason = stage.skip(cfg)
    if reason is not None:
        return StageResult(stage.name, skipped=reason)
    root, state = cfg.root, Layout(cfg.root).state_dir
    fp = stage_fingerprint(stage, cfg)
    marker = read_marker(state, stage.name)
    damaged = damaged_outputs(root, marker.get("outputs") or []) if marker else []
    intact = marker is not None and "outputs" in marker and not damaged
    if intact and marker.get("fingerprint") == fp and not stage.rerun(cfg):
        log.info("%s: up to date, skipped", stage.name)
        return StageResult(stage.name, marker.get("result", {}), up_to_date=True)
    outputs = stage.outputs(cfg)
    _sweep(root, outputs, state)
    marker_path(state, stage.name).unlink(missing_ok=True)  # not done until it is again
    if damaged:
        log.warning("%s: %d output file(s) damaged, repairing: %s", stage.name, len(damaged),
                    ", ".join(damaged[:5]))  # fmt: skip
        stage.repair(cfg, [root / rel for rel in damaged])
    summary = stage.run(cfg, StageContext(fp, progress, map_parts))
    mark_done(state, stage.name, fp, summary, record_outputs(root, outputs))
    return StageResult(stage.name, summary, repaired=damaged)


def output_problems(stages: list[Stage], cfg: BuildConfig) -> dict[str, list[str]]:
    """{stage: one line per recorded output file that is missing or changed} for the stages
    that finished (what the next build would repair)."""
    state = Layout(cfg.root).state_dir
    out: dict[str, list[str]] = {}
    for stage in stages:
        marker = read_marker(state, stage.name)
        if marker is None:
            continue
        recorded = {rel: (size, mtime) for rel, size, mtime in marker.get("outputs") or []}
        lines = []
        for rel in damaged_outputs(cfg.root, marker.get("outputs") or []):
            path = Path(cfg.root) / rel
            if not path.exists():
                lines.append(f"{rel}: missing")
            elif path.stat().st_size != recorded[rel][0]:
                lines.append(
                    f"{rel}: {path.stat().st_size} bytes, the build wrote {recorded[rel][0]}"
                )
            else:
                lines.append(f"{rel}: changed since the build wrote it")
        if lines:
            out[stage.name] = lines
    return out
