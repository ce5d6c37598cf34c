"""iNat21 annotations read as a stream and planned column-wise: any key order, the same rows,
the same errors, and a memory cost per image far below a parsed JSON's."""

from __future__ import annotations

import gzip
import json
import tracemalloc
from pathlib import Path

import pyarrow as pa
import pytest

from treeoflife.config import config_from_dict
from treeoflife.errors import InputError
from treeoflife.sources import ingest_inat21
from treeoflife.sources.inat21_annotations import read_annotations
from treeoflife.sources.inat21_plan import plan_archive
from treeoflife.sources.seen import SeenKeys

from .builders import INAT_CATEGORIES, make_inat, read_catalog, rows_of, snapshot

CFG = config_from_dict({"data_root": "/"})


def plan_rows(path: Path, seen: SeenKeys | None = None, per_part: int = 3):
    data, _ = read_annotations(str(path), CFG)
    plan = plan_archive(data, 0, 0, per_part, SeenKeys(capacity=4) if seen is None else seen)
    rows = [row for part in range(plan.n_parts) for row in plan.rows(part)]
    assert rows == [plan.row(i) for i in range(plan.n_rows)]
    return plan, rows


def image(i: int, **fields) -> dict:
    cat = INAT_CATEGORIES[i % 2]
    out = {
        "id": i,
        "file_name": f"train/{cat['image_dir_name']}/{i:08x}-0000-4000-8000-{i:012x}.jpg",
        "license": 1,
        "rights_holder": f"observer {i % 3}",
    }
    return {**out, **fields}


def coco(images: list, annotations: list | None = None) -> dict:
    return {
        "info": {"year": 2021, "nested": [{"file_name": "not an image"}]},
        "images": images,
        "categories": INAT_CATEGORIES,
        "annotations": [
            {"id": im["id"], "image_id": im["id"], "category_id": im["id"] % 2}
            for im in images
            if isinstance(im, dict)
        ]
        if annotations is None
        else annotations,
        "licenses": [{"id": 1, "name": "CC BY 4.0"}, {"id": 2, "name": "CC0"}],
    }


def write(path: Path, pairs: list[tuple[str, object]]) -> Path:
    """A JSON object with these keys in this order (repeats allowed, as a file may have)."""
    path.write_text("{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}")
    return path


def test_sections_in_any_order_and_repeated_keys_plan_the_same_rows(tmp_path):
    images = [image(i) for i in range(8)]
    images[3]["category_id"] = 0  # its own category, against its annotation and folder
    doc = coco(images)
    doc["annotations"][5]["category_id"] = 7  # no such category: the folder's
    _, expected = plan_rows(write(tmp_path / "in-order.json", list(doc.items())))
    assert [r["reason"] for r in expected] == [None] * 3 + ["category_mismatch"] + [None] * 4
    assert expected[5]["inat21_category_id"] == 1 and expected[2]["license"] == "CC BY 4.0"
    orders = {
        "annotations-first": ["annotations", "licenses", "categories", "images", "info"],
        "images-last": ["licenses", "info", "categories", "annotations", "images"],
    }
    for name, keys in orders.items():
        _, rows = plan_rows(write(tmp_path / f"{name}.json", [(k, doc[k]) for k in keys]))
        assert rows == expected, name
    # a key given twice counts as its last value, as json.loads reads it
    repeated = [
        ("images", [image(99)]),
        ("licenses", [{"id": 1, "name": "other"}]),
        ("annotations", 5),
        *doc.items(),
        ("categories", INAT_CATEGORIES),
    ]
    _, rows = plan_rows(write(tmp_path / "repeated.json", repeated))
    assert rows == expected


def test_annotations_before_images_ingest_to_the_same_parts(tmp_path):
    archive, _ = make_inat(tmp_path / "in", n=5, missing=(3,))
    path = Path(archive["annotations"])
    doc = json.loads(path.read_text())
    cfg = config_from_dict(
        {
            "data_root": str(tmp_path / "ordered"),
            "sources": {"inat21": {"archives": [archive], "images_per_part": 2}},
        }
    )
    ingest_inat21(cfg)
    keys = ["annotations", "licenses", "categories", "info", "images"]
    assert sorted(keys) == sorted(doc)
    reordered = write(tmp_path / "in" / "reordered.json", [(k, doc[k]) for k in keys])
    spec = {**archive, "annotations": str(reordered)}
    cfg2 = config_from_dict(
        {
            "data_root": str(tmp_path / "reordered"),
            "sources": {"inat21": {"archives": [spec], "images_per_part": 2}},
        }
    )
    ingest_inat21(cfg2)
    parts = {k: v for k, v in snapshot(cfg.root).items() if "/_" not in k}
    assert parts == {k: v for k, v in snapshot(cfg2.root).items() if "/_" not in k}
    assert len(rows_of(read_catalog(cfg2.root, "inat21")[0])) == 5


