"""The release as Hugging Face dataset repositories: declared feature types, and the metadata
repository layout.

`datasets` infers a webdataset's types from its first 5 samples unless the card declares them
(`dataset_info.features`), so the cards declare every column: nothing a user loads depends on
which samples happen to come first.

One repository cannot serve both the shards and the Parquet catalog as configs: `datasets`
infers one builder for the whole repository from the data files of its first config and gives
every config that builder (huggingface/datasets#7101, open), so a `catalog` config beside the
shards is read as a tar file. The release folder is therefore the images repository (the
shards, config `default`), and `metadata/` beside them is laid out as a second repository with
its own card: configs `catalog` (every row) and `licenses` (the same file, the licence columns
of the images in the shards), both Parquet. Its `catalog.parquet` is a hard link to the
release's (a copy where the file system has no hard links), so it costs no disk.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa
import yaml

from treeoflife.io import atomic_path, write_text_atomic
from treeoflife.schema_export import describe
from treeoflife.schemas import CATALOG
from treeoflife.shards.sample_json import INT_FIELDS, SAMPLE_JSON_FIELDS
from treeoflife.shards.text import CAPTION_MEMBERS
from treeoflife.vocabulary import Status

log = logging.getLogger(__name__)

METADATA_DIR = "metadata"
CATALOG_FILE = "catalog.parquet"
LICENSES_COLUMNS = ("key", "treeoflife_id", "source_url", "license", "rights_holder", "md5")
"""The columns of licenses.csv and of the `licenses` config (TreeOfLife-10M's licenses.csv)."""


def hf_dtype(arrow_type: pa.DataType) -> str:
    """The `datasets` Value dtype of an Arrow column type."""
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return str(arrow_type)  # int32, int64, uint64, float32, float64: the same names
    raise ValueError(f"no datasets dtype for Arrow type {arrow_type}")


def sample_json_features() -> list[dict]:
    """The struct of the shards' `json` member, in its (sorted) key order."""
    return [
        {"name": f, "dtype": "int64" if f in INT_FIELDS else "string"} for f in SAMPLE_JSON_FIELDS
    ]


def shard_features() -> list[dict]:
    """Every column `datasets`' webdataset builder yields for a sample, in shard member order."""
    return [
        {"name": "jpg", "dtype": "image"},
        *({"name": m, "dtype": "string"} for m in CAPTION_MEMBERS),
        {"name": "txt", "dtype": "string"},
        {"name": "json", "struct": sample_json_features()},
        {"name": "__key__", "dtype": "string"},
        {"name": "__url__", "dtype": "string"},
    ]


def catalog_features(columns: tuple[str, ...] | None = None) -> list[dict]:
    """The catalog's columns (or `columns` of it) as `datasets` features."""
    names = CATALOG.names if columns is None else columns
    return [{"name": n, "dtype": hf_dtype(CATALOG.field(n).type)} for n in names]


def _front_matter(front: Mapping) -> str:
    return yaml.safe_dump(dict(front), sort_keys=False, allow_unicode=True, width=1000)


def _table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def render_metadata_card(summary: Mapping) -> str:
    """The card (README.md) of the metadata repository."""
    name = summary.get("pretty_name", "TreeOfLife (treeoflife build)")
    license_ = summary.get("license", "other")
    front: dict = {"license": license_}
    if license_ == "other":
        front["license_name"] = summary.get("license_name", "per-image-licenses")
        front["license_link"] = "README.md"
    kept = [[["status", "==", Status.KEPT.value]]]
    front |= {
        "language": ["en"],
        "pretty_name": f"{name}: catalog and licences",
        "tags": ["biology", "tree-of-life", "taxonomy"],
        "configs": [
            {
                "config_name": "catalog",
                "data_files": [{"split": "catalog", "path": CATALOG_FILE}],
                "default": True,
            },
            {
                "config_name": "licenses",
                "data_files": [{"split": "licenses", "path": CATALOG_FILE}],
                "columns": list(LICENSES_COLUMNS),
                "filters": kept,
            },
        ],
        "dataset_info": [
            {"config_name": "catalog", "features": catalog_features()},
            {"config_name": "licenses", "features": catalog_features(LICENSES_COLUMNS)},
        ],
    }
    columns = [[f"`{f.name}`", f"`{f.type}`", describe("catalog", f)] for f in CATALOG]
    body = [
        "---",
        _front_matter(front).rstrip("\n"),
        "---",
        "",
        f"# {name}: catalog and licences",
        "",
        "The metadata of the TreeOfLife image release, as its own dataset repository:",
        "",
        "- config `catalog`: one row per input image (in the shards or not, with the reason),",
        "  with its taxonomy, provenance, licence, hashes, split, shard and position.",
        "- config `licenses`: the licence, rights holder, source URL and md5 of every image in",
        "  the shards (the catalog's rows with status `kept`; `licenses.csv` of the release).",
        "",
        "```python",
        "from datasets import load_dataset",
        'catalog = load_dataset("<this repository>", "catalog", split="catalog")',
        'licenses = load_dataset("<this repository>", "licenses", split="licenses")',
        "```",
        "",
        "Why a repository of its own: `datasets` gives every config of a repository the builder",
        "it infers from the first config's files (huggingface/datasets#7101), so Parquet configs",
        "beside the webdataset shards of the images would be read as tar files. The images",
        "repository's `catalog.parquet` is the same file; DuckDB and polars read it there",
        "directly.",
        "",
        "## Columns",
        "",
        _table(["column", "type", "description"], columns),
        "",
    ]
    return "\n".join(body)


def _link_or_copy(source: Path, target: Path) -> None:
    """`target` becomes the same bytes as `source`: a hard link, else a copy (atomically)."""
    with atomic_path(target) as tmp:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)


def write_metadata_repo(release_dir: Path, summary: Mapping) -> Path | None:
    """Write `<release_dir>/metadata/` (card + catalog.parquet); None without a catalog."""
    release_dir = Path(release_dir)
    catalog = release_dir / CATALOG_FILE
    if not catalog.is_file():
        return None
    folder = release_dir / METADATA_DIR
    _link_or_copy(catalog, folder / CATALOG_FILE)
    write_text_atomic(folder / "README.md", render_metadata_card(summary))
    return folder
