"""iNat21 streaming keeps memory bounded when parts cannot be written before the stream ends.

Every part misses a member and the archive's order is shuffled against the JSON's: no part is
complete until the end of the stream. The decoded images must not all wait in memory (past a
budget they go to spill files on disk), and the parts written must be the bytes an ordered
archive gives. An ordered, complete archive is written from memory: no spill at all.
"""

from __future__ import annotations

import random
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from treeoflife.config import config_from_dict
from treeoflife.errors import InputError
from treeoflife.sources import inat21, ingest_inat21, spill

from .builders import add_member, inat_file_name, jpeg, make_inat, read_catalog, rows_of

N_IMAGES = 480
PER_PART = 40
MISSING = tuple(p * PER_PART + 7 for p in range(N_IMAGES // PER_PART))  # one in every part


def _archive(
    folder: Path, payloads: dict[str, bytes], shuffled: bool, missing: tuple[int, ...] = MISSING
) -> dict:
    """The JSON of make_inat with a tar of `payloads` (the `missing` rows left out)."""
    archive, _ = make_inat(folder, n=N_IMAGES, extras=False)
    names = [inat_file_name("train", i) for i in range(N_IMAGES) if i not in missing]
    if shuffled:
        random.Random(7).shuffle(names)
    with tarfile.open(archive["images"], "w:gz") as tar:
        for name in names:
            add_member(tar, name, payloads[name])
    return archive


def _cfg(root: Path, archive: dict):
    return config_from_dict(
        {
            "data_root": str(root),
            "sources": {"inat21": {"archives": [archive], "images_per_part": PER_PART}},
        }
    )


def _parts(root: Path) -> dict[str, bytes]:
    files = sorted((root / "catalog/inat21").glob("part-*.parquet"))
    files += sorted((root / "images/inat21").glob("part-*.tar"))
    return {str(p.relative_to(root)): p.read_bytes() for p in files}


def test_parts_waiting_for_members_hold_no_images_in_memory(tmp_path, monkeypatch):
    # a budget of a few parts' images: the parts stuck until the end must spill
    monkeypatch.setattr(inat21, "HELD_IMAGE_BYTES", 300_000)
    payloads = {inat_file_name("train", i): jpeg(i, 160, 160) for i in range(N_IMAGES)}
    total = sum(len(payloads[inat_file_name("train", i)]) for i in range(N_IMAGES))
    assert total > 8_000_000  # a few KB an image, enough that holding them all shows

    # the same rows from an archive in the JSON's order first (it also imports and starts
    # what the ingest needs, so the traced run below measures the streaming only)
    ordered = _cfg(tmp_path / "ordered", _archive(tmp_path / "in-ordered", payloads, False))
    ingest_inat21(ordered)

    shuffled = _cfg(tmp_path / "shuffled", _archive(tmp_path / "in-shuffled", payloads, True))
    spilled = spill.records_written
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        stats = ingest_inat21(shuffled)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert spill.records_written - spilled > N_IMAGES // 2  # most images went through disk
    # holding every decoded image (and every member read) until the stream ends costs more
    # than `total`; a bounded number in flight and spilled outcomes cost a small part of it
    assert peak < total / 4, f"peak {peak} bytes while streaming {total} bytes of images"

    assert stats.rows == N_IMAGES and stats.reasons == {"missing_in_archive": len(MISSING)}
    rows = rows_of(read_catalog(shuffled.root, "inat21")[0])
    assert [i for i, r in enumerate(rows) if r["status"] != "ok"] == list(MISSING)
    # no spill file, nor any temporary, is left behind
    assert not [p for p in (shuffled.root / "catalog").rglob(".*")]
    assert _parts(shuffled.root) == _parts(ordered.root)
    assert len(_parts(shuffled.root)) == 2 * len(MISSING)


def test_an_ordered_complete_archive_never_spills(tmp_path, monkeypatch):
    payloads = {inat_file_name("train", i): jpeg(i, 160, 160) for i in range(N_IMAGES)}
    total = sum(len(b) for b in payloads.values())
    biggest_part = max(
        sum(len(payloads[inat_file_name("train", i)]) for i in range(p, p + PER_PART))
        for p in range(0, N_IMAGES, PER_PART)
    )
    # room for a couple of parts, far less than the whole archive: a part written as soon as
    # it is complete keeps what is held under it
    budget = 2 * biggest_part
    assert budget < total / 4
    monkeypatch.setattr(inat21, "HELD_IMAGE_BYTES", budget)
    cfg = _cfg(tmp_path / "data", _archive(tmp_path / "in", payloads, False, missing=()))
    spilled = spill.records_written
    stats = ingest_inat21(cfg)
    assert spill.records_written == spilled
    assert (stats.rows, stats.reasons) == (N_IMAGES, {})
    assert len(_parts(cfg.root)) == 2 * N_IMAGES // PER_PART


def test_spill_files_are_removed_on_md5_mismatch_and_after_a_killed_run(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=6, missing=(1,), reverse=True, extras=False)
    root = tmp_path / "data"
    # what a killed run left: a spill folder named like a temporary of a dead writer
    left = root / "catalog/inat21/.spill-00000.4194999.tmp"
    left.mkdir(parents=True)
    (left / "part-00000.spill").write_bytes(b"x" * 100)

    bad = _cfg(root, {**archive, "md5": "0" * 32})
    with pytest.raises(InputError, match="md5"):
        ingest_inat21(bad)
    assert not left.exists()
    assert not list((root / "catalog").rglob(".*"))  # no spill of this run either
    assert not list((root / "catalog/inat21").glob("part-*"))  # rolled back

    stats = ingest_inat21(_cfg(root, archive))
    assert (stats.rows, stats.reasons) == (6, {"missing_in_archive": 1})
    assert not list((root / "catalog").rglob(".*"))
