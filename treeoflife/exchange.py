"""How fan-out tasks hand their outputs to the driver, the same way on one disk and through
object storage.

A task is given a folder (`exchange_folder`): the driver's own folder when the task sees the
driver's disk (one machine, a POSIX folder every worker mounts), else that folder's place on
shared storage (treeoflife.storage). The task writes every output through it (`output_path`
for one file, `task_folder` for code that needs a local folder), its done-marker last. The
driver then calls `pull_outputs`, which copies what the task left into its own folder, the
marker last, a copy checked against the sha256 the task recorded when it has one; when the
task's folder is the driver's own, there is nothing to copy.

A marker on shared storage may be an earlier build's, of other inputs, left at the same place:
`is_current` (given the folder) says whether it marks these inputs' outputs (e.g. the key in
its metadata is the one the driver planned). Without it, any marker there counts as done.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from treeoflife.errors import ConfigError, OutputError
from treeoflife.io import file_sha256
from treeoflife.storage import LocalStorage, Storage, note_copied

__all__ = ["exchange_folder", "pull_outputs", "task_folder"]

IsCurrent = Callable[[Storage], bool]


def exchange_folder(
    local_dir: str | Path, data_root: str | Path, shared: Storage | None = None, under: str = ""
) -> Storage:
    """The folder tasks leave what belongs in `local_dir` in: `local_dir` itself without
    shared storage, else its place relative to `data_root` on `shared` (below `under`)."""
    local_dir = Path(local_dir).resolve()
    if shared is None:
        return LocalStorage(local_dir)
    root = Path(data_root).resolve()
    if not local_dir.is_relative_to(root):
        raise ConfigError(
            f"storage.shared: the folder {local_dir} is not inside the data root {root}, "
            "so it has no place on shared storage"
        )
    rel = local_dir.relative_to(root).as_posix()
    return shared.folder("/".join(p for p in (under, rel) if p and p != "."))


def _own_dir(folder: Storage) -> Path | None:
    local = folder.local_path("")
    return None if local is None else Path(local)


@contextlib.contextmanager
def task_folder(
    folder: Storage, rels: Sequence[str], is_current: IsCurrent | None = None
) -> Iterator[Path | None]:
    """A local folder for a task whose code writes files itself (`rels`, relative to it, its
    done-marker last): `folder`'s own directory on a disk (where the stage's own resume rule
    applies); else a scratch folder whose files among `rels` are uploaded to `folder`, in that
    order, when the block ends without error (those it did not write are removed there first:
    an earlier output's file must not be pulled with this one). Yields None when `folder` is
    elsewhere and holds a current marker (`is_current`): a retried task whose first attempt
    finished. The marker there is removed before anything is uploaded: an upload cut short
    over an earlier output whose marker would pass `is_current` must not look done."""
    own = _own_dir(folder)
    if own is not None:
        yield own
        return
    if _done(folder, rels[-1], is_current):
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="treeoflife-") as scratch:
        yield Path(scratch)
        written = [rel for rel in rels if (Path(scratch) / rel).exists()]
        folder.remove(rels[-1])
        for rel in rels:
            if rel not in written and folder.exists(rel):
                folder.remove(rel)
        for rel in written:
            folder.put(Path(scratch) / rel, rel)


def _done(folder: Storage, marker: str, is_current: IsCurrent | None) -> bool:
    """`folder` holds the marker, and it marks these inputs' outputs."""
    return folder.exists(marker) and (is_current is None or is_current(folder))


def _sha256(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except FileNotFoundError:
        return None


def pull_outputs(
    folder: Storage,
    rels: Sequence[str],
    local_dir: str | Path,
    *,
    ledger: Path | None = None,
    sha256: Mapping[str, str] | None = None,
    move: bool = False,
    is_current: IsCurrent | None = None,
) -> bool:
    """Copy what a task left in `folder` into `local_dir`: `rels` in order (those it holds),
    the last one its done-marker. False, nothing copied, when the marker is not there or is
    not current (`is_current`): the task did not finish these inputs' outputs. When `folder`
    is `local_dir` itself there is nothing to copy.

    `sha256`: the digests the task recorded for some of `rels`; a local file that has it
    already is not copied again, a copy that does not is removed and raises OutputError.
    `ledger`: each copy is noted there (treeoflife.storage.push_files does not send it back).
    `move`: the copied files are removed from `folder` (a task's work files)."""
    local_dir, marker = Path(local_dir), rels[-1]
    own = _own_dir(folder)
    if own is not None and own.resolve() == local_dir.resolve():
        return _done(folder, marker, is_current)
    if not _done(folder, marker, is_current):
        return False
    expected = sha256 or {}
    for rel in rels:
        path, digest = local_dir / rel, expected.get(rel)
        if digest is not None and _sha256(path) == digest:
            continue
        if rel != marker and not folder.exists(rel):
            continue
        folder.get(rel, path)
        if digest is not None and _sha256(path) != digest:
            path.unlink(missing_ok=True)
            raise OutputError(
                f"{folder.url(rel)}: the copy pulled to {path} does not match the sha256 its "
                "task recorded"
            )
        if ledger is not None:
            note_copied(ledger, rel, folder, path)
    if move:
        for rel in rels:
            folder.remove(rel)
    return True
