"""An evaluation set as the build config names it: its folder, its rows, the files it reads."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from treeoflife.errors import InputError
from treeoflife.evalsets.files import SetFolder
from treeoflife.evalsets.layouts import metadata_file, read_layout
from treeoflife.evalsets.report import check_images
from treeoflife.vocabulary import Reason

if TYPE_CHECKING:  # config.py imports this package's layouts: no import back at run time
    from treeoflife.config import BuildConfig, EvalSetConfig


def evalset_root(es: EvalSetConfig, cfg: BuildConfig) -> Path:
    """The folder an evaluation set's filepaths are relative to (and confined to)."""
    if es.root:
        return cfg.path(es.root)
    path = cfg.path(es.metadata)
    return path if path.is_dir() else path.parent


def evalset_folder(es: EvalSetConfig, cfg: BuildConfig) -> SetFolder:
    """The set's folder, through which its images are located and read."""
    return SetFolder(evalset_root(es, cfg))


def read_evalset(es: EvalSetConfig, cfg: BuildConfig) -> list[dict]:
    """Rows of an evaluation set's list, in its layout (a missing column is a clear error).

    Every layout gives the same row shape (treeoflife.evalsets.layouts); `filepath` is as
    listed: use `evalset_folder` to reach the file.
    """
    try:
        return read_layout(es.layout, cfg.path(es.metadata))
    except InputError as exc:
        raise InputError(f"evaluation set {es.name}: {exc}") from exc


def evalset_input_files(es: EvalSetConfig, cfg: BuildConfig) -> list[Path]:
    """Every file the set's stages read: its list file and each image it points at (sorted).

    Images are included whether they exist or not, so one that appears later changes a
    fingerprint over these files; a filepath outside the set's folder is left out (never read).
    """
    folder = evalset_folder(es, cfg)
    images = {folder.locate(row["filepath"])[0] for row in read_evalset(es, cfg)}
    listing = metadata_file(es.layout, cfg.path(es.metadata))
    files = {p for p in images if p is not None} | ({listing} if listing else set())
    return sorted(files)


def check_evalset_images(es: EvalSetConfig, cfg: BuildConfig) -> None:
    """InputError now, before any stage runs, when none of the set's images is there (a cheap
    look: the hashes stage finds the images it cannot read or decode, and raises the same)."""
    folder = evalset_folder(es, cfg)
    outcomes = []
    for row in read_evalset(es, cfg):
        path, reason = folder.locate(row["filepath"])
        if path is not None and not path.exists():
            reason = Reason.MISSING_FILE
        outcomes.append((row["filepath"], reason))
    check_images(es.name, folder.root, outcomes, warn=False)
