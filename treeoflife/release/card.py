"""The dataset card (`README.md` with Hugging Face front matter) and `licenses.csv`.

The card is generated from a build summary and the files in the release folder, with no dates
or other run-dependent text, so the same build gives the same card. Release layout assumed:
`<release>/shards/<split>/shard-%06d.tar` + `sizes.json`, `<release>/catalog.parquet`,
`<release>/licenses.csv`. The card declares the shards' feature types for Hugging Face
`datasets`; the catalog and licences are served by a second card in `metadata/` (see
treeoflife.release.hub for why).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from treeoflife.io import atomic_path, write_text_atomic, writing
from treeoflife.release.hub import (
    LICENSES_COLUMNS,
    METADATA_DIR,
    shard_features,
    write_metadata_repo,
)
from treeoflife.schema_export import describe
from treeoflife.schemas import CATALOG
from treeoflife.vocabulary import Status

log = logging.getLogger(__name__)

CARD_FILE = "README.md"

BIOCLIP_CITATION = """@inproceedings{stevens2024bioclip,
  title     = {{B}io{CLIP}: A Vision Foundation Model for the Tree of Life},
  author    = {Samuel Stevens and Jiaman Wu and Matthew J Thompson and Elizabeth G Campolongo
               and Chan Hee Song and David Edward Carlyn and Li Dong and Wasila M Dahdul
               and Charles Stewart and Tanya Berger-Wolf and Wei-Lun Chao and Yu Su},
  booktitle = {Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern
               Recognition (CVPR)},
  year      = {2024},
  pages     = {19412--19424}
}"""

_SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]


def size_category(n: int) -> str:
    """Hugging Face `size_categories` bucket of n samples."""
    for limit, label in _SIZE_CATEGORIES:
        if n < limit:
            return label
    return "n>1T" if n >= 10**12 else "1B<n<10B"


def _split_shards(release_dir: Path) -> dict[str, dict[str, int]]:
    """{split: {shard file: samples}} from the sizes.json files in the release."""
    out = {}
    shards_root = release_dir / "shards"
    if not shards_root.is_dir():
        return out
    for sizes_path in sorted(shards_root.glob("*/sizes.json")):
        sizes = json.loads(sizes_path.read_text(encoding="utf-8"))
        out[sizes_path.parent.name] = dict(sorted((k, int(v)) for k, v in sizes.items()))
    return dict(sorted(out.items(), key=lambda kv: (kv[0] != "train", kv[0])))


def _total(value) -> int:
    return sum(value.values()) if isinstance(value, Mapping) else int(value)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _front_matter(summary: Mapping, shards: Mapping[str, Mapping[str, int]], kept: int) -> str:
    data_files = [
        {"split": split, "path": f"shards/{split}/shard-*.tar"} for split in shards if shards[split]
    ]
    # Only the shards: a Parquet config here would get the webdataset builder (see hub.py).
    configs, infos = [], []
    if data_files:
        configs.append({"config_name": "default", "data_files": data_files, "default": True})
        infos.append({"config_name": "default", "features": shard_features()})
    license_ = summary.get("license", "other")
    front = {"license": license_}
    if license_ == "other":  # the Hub asks for a name and a link then
        front["license_name"] = summary.get("license_name", "per-image-licenses")
        front["license_link"] = "licenses.csv"
    front |= {
        "language": ["en"],
        "pretty_name": summary.get("pretty_name", "TreeOfLife (treeoflife build)"),
        "task_categories": ["zero-shot-image-classification", "image-classification"],
        "tags": ["biology", "tree-of-life", "taxonomy", "webdataset", "clip"],
        "size_categories": [size_category(kept)],
    }
    if configs:
        front |= {"configs": configs, "dataset_info": infos}
    return yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000)


def render_dataset_card(summary: Mapping, shards: Mapping[str, Mapping[str, int]]) -> str:
    """The card text for a summary (see write_dataset_card) and {split: {shard: samples}}."""
    by_status = dict(summary.get("by_status", {}))
    total = int(summary.get("images", sum(by_status.values())))
    kept = int(by_status.get(Status.KEPT, sum(sum(s.values()) for s in shards.values())))
    name = summary.get("pretty_name", "TreeOfLife (treeoflife build)")
    out = ["---", _front_matter(summary, shards, kept).rstrip("\n"), "---", "", f"# {name}", ""]
    out += [
        "Biology images from iNat21, BIOSCAN-1M and the Encyclopedia of Life under one",
        "seven-rank taxonomy (kingdom, phylum, class, order, family, genus, species epithet)",
        "with common names, in the format of TreeOfLife-10M (BioCLIP, Stevens et al., CVPR",
        "2024). Images of the evaluation sets (exact and near duplicates) and of held-out",
        "species are removed. Built reproducibly by the treeoflife pipeline: the same inputs",
        "and config give byte-identical shards and catalog.",
        "",
        f"- images considered: {total}",
        f"- images in the shards (status `kept`): {kept}",
        "",
        "## Contents",
        "",
        "- `shards/<split>/shard-NNNNNN.tar`: webdataset shards, with `sizes.json`",
        "  (samples per shard), `manifest.json` (sha256, bytes and samples per shard) and",
        "  `index.parquet` (byte offset and size of every sample and of its JPEG) beside them.",
        "- `catalog.parquet`: one row per input image with its taxonomy, provenance, licence,",
        "  hashes, split, shard and, for images not in the shards, status and reason. Sorted by",
        "  source then taxonomy, with row-group statistics: filters on source or a rank skip",
        "  most of the file.",
        "- `licenses.csv`: licence, rights holder, source URL and md5 of each image in the shards.",
        f"- `{METADATA_DIR}/`: the catalog and licences as a dataset repository of their own",
        "  (its own card; see *Hugging Face datasets* below).",
        "- `croissant.json`: Croissant 1.1 metadata (files; record sets `samples`, `catalog`",
        "  and `licenses`).",
        "- `report/index.html`: statistics with plots (sources, splits, long tail, rank",
        "  completeness, taxonomic overview, removals).",
        "",
        "Samples are in a global seeded shuffle across sources, so a shard mixes sources and",
        "species. `treeoflife verify` reads every shard back against `manifest.json`,",
        "`index.parquet` and the catalog.",
        "",
        "Each sample holds `<id>.jpg`, `<id>.txt` (the caption stock open_clip trains on),",
        "BioCLIP's ten text members (`scientific_name.txt`, `taxonomic_name.txt`,",
        "`common_name.txt`, `sci.txt`, `com.txt`, `taxon.txt`, `taxonTag.txt`, `sci_com.txt`,",
        "`taxon_com.txt`, `taxonTag_com.txt`) and `<id>.json`. `<id>` is the `treeoflife_id`.",
        "Note that webdataset lower-cases member suffixes when reading (`taxontag.txt`).",
        "",
        "The `json` member holds what a trainer needs, with the same types in every sample:",
        "`key` (joins the catalog, which keeps the full row), `treeoflife_id`, `source`, the",
        "seven ranks, `scientific_name`, `common_name`, `license`, `rights_holder`, `md5`,",
        "`phash` (16 hex digits: the catalog's unsigned 64-bit value, as imagehash prints it),",
        "`phash_algo`, `width`, `height`, `split`, `shard` and `shard_position`. Text the",
        'catalog leaves null is `""` there, so no reader has to guess a type from the first',
        "samples.",
        "",
    ]
    by_source = summary.get("by_source", {})
    if by_source:
        statuses = sorted({s for v in by_source.values() if isinstance(v, Mapping) for s in v})
        header = ["source", "images", *statuses]
        rows = []
        for source, value in sorted(by_source.items()):
            counts = value if isinstance(value, Mapping) else {}
            rows.append([source, _total(value), *[counts.get(s, 0) for s in statuses]])
        out += ["## Images per source", "", _table(header, rows), ""]
    if by_status:
        rows = [[s, n] for s, n in sorted(by_status.items())]
        out += ["## Images per status", "", _table(["status", "images"], rows), ""]
    by_reason = summary.get("by_reason", {})
    if by_reason:
        rows = [[r, n] for r, n in sorted(by_reason.items())]
        out += ["## Why images are not in the shards", "", _table(["reason", "images"], rows), ""]
    by_split = summary.get("by_split", {})
    if by_split or shards:
        rows = []
        for split in sorted(set(by_split) | set(shards), key=lambda s: (s != "train", s)):
            rows.append(
                [
                    split,
                    by_split.get(split, sum(shards.get(split, {}).values())),
                    len(shards.get(split, {})),
                ]
            )
        out += ["## Splits", "", _table(["split", "images", "shards"], rows), ""]
        out += [
            "`train_small` is a deterministic subset of `train` (catalog column",
            "`in_train_small`)"
            + (
                ": its shards repeat those samples, whose `json` (`shard`, `shard_position`)"
                " gives their place in `train`; their place in `train_small` is in its"
                " `index.parquet`."
                if "train_small" in shards
                else "."
            ),
            "",
        ]
    evalsets = summary.get("evalsets", {})
    if evalsets:
        rows = [
            [name, info.get("images", ""), info.get("classes", "")]
            for name, info in sorted(evalsets.items())
        ]
        out += [
            "## Evaluation sets",
            "",
            "Written in CLIP_benchmark's `wds/` layout under `evalsets/wds/<name>/`; their",
            "images (exact and near duplicates) were removed from the training shards.",
            "",
            _table(["evaluation set", "images", "classes"], rows),
            "",
        ]
    out += ["## Use with open_clip", ""]
    train = shards.get("train") or next(iter(shards.values()), {})
    last = max(len(train) - 1, 0)
    out += [
        "Stock open_clip reads the shards directly; `sizes.json` gives it the sample count.",
        "",
        "```bash",
        "python -m open_clip_train.main \\",
        f"    --train-data 'shards/train/shard-{{000000..{last:06d}}}.tar' \\",
        "    --dataset-type webdataset \\",
        "    --model ViT-B-16 --batch-size 256 --epochs 100",
        "```",
        "",
        "`txt` holds the caption kind the build chose (`shards.text_type`; `random` is",
        "BioCLIP's mixed text type: one of sci, com, taxon, sci_com, taxon_com per sample,",
        "fixed by key and seed), so stock open_clip trains BioCLIP-style without a fork. The",
        "other caption members stay available to readers that pick their own.",
        "",
        "Read the catalog with no project code:",
        "",
        "```python",
        "import duckdb",
        "duckdb.sql(\"SELECT split, count(*) FROM 'catalog.parquet' GROUP BY split\")",
        "```",
        "",
        "## Hugging Face datasets",
        "",
        "Upload this folder and `metadata/` as two dataset repositories:",
        "",
        "```bash",
        "hf upload ORG/NAME . . --repo-type dataset --exclude 'metadata/*'",
        "hf upload ORG/NAME-metadata metadata . --repo-type dataset",
        "```",
        "",
        "```python",
        "from datasets import load_dataset",
        'images = load_dataset("ORG/NAME", split="train", streaming=True)  # jpg, captions, json',
        'catalog = load_dataset("ORG/NAME-metadata", "catalog", split="catalog")',
        'licenses = load_dataset("ORG/NAME-metadata", "licenses", split="licenses")',
        "```",
        "",
        "This card declares the feature types of every sample member (`dataset_info`), so",
        "`datasets` never guesses them from the first samples. The catalog and licences live in",
        "a repository of their own because `datasets` gives every config of a repository the",
        "builder it infers from the first config's files (huggingface/datasets#7101): a Parquet",
        "config beside the webdataset shards would be read as tar files. `metadata/` is that",
        "repository, with its own card (`catalog.parquet` there is this folder's catalog).",
        "",
        "## Catalog columns",
        "",
        _table(
            ["column", "type", "description"],
            [[f"`{f.name}`", f"`{f.type}`", describe("catalog", f)] for f in CATALOG],
        ),
        "",
        f"Schema version {CATALOG.metadata[b'treeoflife.version'].decode()}; the JSON schema is",
        "published as `schemas/catalog.json` in the treeoflife repository.",
        "",
        "## Licences",
        "",
        "Images keep the licences of their sources: iNat21 images are under the licences the",
        "iNaturalist observers chose, BIOSCAN-1M images under CC BY 3.0, and EOL images under the",
        "licence recorded per image. `licenses.csv` and the catalog's `license` and",
        "`rights_holder` columns give them per image; respect them when redistributing.",
        "The captions and catalog are derived metadata.",
        "",
        "## Citation",
        "",
        "If you use this dataset, please cite BioCLIP, whose TreeOfLife-10M this build follows:",
        "",
        "```bibtex",
        BIOCLIP_CITATION,
        "```",
        "",
    ]
    return "\n".join(out)


def write_dataset_card(release_dir: Path, summary: dict) -> Path:
    """Write `<release_dir>/README.md`; returns its path.

    `summary` keys (all optional): images, by_source ({source: n} or {source: {status: n}}),
    by_status, by_reason, by_split, pretty_name, license, license_name. Shard counts come from
    the `shards/<split>/sizes.json` files already in the release. With a `catalog.parquet` in
    the release, `metadata/` gets its own card and the catalog (treeoflife.release.hub).
    """
    release_dir = Path(release_dir)
    text = render_dataset_card(summary, _split_shards(release_dir))
    path = release_dir / CARD_FILE
    write_text_atomic(path, text)
    write_metadata_repo(release_dir, summary)
    return path


def write_licenses_csv(table: pa.Table, path: Path, batch_rows: int = 65_536) -> None:
    """Licence of each shipped image (status kept), by key, like TreeOfLife-10M's licenses.csv."""
    if "status" in table.column_names:
        table = table.filter(pc.equal(table.column("status"), Status.KEPT))
    table = table.select(list(LICENSES_COLUMNS)).sort_by("key")
    write_licenses_rows(table.to_batches(max_chunksize=batch_rows), path)


def write_licenses_rows(batches: Iterable, path: Path) -> None:
    """licenses.csv from Arrow batches of the shipped images' LICENSES_COLUMNS, in key order.

    Written batch by batch into the temporary file: at 10M rows a whole-table to_pylist and
    one in-memory CSV held ~5 GB of the driver."""
    with writing(path), atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(LICENSES_COLUMNS)
        for batch in batches:
            columns = [batch.column(c).to_pylist() for c in LICENSES_COLUMNS]
            writer.writerows(
                ["" if v is None else v for v in row] for row in zip(*columns, strict=True)
            )
