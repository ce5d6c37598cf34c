"""Contact sheet, resumable catalog hashing, and the robustness study on real photos."""

from __future__ import annotations

import hashlib
import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFont

from treeoflife.dedup import PHASH_ALGO, hash_catalog_parts
from treeoflife.dedup.contact_sheet import (
    CAPTION_W,
    CELL_W,
    GAP,
    LINE,
    TILE,
    SheetPair,
    caption_lines,
    render_contact_sheet,
    sample_near_pairs,
    write_contact_sheet,
)
from treeoflife.io import ImageStoreWriter, store_member_name
from treeoflife.schemas import REMOVALS, SOURCE_CATALOG


def test_contact_sheet_draws_pairs_and_broken_images(tmp_path, make_jpeg):
    pairs = [
        SheetPair(make_jpeg(1), make_jpeg(1, quality=60), "d=2 eol/1_1 ~ rare:a.jpg"),
        SheetPair(make_jpeg(2), None, "d=8 eol/2_1 ~ rare:missing.jpg"),
        SheetPair(b"<html>", make_jpeg(3), "d=5 eol/3_1 ~ rare:c.jpg"),
        SheetPair(make_jpeg(4), make_jpeg(4), "d=0 eol/4_1 ~ rare:d.jpg"),
    ]
    sheet = render_contact_sheet(pairs)
    row = GAP + TILE + GAP + LINE + GAP  # one caption line each
    assert sheet.size == (3 * CELL_W, 2 * row)  # 3 pairs per row -> 2 rows
    # The first pair's left tile shows the photo, not the grey placeholder.
    tile = np.asarray(sheet.crop((10, 10, 150, 150))).reshape(-1, 3)
    assert len(np.unique(tile, axis=0)) > 50
    out = tmp_path / "dedup" / "near_pairs.jpg"
    write_contact_sheet(pairs, out)
    first = out.read_bytes()
    write_contact_sheet(pairs, out)
    assert out.read_bytes() == first  # reproducible
    assert Image.open(io.BytesIO(first)).format == "JPEG"
    write_contact_sheet([], tmp_path / "empty.jpg")
    assert (tmp_path / "empty.jpg").stat().st_size > 0


LONG_CAPTION = (  # a caption of the sample build
    "d=0 eol/21166966_1034370 ~ seen_species:Acer_pseudoplatanus/"
    "e9457736-8c89-44bc-b600-3bdc3a0adc53.jpg"
)


def test_captions_wrap_whole_at_word_boundaries():
    font = ImageFont.load_default(size=11)
    lines = caption_lines(LONG_CAPTION, font)
    assert len(lines) > 1 and "".join(lines) == LONG_CAPTION  # nothing cut off
    assert all(font.getlength(line.rstrip()) <= CAPTION_W for line in lines)
    for line, following in zip(lines, lines[1:], strict=False):
        assert line.endswith((" ", "/")), (line, following)  # no break inside a word
    # A word wider than a line is the only thing ever split.
    assert "".join(caption_lines("x" * 200, font)) == "x" * 200


def test_contact_sheet_is_compact_and_draws_every_caption_line(make_jpeg):
    font = ImageFont.load_default(size=11)
    n_lines = len(caption_lines(LONG_CAPTION, font))
    sheet = render_contact_sheet([SheetPair(make_jpeg(1), make_jpeg(1), LONG_CAPTION)])
    # One pair: one cell wide (not three), as tall as its tiles and its whole caption.
    assert sheet.size == (CELL_W, GAP + TILE + GAP + LINE * n_lines + GAP)
    last_line = sheet.crop((GAP, sheet.size[1] - GAP - LINE, CELL_W - GAP, sheet.size[1] - GAP))
    assert np.asarray(last_line.convert("L")).min() < 100  # the last line is drawn


def test_sample_near_pairs_largest_distances_first_deterministic():
    rows = [
        {
            "key": f"k{i}",
            "reason": "near_eval_duplicate",
            "evalset": "e",
            "eval_key": "x",
            "distance": i % 4,
        }
        for i in range(10)
    ] + [
        {
            "key": "z",
            "reason": "exact_eval_duplicate",
            "evalset": "e",
            "eval_key": "x",
            "distance": 0,
        }
    ]
    table = pa.Table.from_pylist(rows, schema=REMOVALS)
    chosen = sample_near_pairs(table, 4)
    assert [r["distance"] for r in chosen] == [3, 3, 2, 2]
    assert chosen == sample_near_pairs(table.take(pa.array(range(10, -1, -1))), 4)
    assert all(r["reason"] == "near_eval_duplicate" for r in sample_near_pairs(table, 99))


def write_part(root, index: int, images: dict[str, bytes]):
    image_file = f"images/eol/part-{index:05d}.tar"
    rows = []
    with ImageStoreWriter(root / image_file) as store:
        for key, data in images.items():
            offset, size = store.add(store_member_name(key), data)
            rows.append(
                {
                    "key": key,
                    "source": "eol",
                    "status": "ok",
                    "image_file": image_file,
                    "image_offset": offset,
                    "image_size": size,
                    "md5": hashlib.md5(data).hexdigest(),
                }
            )
    path = root / "catalog" / "eol" / f"part-{index:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SOURCE_CATALOG), path)
    return path


def test_hash_catalog_parts_resume_and_discard_other_runs(tmp_path, make_jpeg):
    root = tmp_path / "data"
    parts = [
        write_part(root, i, {f"eol/{i}_{j}": make_jpeg(10 * i + j) for j in range(3)})
        for i in range(3)
    ]
    out = root / "hashes" / "eol"
    full = hash_catalog_parts(parts, out, root, "run-1", workers=1)
    assert full.num_rows == 9 and set(full["phash_algo"].to_pylist()) == {PHASH_ALGO}
    # An interrupted run: part 1's output is gone; only it is redone (others are reused).
    (out / "part-00001.parquet").unlink()
    stamp = (out / "part-00000.parquet").stat().st_mtime_ns
    again = hash_catalog_parts(parts, out, root, "run-1", workers=1)
    assert again.equals(full)
    assert (out / "part-00000.parquet").stat().st_mtime_ns == stamp
    # Another run id (new algorithm or inputs): old parts are discarded, not mixed in.
    pq.write_table(
        pq.read_table(out / "part-00002.parquet").slice(0, 1), out / "part-00002.parquet"
    )
    assert hash_catalog_parts(parts, out, root, "run-2", workers=1).equals(full)


def test_robustness_study_on_real_photos():
    pytest.importorskip("skimage")
    pytest.importorskip("pdqhash")
    from bench._photos import photo_corpus
    from bench._study import run_study, study_markdown

    photos = {
        k: v
        for k, v in photo_corpus(max_side=256).items()
        if k in ("astronaut", "coffee", "chelsea", "rocket")
    }
    result = run_study(photos)
    ours = result["hashes"]["pHash dct64-v2 (ours, 64 bit)"]
    assert max(ours["copies"]["jpeg q70"]) <= 8  # re-encodes are caught
    assert min(ours["unrelated"]) > 16  # different photos are far apart
    assert max(ours["copies"]["crop 10% one corner"]) > 8  # and crops are not: a known limit
    table = study_markdown(result)
    assert "| jpeg q50 |" in table and "PDQ" in table
