"""The Croissant description of the image samples in the shards (part of `croissant.json`).

Each shard is a FileObject (a tar archive, sha256 from the split's manifest); FileSets pick the
members out of the extracted shards: the images (`*.jpg`), the caption open_clip trains on
(`<id>.txt`) and every caption member (`*.txt`). Three record sets read them:

- `samples`: one record per sample: `treeoflife_id`, the image, its `txt` caption and the
  catalog's `key` (which joins the catalog), split, names and ranks (the caption fields).
- `sample_text`: one record per sample: its `txt` caption joined to the catalog on
  `treeoflife_id`. `samples` reads the catalog through it because Croissant's reference loader
  (mlcroissant) joins exactly two sources per record set.
- `captions`: one record per caption member (`sci.txt`, `taxon_com.txt`, ..., `txt`).

`train_small` is left out: its samples repeat `train`'s (the catalog's `in_train_small` says
which). Sample ids are UUIDs, which is what the `<id>.txt` pattern relies on.
"""

from __future__ import annotations

import json
from pathlib import Path

from treeoflife.schema_export import describe
from treeoflife.schemas import CATALOG, RANKS
from treeoflife.shards.manifest import MANIFEST_FILE

EXCLUDED_SPLITS = ("train_small",)
IMAGES, TXT, CAPTIONS = "sample-images", "sample-txt", "sample-captions"
_UUID_GLOB = "????????-????-????-????-????????????"
_ID = r"^([^.]+)(?:\.[^/]*)?$"  # the sample id of a member name (or of the id itself)
_MEMBER = r"^[^.]+\.(.+)$"  # the member suffix: sci.txt, taxonTag_com.txt, txt
CATALOG_FIELDS = ("key", "split", "scientific_name", "common_name", *RANKS)
"""Catalog columns each sample record carries (through `sample_text`)."""


def _shard_objects(release_dir: Path) -> list[dict]:
    """One FileObject per shard of the splits described, with the manifest's sha256."""
    out = []
    for split_dir in sorted(p for p in (release_dir / "shards").glob("*") if p.is_dir()):
        if split_dir.name in EXCLUDED_SPLITS or not (split_dir / MANIFEST_FILE).is_file():
            continue
        manifest = json.loads((split_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
        for name, entry in sorted(manifest.get("shards", {}).items()):
            path = f"shards/{split_dir.name}/{name}"
            out.append(
                {
                    "@type": "cr:FileObject",
                    "@id": path,
                    "name": path,
                    "description": f"Webdataset shard ({entry['samples']} samples).",
                    "contentUrl": path,
                    "encodingFormat": "application/x-tar",
                    "sha256": entry["sha256"],
                }
            )
    return out


def _file_set(id_: str, shards: list[dict], fmt: str, includes: str, what: str) -> dict:
    return {
        "@type": "cr:FileSet",
        "@id": id_,
        "name": id_,
        "description": what,
        "containedIn": [{"@id": s["@id"]} for s in shards],
        "encodingFormat": fmt,
        "includes": includes,
    }


def _from_file(record_set, name, file_set, prop, dtype, what, regex=None, references=None):
    source: dict = {"fileSet": {"@id": file_set}, "extract": {"fileProperty": prop}}
    if regex:
        source["transform"] = {"regex": regex}
    field = {
        "@type": "cr:Field",
        "@id": f"{record_set}/{name}",
        "name": name,
        "description": what,
        "dataType": dtype,
        "source": source,
    }
    if references:
        field["references"] = {"field": {"@id": references}}
    return field


def _from_field(record_set: str, name: str, source: str, what: str) -> dict:
    return {
        "@type": "cr:Field",
        "@id": f"{record_set}/{name}",
        "name": name,
        "description": what,
        "dataType": "sc:Text",
        "source": {"field": {"@id": source}},
    }


def _record_set(id_: str, what: str, key: str, fields: list[dict]) -> dict:
    return {
        "@type": "cr:RecordSet",
        "@id": id_,
        "name": id_,
        "description": what,
        "key": {"@id": f"{id_}/{key}"},
        "field": fields,
    }


def sample_croissant(release_dir: Path) -> tuple[list[dict], list[dict]]:
    """(distribution entries, record sets) describing the samples; ([], []) without shards."""
    shards = _shard_objects(Path(release_dir))
    if not shards:
        return [], []
    distribution = [
        *shards,
        _file_set(IMAGES, shards, "image/jpeg", "*.jpg", "The image of every sample."),
        _file_set(TXT, shards, "text/plain", f"{_UUID_GLOB}.txt", "The caption open_clip reads."),
        _file_set(CAPTIONS, shards, "text/plain", "*.txt", "Every caption member of a sample."),
    ]
    sample_id = "Sample id: the treeoflife_id of the catalog row, the sample's key in its shard."
    txt = "The caption stock open_clip trains on (the build's shards.text_type)."
    catalog = {f: describe("catalog", CATALOG.field(f)) for f in CATALOG_FIELDS}
    sample_text = _record_set(
        "sample_text",
        "The txt caption of each sample with the catalog's fields for it (joined on "
        "treeoflife_id); `samples` reads the catalog through it.",
        "treeoflife_id",
        [
            _from_file(
                "sample_text",
                "treeoflife_id",
                TXT,
                "filename",
                "sc:Text",
                sample_id,
                _ID,
                "catalog/treeoflife_id",
            ),
            _from_file("sample_text", "txt", TXT, "content", "sc:Text", txt),
            *(_from_field("sample_text", f, f"catalog/{f}", w) for f, w in catalog.items()),
        ],
    )
    samples = _record_set(
        "samples",
        "One record per image sample in the shards (train_small repeats train's): the image, "
        "its caption, and the catalog key and name fields its captions are made from.",
        "treeoflife_id",
        [
            _from_file(
                "samples",
                "treeoflife_id",
                IMAGES,
                "filename",
                "sc:Text",
                sample_id,
                _ID,
                "sample_text/treeoflife_id",
            ),
            _from_file("samples", "image", IMAGES, "content", "sc:ImageObject", "The JPEG."),
            _from_field("samples", "txt", "sample_text/txt", txt),
            *(_from_field("samples", f, f"sample_text/{f}", w) for f, w in catalog.items()),
        ],
    )
    captions = {
        "@type": "cr:RecordSet",
        "@id": "captions",
        "name": "captions",
        "description": "Every caption member of every sample (BioCLIP's text types and txt).",
        "field": [
            _from_file(
                "captions", "treeoflife_id", CAPTIONS, "filename", "sc:Text", sample_id, _ID
            ),
            _from_file(
                "captions",
                "member",
                CAPTIONS,
                "filename",
                "sc:Text",
                "Caption member: sci.txt, com.txt, taxon.txt, taxonTag.txt, sci_com.txt, "
                "taxon_com.txt, taxonTag_com.txt, scientific_name.txt, common_name.txt, "
                "taxonomic_name.txt or txt.",
                _MEMBER,
            ),
            _from_file("captions", "text", CAPTIONS, "content", "sc:Text", "The caption."),
        ],
    }
    return distribution, [samples, sample_text, captions]
