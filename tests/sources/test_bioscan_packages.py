"""BIOSCAN-1M as published: every TSV column kept, image packages, zip globs, bad zip members."""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from treeoflife.config import config_from_dict
from treeoflife.errors import ConfigError, InputError
from treeoflife.sources import ingest_bioscan

from .builders import (
    BIOSCAN_HEADER,
    bioscan_line,
    jpeg,
    read_catalog,
    rows_of,
    snapshot,
    stored_bytes,
    write_tsv,
    write_zip,
)

GENUS = {"order": "Diptera", "family": "Sciaridae", "genus": "Bradysia"}
ORDER = {"order": "Coleoptera"}


def make_cfg(root: Path, section: dict):
    return config_from_dict({"data_root": str(root), "sources": {"bioscan": section}})


def published_zip(path: Path, packages: dict[str, dict[str, bytes]]) -> None:
    """bioscan/images/<package>/part<N>/<file>, the layout of cropped_256.zip & co."""
    members = {
        f"bioscan/images/{package}/{name}": data
        for package, files in packages.items()
        for name, data in files.items()
    }
    write_zip(path, members)


def test_every_tsv_column_is_kept_beside_each_part(tmp_path):
    lines = [
        bioscan_line("P1", 1, GENUS),
        ["too", "few"],
        bioscan_line("P2", 2, ORDER),
    ]
    lines[2][BIOSCAN_HEADER.index("large_diptera_family")] = "test"
    write_tsv(tmp_path / "meta.tsv", BIOSCAN_HEADER, lines)
    write_zip(tmp_path / "imgs.zip", {"part1/P1.jpg": jpeg(1), "part2/P2.jpg": jpeg(2)})
    section = {"metadata": str(tmp_path / "meta.tsv"), "zips": [str(tmp_path / "imgs.zip")]}
    cfg = make_cfg(tmp_path / "data", {**section, "images_per_part": 2})
    ingest_bioscan(cfg)
    rows = rows_of(read_catalog(cfg.root, "bioscan")[0])
    sidecars = sorted((cfg.root / "catalog/bioscan").glob("part-*.metadata.parquet"))
    assert [p.name for p in sidecars] == [
        "part-00000.metadata.parquet",
        "part-00001.metadata.parquet",
    ]
    meta = rows_of([pq.read_table(p) for p in sidecars])
    assert pq.read_schema(sidecars[0]).names == ["key", *BIOSCAN_HEADER]
    assert [m["key"] for m in meta] == [r["key"] for r in rows]
    p1, malformed, p2 = meta
    assert p1["nucraw"] == "ACGT" and p1["uri"] == "BOLD:AAA0001" and p1["chunk_number"] == "1"
    assert p1["genus"] == "Bradysia" and p1["species"] is None  # not_classified -> null
    assert p1["tribe"] is None and p1["subfamily"] is None
    assert p1["large_diptera_family"] == "train" and p2["large_diptera_family"] == "test"
    assert [p2[c] for c in BIOSCAN_HEADER[16:21]] == ["train"] * 5  # the other partitions
    assert p2["copyright_holder"] == "CBG Photography Group"
    assert malformed["key"] == "bioscan/malformed/line3"
    assert all(malformed[c] is None for c in BIOSCAN_HEADER)
    # the catalog itself is unchanged by the sidecars and reruns are byte-identical
    assert [r["reason"] for r in rows] == [None, "malformed_row", None]
    before = snapshot(cfg.root)
    sidecars[1].unlink()  # a part whose sidecar is missing is redone
    again = ingest_bioscan(cfg)
    assert (again.parts_written, again.parts_skipped) == (1, 1)
    assert snapshot(cfg.root) == before


def test_package_picks_cropped_or_original(tmp_path):
    lines = [bioscan_line("P1", 1, GENUS), bioscan_line("P2", 3, ORDER)]
    write_tsv(tmp_path / "meta.tsv", BIOSCAN_HEADER, lines)
    cropped = {"part1/P1.jpg": jpeg(11), "part3/P2.jpg": jpeg(12)}
    original = {"part1/P1.jpg": jpeg(21, 48, 32), "part3/P2.jpg": jpeg(22, 48, 32)}
    published_zip(tmp_path / "cropped_256.zip", {"cropped_256": cropped})
    published_zip(tmp_path / "original_256.zip", {"original_256": original})
    section = {"metadata": str(tmp_path / "meta.tsv"), "zips": [str(tmp_path / "*_256.zip")]}
    for package, files in (("cropped_256", cropped), ("original_256", original)):
        cfg = make_cfg(tmp_path / package, {**section, "package": package})
        stats = ingest_bioscan(cfg)
        rows = rows_of(read_catalog(cfg.root, "bioscan")[0])
        assert stats.ok == 2 and stats.ignored == {"other_package": 2}
        assert [stored_bytes(cfg.root, r) for r in rows] == [
            files["part1/P1.jpg"],
            files["part3/P2.jpg"],
        ]
        assert [r["bioscan_part"] for r in rows] == ["part1", "part3"]
    with pytest.raises(InputError, match="several image packages.*sources.bioscan.package"):
        ingest_bioscan(make_cfg(tmp_path / "both", section))
    with pytest.raises(ConfigError, match="sources.bioscan.package"):
        make_cfg(tmp_path / "bad", {**section, "package": "thumbnails"})
    with pytest.raises(InputError, match="no file matches"):
        ingest_bioscan(make_cfg(tmp_path / "none", {**section, "zips": [str(tmp_path / "*.7z")]}))


