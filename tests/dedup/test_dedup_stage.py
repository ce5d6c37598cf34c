"""The hashes + dedup stages through pipeline.py on a hand-made data root (no ingest run).

Training images sit in a real image-store tar with a source catalog part; one evaluation set
is in Rare Species layout (species held out), one is a plain folder of class folders.
"""

from __future__ import annotations

import csv
import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from treeoflife import pipeline, records, schemas
from treeoflife.config import config_from_dict
from treeoflife.evalsets.labels import row_query_id, verbatim_ranks
from treeoflife.evalsets.sets import read_evalset
from treeoflife.io import ImageStoreWriter, store_member_name
from treeoflife.layout import Layout


def _verbatim(genus: str, epithet: str) -> dict:
    return {
        "verbatim_kingdom": "Plantae",
        "verbatim_genus": genus,
        "verbatim_scientific_name": f"{genus} {epithet}",
    }


def build_root(tmp_path, make_photo, encode_image):
    root = tmp_path / "data"
    eval_dir = tmp_path / "evalsets"
    e1, e2, rare = (encode_image(make_photo(s), "JPEG", quality=90) for s in (1, 2, 3))
    for rel, data in (("Quercus_robur/e1.jpg", e1), ("weeds/e2.jpg", e2)):
        (eval_dir / "mine" / rel).parent.mkdir(parents=True, exist_ok=True)
        (eval_dir / "mine" / rel).write_bytes(data)
    (eval_dir / "rare" / "img").mkdir(parents=True)
    (eval_dir / "rare" / "img" / "r.jpg").write_bytes(rare)
    with open(eval_dir / "rare" / "metadata.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "kingdom",
                "phylum",
                "cls",
                "order",
                "family",
                "genus",
                "species",
                "common_name",
                "filepath",
            ]
        )
        w.writerow(["Plantae", "", "", "", "", "Rarus", "plantus", "Rare plant", "img/r.jpg"])
        # Its name does not resolve (and its file is missing): reported, not silently lost.
        w.writerow(["Plantae", "", "", "", "", "Ghostus", "nullus", "", "img/g.jpg"])

    full = make_photo(2)  # cropped by 2% and shrunk: pHash 4 bits away from e2
    smaller = full.crop((full.width // 50, full.height // 50, full.width, full.height)).resize(
        (240, 180), Image.Resampling.BICUBIC
    )
    dup = encode_image(make_photo(5), "JPEG", quality=90)
    training = {
        "eol/1_1": (e1, ("Acer", "alba")),  # exact copy of mine/e1
        "eol/2_1": (encode_image(smaller, "JPEG", quality=70), ("Acer", "alba")),  # near e2
        "eol/3_1": (encode_image(make_photo(6), "JPEG"), ("Rarus", "plantus")),  # held out
        "eol/4_1": (dup, ("Acer", "alba")),
        "eol/5_1": (dup, ("Acer", "alba")),  # md5 copy of eol/4_1
        "eol/6_1": (encode_image(make_photo(7), "JPEG"), ("Acer", "alba")),  # kept
    }
    image_file = "images/eol/part-00000.tar"
    rows = []
    with ImageStoreWriter(root / image_file) as store:
        for key, (data, (genus, epithet)) in training.items():
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
                    **_verbatim(genus, epithet),
                }
            )
    part = Layout(root).catalog_dir("eol") / "part-00000.parquet"
    part.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schemas.SOURCE_CATALOG), part)

    cfg = config_from_dict(
        {
            "data_root": str(root),
            "evalsets": [
                {
                    "name": "rare",
                    "metadata": str(eval_dir / "rare" / "metadata.csv"),
                    "hold_out_species": True,
                },
                {"name": "mine", "metadata": str(eval_dir / "mine"), "layout": "folder"},
            ],
            "dedup": {"phash_max_distance": 8, "contact_sheet_pairs": 4},
        }
    )
    # The taxa table the taxonomy stage would write: every query resolved to its own name.
    taxa = []
    for r in rows:
        taxa.append(
            (
                records.query_id("eol", r),
                r["verbatim_genus"],
                r["verbatim_scientific_name"].split()[1],
                r["verbatim_scientific_name"],
            )
        )
    for es in cfg.evalsets:
        for er in read_evalset(es, cfg):
            v = verbatim_ranks(er)
            name = (v["verbatim_scientific_name"] or "x y").split()
            epithet = None if name[0] == "Ghostus" else name[-1]
            taxa.append(
                (row_query_id(es.name, er), name[0], epithet, v["verbatim_scientific_name"])
            )
    Layout(root).taxonomy_dir.mkdir(parents=True)
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "query_id": q,
                    "kingdom": "Plantae",
                    "genus": g,
                    "species": s,
                    "verbatim_scientific_name": name,
                }
                for q, g, s, name in dict.fromkeys(taxa)
            ],
            schema=schemas.TAXA,
        ),
        Layout(root).taxa,
    )
    return cfg


