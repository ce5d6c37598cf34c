"""Stage completion markers: skip a stage whose inputs, config and code have not changed.

A marker `state/<stage>.done.json` holds the stage's fingerprint and its summary. It is written
last (atomically), so a killed stage has no marker and runs again; the parts it finished are
skipped by the stage itself.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from treeoflife.io import write_text_atomic


def fingerprint_paths(paths: list[Path | None]) -> list[list]:
    """(relative name, size, mtime_ns) of every file under the given paths, sorted."""
    out: list[list] = []
    for p in paths:
        if p is None:
            continue
        p = Path(p)
        if p.is_file():
            st = p.stat()
            out.append([str(p), st.st_size, st.st_mtime_ns])
        elif p.is_dir():
            for f in sorted(x for x in p.rglob("*") if x.is_file()):
                st = f.stat()
                out.append([str(f), st.st_size, st.st_mtime_ns])
        else:
            out.append([str(p), None, None])
    return out


def fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def marker_path(state_dir: Path, stage: str) -> Path:
    return state_dir / f"{stage.replace('/', '-')}.done.json"


def read_marker(state_dir: Path, stage: str) -> dict | None:
    path = marker_path(state_dir, stage)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def completed(state_dir: Path, stage: str, fp: str, outputs: list[Path] = ()) -> dict | None:
    """The stored summary if the stage finished with this fingerprint and its outputs exist."""
    marker = read_marker(state_dir, stage)
    if not marker or marker.get("fingerprint") != fp:
        return None
    if not all(os.path.exists(p) for p in outputs):
        return None
    return marker.get("result", {})


def mark_done(state_dir: Path, stage: str, fp: str, result: dict) -> None:
    body = {"stage": stage, "fingerprint": fp, "result": result}
    write_text_atomic(marker_path(state_dir, stage), json.dumps(body, indent=1, sort_keys=True))