def _set_flag_bits(path: Path, name: str, bits: int) -> None:
    """Mark a member encrypted in both its local header and the central directory."""
    data = bytearray(path.read_bytes())
    encoded = name.encode()
    for sig, flag_at, name_at in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        pos = data.find(sig)
        while pos >= 0:
            if data[pos + name_at : pos + name_at + len(encoded)] == encoded:
                (flags,) = struct.unpack_from("<H", data, pos + flag_at)
                struct.pack_into("<H", data, pos + flag_at, flags | bits)
            pos = data.find(sig, pos + 4)
    path.write_bytes(bytes(data))


def test_bad_zip_members_are_recorded_not_fatal(tmp_path):
    names = ["P1", "P2", "P3", "P4", "P5"]
    write_tsv(tmp_path / "meta.tsv", BIOSCAN_HEADER, [bioscan_line(n, 1, GENUS) for n in names])
    big = jpeg(4, 300, 200)
    path = tmp_path / "imgs.zip"
    write_zip(
        path,
        {
            "part1/P1.jpg": jpeg(1),
            "part1/P2.jpg": jpeg(2),
            "part1/P3.jpg": jpeg(3),
            "part1/P4.jpg": big,
            "part1/P5.jpg": jpeg(5),
        },  # fmt: skip
    )
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("part1/P2.jpg")
        start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data = bytearray(path.read_bytes())
    data[start + 100] ^= 0xFF  # a flipped byte: bad CRC-32
    path.write_bytes(bytes(data))
    _set_flag_bits(path, "part1/P3.jpg", 0x1)  # encrypted, no password
    # device and FIFO entries (Unix modes in external_attr) are never read
    with zipfile.ZipFile(path, "a") as zf:
        for name, mode in (("part1/dev", 0o020666), ("part1/fifo", 0o010644)):
            zi = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            zi.external_attr = mode << 16
            zf.writestr(zi, b"")
    section = {"metadata": str(tmp_path / "meta.tsv"), "zips": [str(path)]}
    cfg = make_cfg(tmp_path / "data", {**section, "max_member_bytes": len(big) - 1})
    stats = ingest_bioscan(cfg)
    rows = rows_of(read_catalog(cfg.root, "bioscan")[0])
    assert [(r["key"], r["reason"]) for r in rows] == [
        ("bioscan/P1", None),
        ("bioscan/P2", "corrupt_archive_member"),
        ("bioscan/P3", "corrupt_archive_member"),
        ("bioscan/P4", "member_too_large"),
        ("bioscan/P5", None),
    ]
    assert stats.ignored == {"unsafe_member": 2}
    assert (stats.rows, stats.ok, stats.failed) == (5, 2, 3)


def test_a_shorter_tsv_leaves_no_stale_parts(tmp_path):
    write_tsv(
        tmp_path / "m.tsv", BIOSCAN_HEADER, [bioscan_line(f"P{i}", 1, GENUS) for i in range(5)]
    )
    write_zip(tmp_path / "z.zip", {f"part1/P{i}.jpg": jpeg(i) for i in range(5)})
    section = {"metadata": str(tmp_path / "m.tsv"), "zips": [str(tmp_path / "z.zip")]}
    cfg = make_cfg(tmp_path / "data", {**section, "images_per_part": 2})
    assert ingest_bioscan(cfg).parts_written == 3
    write_tsv(tmp_path / "m.tsv", BIOSCAN_HEADER, [bioscan_line("P0", 1, GENUS)])
    (cfg.root / "catalog/bioscan/part-00000.parquet").unlink()  # its rows changed too
    stats = ingest_bioscan(cfg)
    assert stats.rows == 1
    assert sorted(p.name for p in (cfg.root / "catalog/bioscan").glob("part-*")) == [
        "part-00000.metadata.parquet",
        "part-00000.parquet",
    ]
    assert sorted(p.name for p in (cfg.root / "images/bioscan").iterdir()) == ["part-00000.tar"]
