"""The shard driver's one resume rule, in process and by tasks: a rerun over changed or damaged
inputs leaves the files a fresh build of the same rows writes, and writes again only the shards
that differ (the others keep their mtime)."""

import io
import json

import pyarrow as pa
import pytest
from PIL import Image

from treeoflife.fanout import map_in_order
from treeoflife.io import ImageStoreWriter
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.tasks import ROWS_SCHEMA
from treeoflife.shards.writer import write_split_shards

from .conftest import make_rows

BY_COUNT = {"samples_per_shard": 4}
BY_BYTES = {"samples_per_shard": 100, "max_shard_bytes": 60_000}
DRIVERS = {"in-process": None, "tasks": map_in_order}


def _write(rows, out, data_root, mapper, **limits) -> list[str]:
    settings = ShardSettings(
        image_size=64, jpeg_quality=90, text_type="taxon_com", seed=0, **limits
    )
    table = pa.Table.from_pylist(rows, schema=ROWS_SCHEMA) if mapper else rows
    written = write_split_shards(table, out, settings, data_root=data_root, map_parts=mapper)
    return [s.name for s in written.shards]


def _files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _mtimes(folder) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.glob("shard-*.tar")}


def _rebuilt(tmp_path, data_root, mapper, old_rows, new_rows, limits, damage=None):
    """(shards written again by the rerun, shard names) after building `old_rows`, damaging,
    then building `new_rows` in the same folder; checks the files equal a fresh build's."""
    out, fresh = tmp_path / "inc" / "train", tmp_path / "fresh" / "train"
    _write(old_rows, out, data_root, mapper, **limits)
    if damage:
        damage(out)
    before = _mtimes(out)
    names = _write(new_rows, out, data_root, mapper, **limits)
    _write(new_rows, fresh, data_root, mapper, **limits)
    assert _files(out) == _files(fresh)
    after = _mtimes(out)
    return {n for n in after if before.get(n) != after[n]}, names


@pytest.mark.parametrize("mapper", DRIVERS.values(), ids=DRIVERS.keys())
@pytest.mark.parametrize("limits", [BY_COUNT, BY_BYTES], ids=["by-count", "by-bytes"])
@pytest.mark.parametrize("kind", ["truncated", "deleted", "altered"])
def test_only_the_damaged_shard_is_written_again(tmp_path, data_root, mapper, limits, kind):
    rows = make_rows(data_root, 14)

    def damage(out):
        path = out / "shard-000001.tar"
        if kind == "truncated":
            path.write_bytes(path.read_bytes()[:5000])
        elif kind == "deleted":
            path.unlink()
        else:
            data = bytearray(path.read_bytes())
            data[1200] ^= 0x01
            path.write_bytes(bytes(data))

    rewritten, names = _rebuilt(tmp_path, data_root, mapper, rows, rows, limits, damage)
    assert len(names) >= 3 and rewritten == {"shard-000001.tar"}


@pytest.mark.parametrize("mapper", DRIVERS.values(), ids=DRIVERS.keys())
def test_appended_rows_fill_the_last_shard_as_a_fresh_build(tmp_path, data_root, mapper):
    rows = make_rows(data_root, 13)
    rewritten, names = _rebuilt(tmp_path, data_root, mapper, rows[:10], rows, BY_COUNT)
    assert names == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar", "shard-000003.tar"]
    assert rewritten == {"shard-000002.tar", "shard-000003.tar"}  # 2 then 4 samples; new


@pytest.mark.parametrize("mapper", DRIVERS.values(), ids=DRIVERS.keys())
def test_removed_and_changed_rows_rewrite_only_their_shards(tmp_path, data_root, mapper):
    rows = make_rows(data_root, 12)
    changed = [*rows[:9], *rows[10:]]  # a takedown in shard 2
    changed[5] = {**changed[5], "common_name": "edited"}  # a metadata edit in shard 1
    rewritten, names = _rebuilt(tmp_path, data_root, mapper, rows, changed, BY_COUNT)
    assert len(names) == 3 and rewritten == {"shard-000001.tar", "shard-000002.tar"}


def _flat_image(data_root) -> dict:
    """The location of a flat grey JPEG (it encodes small: a sample that fits where noise does
    not)."""
    buf = io.BytesIO()
    Image.new("RGB", (120, 90), (128, 128, 128)).save(buf, "JPEG", quality=90)
    with ImageStoreWriter(data_root / "images" / "test" / "flat.tar") as writer:
        offset, size = writer.add("flat.jpg", buf.getvalue())
    return {"image_file": "images/test/flat.tar", "image_offset": offset, "image_size": size}


@pytest.mark.parametrize("mapper", DRIVERS.values(), ids=DRIVERS.keys())
def test_a_next_sample_that_now_fits_moves_the_byte_boundary(tmp_path, data_root, mapper):
    """Shard 0's own rows do not change, but the first row of shard 1 becomes small enough to
    fit in it: a fresh build moves the boundary, so the rerun may not keep shard 0."""
    rows = make_rows(data_root, 12)
    flat = _flat_image(data_root)
    found = None
    for limit in range(30_720, 120_000, 10_240):  # a limit at which the smaller row moves over
        limits = {"samples_per_shard": 100, "max_shard_bytes": limit}
        probe = tmp_path / f"probe-{limit}"
        if len(_write(rows, probe / "a", data_root, None, **limits)) < 2:
            continue
        b = _sizes(probe / "a")["shard-000000.tar"]  # the first row of shard 1
        changed = [*rows[:b], {**rows[b], **flat, "md5": "f" * 32}, *rows[b + 1 :]]
        _write(changed, probe / "b", data_root, None, **limits)
        if _sizes(probe / "b")["shard-000000.tar"] > b:
            found = (limits, changed)
            break
    assert found, "no limit in the range moves the boundary: the test lost its point"
    limits, changed = found
    rewritten, _ = _rebuilt(tmp_path, data_root, mapper, rows, changed, limits)
    assert "shard-000000.tar" in rewritten


def _sizes(split_dir) -> dict[str, int]:
    return json.loads((split_dir / "sizes.json").read_text())
