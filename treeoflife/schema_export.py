"""Publish the Arrow schemas of treeoflife.schemas as JSON under `schemas/`, and check them.

Each `schemas/<table>.json` lists the fields (name, Arrow type, nullable, description) and the
schema version, so users can read our Parquet files without the code; `schemas/reasons.json`
lists every value a `reason` column can hold (treeoflife.vocabulary), with its stage and meaning.
A test regenerates them and compares with the committed files, so the published contract cannot
drift from the code.

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
from treeoflife.vocabulary import (
    HTTP_STATUS,
    HTTP_STATUS_DESCRIPTION,
    FetchStatus,
    Ignored,
    IngestStatus,
    Reason,
    Stage,
    Status,
)

log = logging.getLogger(__name__)

SCHEMAS_DIR = Path(__file__).resolve().parents[1] / "schemas"
"""The repository's published schemas folder."""

REASONS_FILE = "reasons.json"
"""The published reason vocabulary, beside the table schemas."""

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
    **{
        f"{r}_match_type": f"How the {r} was matched: the row's match type where the {r} came "
        "from the row's authority, 'source' for the source's own label, 'inherited' from "
        "another authority."
        for r in RANKS
    },
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
    ("eol_fetch_status", "key"): "Stable image key of the manifest row (joins the catalog).",
    ("eol_fetch_status", "url"): "URL fetched, after mirror rewriting (null: the row has none).",
    ("eol_fetch_status", "status"): "ok, failed, or skipped (never fetched: no URL or a "
    "repeated key).",
    ("eol_fetch_status", "reason"): "Why the row failed or was skipped (null when ok).",
    ("eol_fetch_status", "http_status"): "Last HTTP status seen (null: no answer, or file://).",
    ("eol_fetch_status", "bytes"): "Body bytes received.",
    ("eol_fetch_status", "md5"): "Hex md5 of the stored image (as in the catalog).",
    ("eol_fetch_status", "width"): "Stored image width in pixels.",
    ("eol_fetch_status", "height"): "Stored image height in pixels.",
    ("eol_fetch_status", "attempts"): "Requests made, retries included (0: never fetched).",
    ("eol_fetch_status", "elapsed"): "Seconds from the first attempt to the outcome, waits "
    "included (not reproducible).",
    ("eol_fetch_status", "runs"): "Runs that fetched this row: a transient failure "
    "(timeout, connection error, 5xx, 429) is fetched again by the next run, up to "
    "sources.eol.rerun_transient more runs (0: never fetched).",
    ("source_catalog", "status"): "Ingest status: ok or failed.",
    ("source_catalog", "reason"): "Why the ingest failed (null when ok).",
    ("taxa", "reason"): "Why the query stayed unresolved (null when resolved).",
    ("removals", "reason"): "Removal reason: exact or near evaluation duplicate, held-out "
    "species, or in-train duplicate.",
    ("shard_index", "shard"): "Shard file of the sample in this split's folder, e.g. "
    "shard-000000.tar.",
    ("shard_index", "position"): "Index of the sample inside its shard.",
    ("shard_index", "offset"): "Byte offset of the sample's first tar header in the shard; "
    "the `size` bytes from here are a tar of its members.",
    ("shard_index", "size"): "Bytes of all the sample's members, tar headers and padding included.",
    ("shard_index", "jpg_offset"): "Byte offset of the sample's JPEG data in the shard.",
    ("shard_index", "jpg_size"): "Size in bytes of the sample's JPEG.",
    ("shard_index", "key"): "Stable image key of the sample (joins the catalog).",
    ("eval_hashes", "evalset"): "Name of the evaluation set (from the build config).",
    ("eval_hashes", "eval_key"): "Path of the evaluation image, relative to the set's root.",
    ("eval_hashes", "label"): "The evaluation set's own class label, verbatim.",
    ("eval_hashes", "kingdom"): "Kingdom as the evaluation set lists it (verbatim).",
    ("eval_hashes", "phylum"): "Phylum as the evaluation set lists it (verbatim).",
    ("eval_hashes", "class"): "Class as the evaluation set lists it (verbatim).",
    ("eval_hashes", "order"): "Order as the evaluation set lists it (verbatim).",
    ("eval_hashes", "family"): "Family as the evaluation set lists it (verbatim).",
    ("eval_hashes", "genus"): "Genus as the evaluation set lists it (verbatim).",
    ("eval_hashes", "species"): "Species (epithet or binomial) as the set lists it (verbatim).",
    ("eval_hashes", "common_name"): "Common name as the evaluation set lists it (verbatim).",
    ("eval_hashes", "md5"): "Hex md5 of the evaluation image file's bytes.",
    ("eval_hashes", "status"): "Hash status: ok or failed.",
    ("eval_hashes", "reason"): "Why the image got no hash: missing_filepath, outside_set (an "
    "absolute path, a `..` or a symlink out of the set's folder: never read), missing_file, "
    "unreadable, not_an_image (null when ok).",
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


def reasons_document() -> dict:
    """The JSON document published as `schemas/reasons.json`: every reason and status."""
    return {
        "name": "reasons",
        "description": "Every value of the `reason` columns (catalog, source_catalog, "
        "eol_fetch_status, taxa, removals, eval_hashes) and of the reports' skip counters, with "
        "the stage that records it; `http_<status>` stands for one reason per HTTP status.",
        "stages": [s.value for s in Stage],
        "reasons": [
            {
                "reason": r.value,
                "stage": r.stage.value,
                "stages": [s.value for s in r.stages],
                "description": r.description,
            }
            for r in Reason
        ]
        + [
            {
                "reason": HTTP_STATUS,
                "stage": Stage.INGEST.value,
                "stages": [Stage.INGEST.value],
                "description": HTTP_STATUS_DESCRIPTION,
            }
        ],
        "statuses": {
            "catalog": [s.value for s in Status],
            "source_catalog": [s.value for s in IngestStatus],
            "eval_hashes": [s.value for s in IngestStatus],
            "eol_fetch_status": [s.value for s in FetchStatus],
        },
        "ignored_members": [i.value for i in Ignored],
    }


def render_reasons() -> str:
    return json.dumps(reasons_document(), indent=2, ensure_ascii=False) + "\n"


def export_reasons(out_dir: Path = SCHEMAS_DIR) -> Path:
    """Write `<out_dir>/reasons.json`."""
    path = Path(out_dir) / REASONS_FILE
    write_text_atomic(path, render_reasons())
    return path


def reasons_current(schemas_dir: Path = SCHEMAS_DIR) -> bool:
    """Whether the published reasons.json matches the vocabulary."""
    path = Path(schemas_dir) / REASONS_FILE
    return path.exists() and path.read_text(encoding="utf-8") == render_reasons()


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    parser = argparse.ArgumentParser(prog="python -m treeoflife.schema_export")
    parser.add_argument("out_dir", nargs="?", type=Path, default=SCHEMAS_DIR)
    parser.add_argument("--check", action="store_true", help="only check, exit 1 on drift")
    args = parser.parse_args(argv)
    if args.check:
        stale = check_schemas(args.out_dir)
        if not reasons_current(args.out_dir):
            stale.append("reasons")
        if stale:
            log.error(
                "schemas differ from the code: %s (run python -m treeoflife.schema_export)",
                ", ".join(stale),
            )
            return 1
        log.info("schemas in %s match the code", args.out_dir)
        return 0
    for path in [*export_schemas(args.out_dir), export_reasons(args.out_dir)]:
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
