"""Publish the Arrow schemas of treeoflife.schemas as JSON under `schemas/`, and check them.

Each `schemas/<table>.json` lists the fields (name, Arrow type, nullable, description) and the
schema version, so users can read our Parquet files without the code. A test regenerates them
and compares with the committed files, so the published contract cannot drift from the code.

    python -m treeoflife.schema_export            # rewrite schemas/*.json
    python -m treeoflife.schema_export --check    # exit 1 if they differ from the code
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pyarrow as pa

from treeoflife.io import write_text_atomic
from treeoflife.schemas import ALL, FINAL_STATUSES, RANKS

log = logging.getLogger(__name__)

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"
"""The repository's published schemas folder."""

_RANK_DESCRIPTIONS = {
    "species": "Specific epithet (never the binomial), e.g. 'corax' for Corvus corax.",
}

COLUMN_DESCRIPTIONS: dict[str, str] = {
    "key": "Stable image key: inat21/<file uuid>, bioscan/<processid> or "
    "eol/<content id>_<page id>; never changes between builds.",
    "treeoflife_id": "Public image id: UUID5 of the key; the __key__ of the sample in the shards.",
    "source": "Image source: inat21, bioscan or eol.",
    "eol_content_id": "EOL content (media) id (EOL rows only; not stable across EOL releases).",
    "eol_page_id": "EOL page (taxon) id (EOL rows only).",
    "inat21_file": "File name of the image inside the iNat21 archive (iNat21 rows only).",
    "inat21_category_id": "iNat21 category id of the image (iNat21 rows only).",
    "bioscan_processid": "BOLD process id of the BIOSCAN-1M sample (BIOSCAN rows only).",
    "bioscan_part": "BIOSCAN-1M image chunk ('part<chunk>' folder) holding the image.",
    "bioscan_filename": "BIOSCAN-1M image file name inside its part.",
    **{
        f"verbatim_{r}": f"The {r} exactly as the source gave it."
        for r in ("kingdom", "phylum", "class", "order", "family", "genus")
    },
    "verbatim_scientific_name": "Scientific name exactly as the source gave it.",
    "verbatim_common_name": "Common name exactly as the source gave it.",
    **{r: f"Resolved {r} name (null when unknown)." for r in RANKS if r != "species"},
    **_RANK_DESCRIPTIONS,
    "scientific_name": "Canonical name of the resolved taxon (lowest rank resolved).",
    "common_name": "English common name of the resolved taxon, when known.",
    "taxon_id": "Identifier of the resolved taxon in its authority (always text).",
    "authority": "Taxonomic authority that resolved the name, e.g. gbif-backbone.",
    "match_type": "How the name was resolved: exact, synonym, fuzzy, higherrank, source or none.",
    "confidence": "Match confidence reported by the resolver (0-100), when it reports one.",
    **{f"{r}_provenance": f"Where the {r} came from (source label, backbone, ...)." for r in RANKS},
    "flags": "Warnings raised while resolving (e.g. homonym, kingdom conflict).",
    "query_id": "Id of the taxonomy query (source + verbatim names); joins the taxa table.",
    "license": "Licence of the image as published by its source.",
    "rights_holder": "Copyright owner / rights holder of the image.",
    "source_url": "URL the image was obtained from (or the source's archive).",
    "status": "Final status of the row: " + ", ".join(FINAL_STATUSES) + ".",
    "reason": "Why the row is not kept (failed ingest, removal or exclusion reason); "
    "null when kept.",
    "image_file": "Image-store tar holding the image, relative to the data root.",
    "image_offset": "Byte offset of the image's data inside image_file.",
    "image_size": "Size of the image in bytes inside image_file.",
    "md5": "Hex md5 of the stored image bytes (as TreeOfLife-10M publishes).",
    "phash": "64-bit perceptual hash of the image (unsigned).",
    "phash_algo": "Algorithm and parameters of phash.",
    "width": "Width in pixels of the stored image.",
    "height": "Height in pixels of the stored image.",
    "evalset": "Evaluation set the removed image matched.",
    "eval_key": "Key of the evaluation image it matched.",
    "distance": "Hamming distance of the perceptual hashes (0 for exact duplicates).",
    "removal_evalset": "Evaluation set that caused the removal (removed rows only).",
    "removal_eval_key": "Evaluation image that caused the removal (removed rows only).",
    "removal_distance": "Perceptual-hash distance to that evaluation image.",
    "split": "Release split of a kept image: train or val (null unless kept).",
    "in_train_small": "True when the image is in the deterministic train_small subset of train.",
    "shard": "Shard holding a kept image, e.g. train/shard-000000.tar (relative to shards/).",
    "shard_position": "Index of the sample inside its shard.",
}
"""Description of every column of every published table (by column name)."""

TABLE_DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("source_catalog", "status"): "Ingest status: ok or failed.",
    ("source_catalog", "reason"): "Why the ingest failed (null when ok).",
    ("taxa", "reason"): "Why the query stayed unresolved (null when resolved).",
    ("removals", "reason"): "Removal reason: exact or near evaluation duplicate, held-out "
    "species, or in-train duplicate.",
}
"""Per-table overrides of COLUMN_DESCRIPTIONS where a column means something narrower."""


def describe(table_name: str, field: pa.Field) -> str:
    """The published description of one column (KeyError if it has none)."""
    return TABLE_DESCRIPTIONS.get((table_name, field.name)) or COLUMN_DESCRIPTIONS[field.name]


def schema_document(table_name: str, schema: pa.Schema) -> dict:
    """The JSON document published for one schema."""
    meta = {k.decode(): v.decode() for k, v in sorted((schema.metadata or {}).items())}
    return {
        "name": table_name,
        "version": meta.get("treeoflife.version"),
        "metadata": meta,
        "fields": [
            {
                "name": f.name,
                "type": str(f.type),
                "nullable": f.nullable,
                "description": describe(table_name, f),
            }
            for f in schema
        ],
    }


def render(table_name: str, schema: pa.Schema) -> str:
    return json.dumps(schema_document(table_name, schema), indent=2, ensure_ascii=False) + "\n"


def export_schemas(out_dir: Path = SCHEMAS_DIR) -> list[Path]:
    """Write `<out_dir>/<name>.json` for every schema in treeoflife.schemas.ALL."""
    out_dir = Path(out_dir)
    paths = []
    for name in sorted(ALL):
        path = out_dir / f"{name}.json"
        write_text_atomic(path, render(name, ALL[name]))
        paths.append(path)
    return paths


def check_schemas(schemas_dir: Path = SCHEMAS_DIR) -> list[str]:
    """Names of the published schemas that are missing or differ from the code."""
    stale = []
    for name in sorted(ALL):
        path = Path(schemas_dir) / f"{name}.json"
        if not path.exists() or path.read_text(encoding="utf-8") != render(name, ALL[name]):
            stale.append(name)
    return stale


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m treeoflife.schema_export")
    parser.add_argument("out_dir", nargs="?", type=Path, default=SCHEMAS_DIR)
    parser.add_argument("--check", action="store_true", help="only check, exit 1 on drift")
    args = parser.parse_args(argv)
    if args.check:
        stale = check_schemas(args.out_dir)
        if stale:
            log.error(
                "schemas differ from the code: %s (run python -m treeoflife.schema_export)",
                ", ".join(stale),
            )
            return 1
        log.info("schemas in %s match the code", args.out_dir)
        return 0
    for path in export_schemas(args.out_dir):
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