def test_entries_that_are_not_images_and_duplicate_names_keep_their_rows(tmp_path):
    first = image(0)
    images = [
        first,
        5,  # not an object
        {"id": 9},  # no file_name
        image(2, file_name={"nested": 1}),  # not a string: its text, malformed
        image(3, file_name="../escape.jpg"),
        {**first, "id": 4, "file_name": "./" + first["file_name"]},  # the same name again
        image(6, file_name="train/other/" + first["file_name"].rsplit("/", 1)[1]),  # same key
        image(7, license=2, rights_holder=12),
    ]
    plan, rows = plan_rows(write(tmp_path / "odd.json", list(coco(images).items())))
    key = rows[0]["key"]
    assert [r["key"] for r in rows] == [
        key,
        "inat21/malformed/0:1",
        "inat21/malformed/0:2",
        "inat21/malformed/0:3",
        "inat21/malformed/0:4",
        key + "#dup1",
        key + "#dup2",
        rows[7]["key"],
    ]
    assert [r["reason"] for r in rows] == [None] + ["malformed_row"] * 4 + ["duplicate_key"] * 2 + [
        None
    ]
    assert [r["inat21_file"] for r in rows[1:5]] == [None, None, "{'nested': 1}", "../escape.jpg"]
    assert (rows[7]["license"], rows[7]["rights_holder"]) == ("CC0", "12")
    # members map to the first image of a key only, by its exact (normalized) name
    assert plan.index_of(first["file_name"]) == 0
    assert plan.index_of(images[6]["file_name"]) is None
    assert plan.index_of(images[7]["file_name"]) == 7
    assert plan.index_of("train/nowhere.jpg") is None
    assert plan.expected == [1, 0, 1]

    # a key of an earlier archive is a duplicate in a later one
    seen = SeenKeys(capacity=4)
    plan_rows(tmp_path / "odd.json", seen)
    again, rows = plan_rows(tmp_path / "odd.json", seen)
    assert rows[0]["key"] == key + "#dup3" and again.index_of(first["file_name"]) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b'{"images": [1, 2', "not valid JSON"),
        (b'{"images": []} trailing', "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"images": [NaN]}', "not valid JSON"),
        (b'{"images": ["\xff"]}', "not valid JSON"),
        (b"[1, 2]", "no 'images' list"),
        (b'{"annotations": []}', "no 'images' list"),
        (b'{"images": {"item": {"file_name": "a.jpg"}}}', "no 'images' list"),
        (b'{"images": [], "images": 5}', "no 'images' list"),
        (b'{"images": [], "file_name": "a.jpg"}', "no 'images' list"),
        (gzip.compress(b'{"images": [')[:-4], "unreadable archive|not valid JSON"),
    ],
)
def test_bad_annotations_are_input_errors(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_bytes(text)
    with pytest.raises(InputError, match=rf"iNat21 annotations .*bad\.json: ({message})"):
        read_annotations(str(path), CFG)


def test_a_byte_order_mark_and_an_empty_images_list_are_read(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(coco([image(0)])).encode())
    assert plan_rows(path)[1][0]["inat21_category_id"] == 0
    plan, rows = plan_rows(write(tmp_path / "empty.json", [("images", [])]))
    assert (rows, plan.n_parts, plan.category_table.num_rows) == ([], 0, 0)


N_MEMORY = 20_000


def test_reading_and_planning_cost_a_small_part_of_a_parsed_json(tmp_path):
    """Parsed whole into dicts, or kept as one Python tuple per image plus a name dict, an
    iNat21 image costs ~0.8-1 KB; the stream and the columns keep it under 300 bytes."""
    folders = [f"{k:05d}_Animalia_Chordata_Aves_Genus{k}_species{k}" for k in range(50)]
    categories = [{"id": k, "image_dir_name": d} for k, d in enumerate(folders)]
    path = tmp_path / "train.json"
    with open(path, "w") as fh:
        fh.write('{"info": {}, "categories": ' + json.dumps(categories) + ', "images": [')
        for i in range(N_MEMORY):
            uuid = f"{i:08x}-{i % 65536:04x}-4abc-8000-{i * 7919:012x}"
            one = {
                "id": i + 1, "width": 500, "height": 375,
                "file_name": f"train/{folders[i % 50]}/{uuid}.jpg",
                "license": 1 + i % 6, "rights_holder": f"observer name {i % 2000}",
                "date": "2019-06-01 10:20:30+00:00", "latitude": 40.12345 + i % 97,
                "longitude": -10.5432 - i % 89, "location_uncertainty": 10 + i % 500,
            }  # fmt: skip
            fh.write(("," if i else "") + json.dumps(one))
        annotations = [{"id": i, "image_id": i + 1, "category_id": i % 50} for i in range(N_MEMORY)]
        licenses = [{"id": k, "name": f"L{k}"} for k in range(1, 7)]
        fh.write(
            f'], "annotations": {json.dumps(annotations)}, "licenses": {json.dumps(licenses)}}}'
        )
        del annotations
    plan_rows(write(tmp_path / "warm.json", list(coco([image(0)]).items())))  # imports, caches

    pools = {id(p): p for p in (pa.default_memory_pool(), pa.system_memory_pool())}.values()
    arrow_before = sum(p.bytes_allocated() for p in pools)
    tracemalloc.start()
    try:
        data, _ = read_annotations(str(path), CFG)
        plan = plan_archive(data, 0, 0, 1000, SeenKeys(capacity=1024))
        del data
        traced_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    arrow_kept = sum(p.bytes_allocated() for p in pools) - arrow_before  # not traced
    per_image = (traced_peak + arrow_kept) / N_MEMORY
    assert per_image < 300, f"{per_image:.0f} bytes per image"
    assert plan.n_rows == N_MEMORY and sum(plan.expected) == N_MEMORY
    assert plan.row(N_MEMORY - 1)["inat21_category_id"] == (N_MEMORY - 1) % 50
