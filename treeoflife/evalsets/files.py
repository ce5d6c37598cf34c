"""An evaluation set's files, confined to the set's folder; names safe to become paths.

A set's list comes from outside the project, and its `filepath` column is joined to a folder
on this machine. A filepath that is absolute, holds a `..` part, or names a symlink that leads
out of the set's folder is never read (nor fingerprinted, hashed or packaged): the row gets the
reason `outside_set` and is counted and listed like a missing image.

A set's `name` becomes folder and file names (`hashes/evalsets/<name>.parquet`,
`release/evalsets/wds/<name>/`), so it is refused at config load unless it is one plain
path component (`name_problem`).
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from treeoflife.vocabulary import Reason

# Reasons meaning "the image is not there": none of a set's rows found is an error.
NOT_FOUND = (Reason.MISSING_FILEPATH, Reason.OUTSIDE_SET, Reason.MISSING_FILE)

# Until dedup/hashing.py imports Reason (the vocabulary sweep).
REASON_MISSING_FILEPATH = Reason.MISSING_FILEPATH
REASON_MISSING_FILE = Reason.MISSING_FILE
REASON_UNREADABLE = Reason.UNREADABLE

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def name_problem(name: object) -> str | None:
    """Why `name` cannot name an evaluation set's folders, or None when it can."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        return (
            f"{name!r} is not a safe name: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit, without '..' (it names the set's folders)"
        )
    return None


class SetFolder:
    """The folder an evaluation set's filepaths are relative to; reads only inside it."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._real = self.root.resolve()

    def locate(self, filepath: str | None) -> tuple[Path | None, str | None]:
        """(path, None) for a filepath inside the folder (the file may not exist), else
        (None, reason). The path is the folder joined with the filepath, not resolved."""
        if not filepath or not filepath.strip():
            return None, Reason.MISSING_FILEPATH
        rel = PurePosixPath(filepath)
        if "\x00" in filepath or rel.is_absolute() or ".." in rel.parts:
            return None, Reason.OUTSIDE_SET
        path = self.root / rel
        try:
            real = path.resolve()  # follows every symlink on the way, existing or not
        except (OSError, RuntimeError):  # a symlink loop
            return None, Reason.UNREADABLE
        if not real.is_relative_to(self._real):
            return None, Reason.OUTSIDE_SET
        return path, None

    def read(self, filepath: str | None) -> tuple[bytes | None, str | None]:
        """(bytes, None) of an image inside the folder, else (None, reason)."""
        path, reason = self.locate(filepath)
        if path is None:
            return None, reason
        try:
            return path.read_bytes(), None
        except FileNotFoundError:
            return None, Reason.MISSING_FILE
        except OSError:  # a folder, no permission, an I/O error
            return None, Reason.UNREADABLE
