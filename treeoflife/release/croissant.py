"""Croissant 1.1 JSON-LD metadata of the release (`croissant.json`).

Croissant (MLCommons) is what dataset hubs and loaders read to know a dataset's files and
record structure. Ours describes the files (catalog, licences, each split's shards, manifests
and shard indexes, with sha256) and record sets a tool can load without our code: `catalog`
(one record per image, every column typed and described from `schemas/catalog.json`),
`licenses`, and `samples` (the images in the shards with their captions and catalog key; see
croissant_samples). The text has no dates or paths of the machine, so the same release gives
the same file. `mlcroissant validate` accepts it and `mlcroissant load` reads its records (tested).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from treeoflife import __version__
from treeoflife.io import file_sha256, write_text_atomic
from treeoflife.release.card import BIOCLIP_CITATION, LICENSES_COLUMNS
from treeoflife.release.croissant_samples import sample_croissant
from treeoflife.schema_export import describe
from treeoflife.schemas import CATALOG

CROISSANT_FILE = "croissant.json"
CONFORMS_TO = "http://mlcommons.org/croissant/1.1"

CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "arrayShape": "cr:arrayShape",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "containedIn": "cr:containedIn",
    "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "equivalentProperty": "cr:equivalentProperty",
    "extract": "cr:extract",
    "field": "cr:field",
    "fileProperty": "cr:fileProperty",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isArray": "cr:isArray",
    "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath",
    "key": "cr:key",
    "md5": "cr:md5",
    "parentField": "cr:parentField",
    "path": "cr:path",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "regex": "cr:regex",
    "repeated": "cr:repeated",
    "replace": "cr:replace",
    "samplingRate": "cr:samplingRate",
    "sc": "https://schema.org/",
    "separator": "cr:separator",
    "source": "cr:source",
    "subField": "cr:subField",
    "transform": "cr:transform",
}
"""The standard Croissant @context (as mlcroissant writes it for 1.1)."""

DEFAULT_URL = "https://github.com/treeoflife/treeoflife"
LICENSE_TEXT = (
    "Per-image licences (iNat21 observers' choices, CC BY 3.0 for BIOSCAN-1M, EOL licences per "
    "image): see licenses.csv and the catalog's license and rights_holder columns."
)


def data_type(arrow_type: pa.DataType) -> str:
    """The schema.org data type of an Arrow column type."""
    if pa.types.is_boolean(arrow_type):
        return "sc:Boolean"
    if pa.types.is_integer(arrow_type):
        return "sc:Integer"
    if pa.types.is_floating(arrow_type):
        return "sc:Float"
    return "sc:Text"


def _file_object(release_dir: Path, path: str, encoding: str, description: str) -> dict:
    return {
        "@type": "cr:FileObject",
        "@id": path,
        "name": path,
        "description": description,
        "contentUrl": path,
        "encodingFormat": encoding,
        "sha256": file_sha256(release_dir / path),
    }


def _field(record_set: str, name: str, dtype: str, description: str, file_id: str) -> dict:
    return {
        "@type": "cr:Field",
        "@id": f"{record_set}/{name}",
        "name": name,
        "description": description,
        "dataType": dtype,
        "source": {"fileObject": {"@id": file_id}, "extract": {"column": name}},
    }


def croissant_document(release_dir: Path, summary: Mapping) -> dict:
    """The Croissant JSON-LD of a release folder (catalog.parquet and licenses.csv must exist)."""
    release_dir = Path(release_dir)
    name = summary.get("pretty_name", "TreeOfLife (treeoflife build)")
    kept = dict(summary.get("by_status", {})).get("kept", 0)
    distribution = [
        _file_object(
            release_dir,
            "catalog.parquet",
            "application/x-parquet",
            "One row per input image: taxonomy, provenance, licence, hashes, split, shard.",
        ),
        _file_object(
            release_dir,
            "licenses.csv",
            "text/csv",
            "Licence, rights holder, source URL and md5 of every image in the shards.",
        ),
    ]
    for split_dir in sorted(p for p in (release_dir / "shards").glob("*") if p.is_dir()):
        split = split_dir.name
        distribution.append(
            {
                "@type": "cr:FileSet",
                "@id": f"shards-{split}",
                "name": f"shards-{split}",
                "description": f"Webdataset shards of the {split} split (shard-NNNNNN.tar).",
                "encodingFormat": "application/x-tar",
                "includes": f"shards/{split}/shard-*.tar",
            }
        )
        for file, fmt, what in (
            ("manifest.json", "application/json", "sha256, bytes and samples per shard"),
            ("sizes.json", "application/json", "samples per shard (read by open_clip)"),
            ("index.parquet", "application/x-parquet", "byte offsets of every sample"),
        ):
            if (split_dir / file).exists():
                distribution.append(
                    _file_object(release_dir, f"shards/{split}/{file}", fmt, f"{split}: {what}.")
                )
    sample_files, sample_sets = sample_croissant(release_dir)
    distribution += sample_files
    catalog_fields = [
        _field("catalog", f.name, data_type(f.type), describe("catalog", f), "catalog.parquet")
        for f in CATALOG
    ]
    license_fields = [
        _field("licenses", c, "sc:Text", describe("catalog", CATALOG.field(c)), "licenses.csv")
        for c in LICENSES_COLUMNS
    ]
    return {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "conformsTo": CONFORMS_TO,
        "name": name,
        "description": (
            "Biology images from iNat21, BIOSCAN-1M and the Encyclopedia of Life under one "
            "seven-rank taxonomy with common names, as webdataset shards for open_clip "
            f"(TreeOfLife-10M format, BioCLIP); {kept} images in the shards. Built by "
            f"treeoflife {__version__}."
        ),
        "citeAs": BIOCLIP_CITATION,
        "license": summary.get("license_text", LICENSE_TEXT),
        "url": summary.get("url", DEFAULT_URL),
        "version": summary.get("version", "1.0.0"),
        "keywords": ["biology", "tree of life", "taxonomy", "CLIP", "webdataset"],
        "isLiveDataset": False,
        "distribution": distribution,
        "recordSet": [
            {
                "@type": "cr:RecordSet",
                "@id": "catalog",
                "name": "catalog",
                "description": "One record per input image (kept or not), schema catalog v"
                + CATALOG.metadata[b"treeoflife.version"].decode()
                + ".",
                "key": {"@id": "catalog/key"},
                "field": catalog_fields,
            },
            {
                "@type": "cr:RecordSet",
                "@id": "licenses",
                "name": "licenses",
                "description": "Licence of every image in the shards (TreeOfLife-10M style).",
                "key": {"@id": "licenses/key"},
                "field": license_fields,
            },
            *sample_sets,
        ],
    }


def write_croissant(release_dir: Path, summary: Mapping) -> Path:
    """Write `<release_dir>/croissant.json`; returns its path."""
    path = Path(release_dir) / CROISSANT_FILE
    doc = croissant_document(release_dir, summary)
    write_text_atomic(path, json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    return path