def test_stages_remove_every_kind_and_report(tmp_path, make_photo, encode_image):
    cfg = build_root(tmp_path, make_photo, encode_image)
    layout = Layout(cfg.root)
    hashed = pipeline.build(cfg, stages=("hashes",))
    assert hashed["hashes"].summary["eol"] == 6 and not hashed["hashes"].up_to_date
    assert hashed["evalset-hashes"].summary["evalset/mine"] == 2
    assert (layout.hashes_dir / "eol" / "part-00000.parquet").exists()  # resumable by part
    assert not list(layout.hashes_dir.rglob(".run_id"))  # run ids (abs. paths) live in state/
    evalset = pq.read_table(layout.evalset_hashes("mine")).to_pylist()
    assert [(r["eval_key"], r["label"], r["genus"]) for r in evalset] == [
        ("Quercus_robur/e1.jpg", "Quercus_robur", "Quercus"),
        ("weeds/e2.jpg", "weeds", None),
    ]

    result = pipeline.run("dedup", cfg).summary
    removals = {r["key"]: r for r in pq.read_table(layout.removals).to_pylist()}
    assert {k: r["reason"] for k, r in removals.items()} == {
        "eol/1_1": "exact_eval_duplicate",
        "eol/2_1": "near_eval_duplicate",
        "eol/3_1": "held_out_species",
        "eol/5_1": "in_train_duplicate",
    }
    assert removals["eol/1_1"]["eval_key"] == "Quercus_robur/e1.jpg"
    assert removals["eol/2_1"]["evalset"] == "mine"
    assert 1 <= removals["eol/2_1"]["distance"] <= 8
    assert removals["eol/5_1"]["eval_key"] == "eol/4_1"
    report = json.loads((layout.dedup_dir / "report.json").read_text())
    assert report["total"] == 4 == result["removed"]
    assert report["by_evalset_reason"] == {
        "mine": {"exact_eval_duplicate": 1, "near_eval_duplicate": 1},
        "rare": {"held_out_species": 1},
    }
    assert report["settings"]["phash_algo"] == "dct64-v2"
    assert report["held_out_species_unresolved"] == {"rare": ["Ghostus nullus"]}
    assert report["settings"]["evaluation_images"]["rare"] == {
        "listed": 2,
        "hashed": 1,
        "failed": {"missing_file": 1},
        "missing": 1,
        "missing_paths": ["img/g.jpg"],
        "outside_set": 0,
        "outside_set_paths": [],
    }
    sheet = Image.open(layout.dedup_dir / "near_pairs.jpg")
    assert sheet.format == "JPEG" and sheet.width > 300

    # Unchanged inputs: both stages skip; a new threshold reruns dedup only.
    assert all(r.up_to_date for r in pipeline.build(cfg, stages=("hashes",)).values())
    assert pipeline.run("dedup", cfg).up_to_date
    tighter = removals["eol/2_1"]["distance"] - 1
    strict = config_from_dict({**_as_dict(cfg), "dedup": {"phash_max_distance": tighter}})
    again = pipeline.run("dedup", strict)
    assert not again.up_to_date and again.summary["by_reason"]["near_eval_duplicate"] == 0


def _as_dict(cfg) -> dict:
    import dataclasses

    return {
        "data_root": cfg.data_root,
        "evalsets": [dataclasses.asdict(e) for e in cfg.evalsets],
    }


def test_config_rejects_unknown_layout_and_bad_distance():
    import pytest

    from treeoflife.errors import ConfigError

    with pytest.raises(ConfigError, match="layout"):
        config_from_dict({"evalsets": [{"name": "x", "metadata": "a", "layout": "imagenet"}]})
    with pytest.raises(ConfigError, match="phash_max_distance"):
        config_from_dict({"dedup": {"phash_max_distance": 70}})
    assert (
        config_from_dict(
            {"dedup": {"in_train_phash_max_distance": 4}}
        ).dedup.in_train_phash_max_distance
        == 4
    )
