"""Decoded images of parts that cannot be written yet, kept on disk instead of in memory.

A streamed archive's part is written only once all of its members are in; a member missing
from the archive, or an archive whose order is not the rows' order, keeps parts open until
the stream ends. The decoded images the caller cannot keep in memory (past its budget) go to
one append-only file per part in a scratch folder
(a temporary name: a killed run leaves nothing that looks complete, and the next sweep removes
it); memory keeps an (offset, length) per image. A part's images are read back one at a time,
in row order, while the part is written.
"""

from __future__ import annotations

import concurrent.futures as cf
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from treeoflife.images import NormalizedImage

_HEADER = struct.Struct("<II?32s")  # width, height, converted, md5 (hex)

records_written = 0
"""Images spilled by this process (any store): how a run shows it never touched the disk."""


class Spilled(NamedTuple):
    """Where one decoded image's record is in its part's spill file."""

    offset: int
    length: int


class SpillStore:
    """One spill file per part under `folder` (made by the first `put`: a run that spills
    nothing writes nothing); `put` from one thread, `images`/`remove` for a part once nothing
    more is put for it (from any thread)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self._sizes: dict[int, int] = {}
        self._open: tuple[int, object] | None = None  # (part, file) being appended to

    def path(self, part: int) -> Path:
        return self.folder / f"part-{part:05d}.spill"

    def put(self, part: int, image: NormalizedImage) -> Spilled:
        """Append an image to its part's file; return where it is."""
        global records_written
        if self._open is None or self._open[0] != part:
            self._close()
            self.folder.mkdir(parents=True, exist_ok=True)
            self._open = (part, open(self.path(part), "ab"))  # noqa: SIM115 - closed in _close
        fh = self._open[1]
        md5 = image.md5.encode("ascii")
        if len(md5) != 32:
            raise ValueError(f"not an md5: {image.md5!r}")
        offset = self._sizes.get(part, 0)
        fh.write(_HEADER.pack(image.width, image.height, image.converted, md5))
        fh.write(image.data)
        length = _HEADER.size + len(image.data)
        self._sizes[part] = offset + length
        records_written += 1
        return Spilled(offset, length)

    def seal(self, part: int) -> None:
        """Nothing more is put for `part`: its file is complete on disk (readable elsewhere)."""
        if self._open is not None and self._open[0] == part:
            self._close()
        self._sizes.pop(part, None)

    def images(self, part: int, outcomes: list) -> PartImages:
        """`outcomes` with every Spilled entry read back from the part's file (lazily)."""
        return PartImages(self.path(part), outcomes)

    def remove(self, part: int) -> None:
        self.path(part).unlink(missing_ok=True)

    def close(self) -> None:
        self._close()

    def _close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None


class PartImages(Sequence):
    """A part's outcomes in row order, each a decode future's result or a spilled image read
    back when reached: at most one spilled image in memory while the part is written."""

    def __init__(self, path: Path, outcomes: list):
        self.path = path
        self.outcomes = outcomes

    def __len__(self) -> int:
        return len(self.outcomes)

    def __getitem__(self, i):  # type: ignore[override]
        outcome = self.outcomes[i]
        if isinstance(outcome, Spilled):
            with open(self.path, "rb") as fh:
                return _read(fh, outcome)
        return _resolved(outcome)

    def __iter__(self) -> Iterator:
        fh = open(self.path, "rb") if self.path.exists() else None  # noqa: SIM115 - closed below
        try:
            for outcome in self.outcomes:
                yield _read(fh, outcome) if isinstance(outcome, Spilled) else _resolved(outcome)
        finally:
            if fh is not None:
                fh.close()


def _resolved(outcome):
    return outcome.result() if isinstance(outcome, cf.Future) else outcome


def _read(fh, where: Spilled) -> NormalizedImage:
    if fh is None:
        raise OSError(f"spill file missing for a record at {where.offset}")
    fh.seek(where.offset)
    record = fh.read(where.length)
    if len(record) != where.length:
        raise OSError(f"short read from a spill file at {where.offset}")
    width, height, converted, md5 = _HEADER.unpack_from(record)
    data = record[_HEADER.size :]
    return NormalizedImage(data, width, height, converted, md5.decode("ascii"))
