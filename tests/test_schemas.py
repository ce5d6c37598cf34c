"""The published schemas/*.json must match treeoflife.schemas, and our files must match them."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from treeoflife import schema_export
from treeoflife.records import treeoflife_id
from treeoflife.release.catalog import write_catalog
from treeoflife.schemas import ALL, CATALOG

REPO_SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def test_committed_schemas_match_the_code(tmp_path):
    written = schema_export.export_schemas(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{name}.json" for name in ALL)
    for path in written:
        committed = REPO_SCHEMAS / path.name
        assert committed.exists(), f"{committed} missing: run python -m treeoflife.schema_export"
        assert committed.read_text() == path.read_text(), (
            f"{committed} is stale: run python -m treeoflife.schema_export"
        )
    assert schema_export.check_schemas(REPO_SCHEMAS) == []
    assert schema_export.main(["--check", str(REPO_SCHEMAS)]) == 0


def test_check_detects_drift(tmp_path):
    schema_export.export_schemas(tmp_path)
    doc = json.loads((tmp_path / "hashes.json").read_text())
    doc["fields"][1]["type"] = "large_string"
    (tmp_path / "hashes.json").write_text(json.dumps(doc, indent=2) + "\n")
    (tmp_path / "taxa.json").unlink()
    assert schema_export.check_schemas(tmp_path) == ["hashes", "taxa"]
    assert schema_export.main(["--check", str(tmp_path)]) == 1


def test_every_column_is_described_and_versioned():
    for name, schema in ALL.items():
        doc = schema_export.schema_document(name, schema)
        assert doc["version"] == schema.metadata[b"treeoflife.version"].decode()
        assert [f["name"] for f in doc["fields"]] == schema.names
        for field in doc["fields"]:
            assert len(field["description"]) > 10, (name, field["name"])


def _type_from_json(type_name: str) -> pa.DataType:
    simple = {
        "string": pa.string(),
        "int64": pa.int64(),
        "int32": pa.int32(),
        "uint64": pa.uint64(),
        "bool": pa.bool_(),
        "double": pa.float64(),
    }
    return simple[type_name]


def test_written_catalog_matches_published_json(tmp_path):
    row = {name: None for name in CATALOG.names}
    row.update(
        key="eol/1_2",
        treeoflife_id=treeoflife_id("eol/1_2"),
        source="eol",
        status="failed",
        reason="http_404",
        phash=2**64 - 1,
    )
    write_catalog(pa.Table.from_pylist([row], schema=CATALOG), tmp_path / "catalog.parquet")
    schema = pq.read_schema(tmp_path / "catalog.parquet")
    doc = json.loads((REPO_SCHEMAS / "catalog.json").read_text())
    assert [f.name for f in schema] == [f["name"] for f in doc["fields"]]
    for field, published in zip(schema, doc["fields"], strict=True):
        assert field.type == _type_from_json(published["type"]), field.name
        assert field.nullable == published["nullable"], field.name
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items() if b"treeoflife" in k}
    assert meta == doc["metadata"]
