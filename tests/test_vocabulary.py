"""The shared vocabulary: every status and reason a build writes is a known word, the published
list matches the code, and no library module defines its own REASON_ / STATUS_ constants."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from treeoflife import schema_export
from treeoflife.vocabulary import (
    HTTP_STATUS,
    FetchStatus,
    Ignored,
    IngestStatus,
    Reason,
    Stage,
    Status,
    http_reason,
    known_reason,
)

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "treeoflife"

STATUSES_BY_TABLE = {
    "catalog": set(Status),
    "source_catalog": set(IngestStatus),
    "eval_hashes": set(IngestStatus),
    "eol_fetch_status": set(FetchStatus),
}

PENDING_SWEEP = {
    "treeoflife/dedup/hashing.py": {"REASON_NOT_AN_IMAGE"},
    "treeoflife/evalsets/files.py": {
        "REASON_MISSING_FILE",
        "REASON_MISSING_FILEPATH",
        "REASON_UNREADABLE",
    },
    "treeoflife/sources/eol.py": {
        "REASON_NO_URL",
        "STATUS_FAILED",
        "STATUS_OK",
        "STATUS_SCHEMA",
        "STATUS_SKIPPED",
    },
    "treeoflife/sources/bioscan.py": {"IGNORED_OTHER_PACKAGE"},
    "treeoflife/sources/inat21.py": {"REASON_CATEGORY_MISMATCH", "REASON_UNKNOWN_CATEGORY"},
    "treeoflife/sources/ingest.py": {
        "IGNORED_DUPLICATE",
        "IGNORED_UNLISTED",
        "IGNORED_UNSAFE",
        "REASON_CORRUPT_MEMBER",
        "REASON_DUPLICATE_KEY",
        "REASON_MALFORMED",
        "REASON_MEMBER_TOO_LARGE",
        "REASON_MISSING",
    },
}
"""Module constants still waiting for the sweep to treeoflife.vocabulary (files other work owned
when the vocabulary came; evalsets/files.py re-exports three for dedup/hashing.py). Remove an
entry when its file imports the vocabulary instead: this list only shrinks."""

_CONSTANT = re.compile(r"^((?:REASON|STATUS|IGNORED)_[A-Z0-9_]*)\s*(?::[^=]*)?=", re.MULTILINE)


def _words_in_parquets(root: Path) -> tuple[dict[str, set], dict[str, set]]:
    """{table: statuses} and {file: reasons} over every Parquet file under root."""
    statuses: dict[str, set] = {}
    reasons: dict[str, set] = {}
    for path in sorted(root.rglob("*.parquet")):
        schema = pq.read_schema(path)
        table = (schema.metadata or {}).get(b"treeoflife.table", b"").decode()
        columns = [c for c in ("status", "reason") if c in schema.names]
        if not columns:
            continue
        data = pq.read_table(path, columns=columns)
        if "status" in columns:
            statuses.setdefault(table, set()).update(data.column("status").to_pylist())
        if "reason" in columns:
            found = set(data.column("reason").to_pylist()) - {None}
            reasons[str(path.relative_to(root))] = found
    return statuses, reasons


def test_every_status_and_reason_of_the_sample_build_is_a_known_word(built_sample):
    statuses, reasons = _words_in_parquets(built_sample["root"])
    # The sample exercises every final status and several stages' reasons: not a vacuous pass.
    assert statuses["catalog"] == set(Status)
    assert {"source_catalog", "eol_fetch_status", "eval_hashes"} <= set(statuses)
    assert len(set().union(*reasons.values())) >= 8
    for table, found in statuses.items():
        assert table in STATUSES_BY_TABLE, f"a status column in an unknown table {table!r}"
        assert found <= STATUSES_BY_TABLE[table], (table, found - STATUSES_BY_TABLE[table])
    for path, found in reasons.items():
        unknown = {r for r in found if not known_reason(r)}
        assert not unknown, f"{path}: reasons not in treeoflife.vocabulary: {sorted(unknown)}"
    # The reports count by reason too.
    dedup = json.loads((built_sample["root"] / "dedup" / "report.json").read_text())
    assert dedup["by_reason"] and all(known_reason(r) for r in dedup["by_reason"])
    summary = json.loads((built_sample["release"] / "summary.json").read_text())
    for status_reason in summary["by_reason"]:
        status, reason = status_reason.split(":", 1)
        assert status in set(Status) and known_reason(reason), status_reason


def test_known_reason_accepts_members_and_http_statuses_only():
    assert all(known_reason(r.value) for r in Reason)
    assert known_reason(http_reason(404)) and known_reason("http_503")
    for text in ("http_", "http_42", "http_4040", "http_abc", "not_a_reason", "", None, "Kept"):
        assert not known_reason(text), text
    assert not known_reason(Status.KEPT)  # a status is not a reason


def test_words_are_the_strings_they_replace():
    assert [s.value for s in Status] == ["kept", "failed", "removed", "excluded"]
    assert Reason.NOT_AN_IMAGE == "not_an_image" and f"{Reason.NOT_AN_IMAGE}" == "not_an_image"
    assert repr(Reason.NO_MATCH) == "'no_match'"  # a member in a dict prints as the string did
    assert json.dumps({Reason.NO_URL: [Status.FAILED]}) == '{"no_url": ["failed"]}'
    for reason in Reason:
        assert reason.name == reason.value.upper(), reason
        assert reason.stages and all(isinstance(s, Stage) for s in reason.stages), reason
        assert reason.stage is reason.stages[0]
        assert 10 < len(reason.description) <= 120 and reason.description.endswith("."), reason


def test_published_reasons_match_the_vocabulary(tmp_path):
    published = json.loads((REPO / "schemas" / schema_export.REASONS_FILE).read_text())
    assert published == schema_export.reasons_document(), (
        "schemas/reasons.json is stale: run python -m treeoflife.schema_export"
    )
    listed = {r["reason"]: r for r in published["reasons"]}
    assert set(listed) == {r.value for r in Reason} | {HTTP_STATUS}
    for reason in Reason:
        assert listed[reason.value]["stage"] == reason.stage.value
        assert listed[reason.value]["description"] == reason.description
    # --check notices a stale or missing list.
    schema_export.main([str(tmp_path)])
    assert schema_export.main(["--check", str(tmp_path)]) == 0
    (tmp_path / schema_export.REASONS_FILE).write_text("{}\n")
    assert schema_export.main(["--check", str(tmp_path)]) == 1


def _constants(path: Path) -> set[str]:
    return set(_CONSTANT.findall(path.read_text(encoding="utf-8")))


def test_no_library_module_defines_its_own_reason_status_or_ignored_constants():
    found = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        if path.name == "vocabulary.py" and path.parent == LIBRARY:
            continue
        names = _constants(path)
        if names:
            found[str(path.relative_to(REPO))] = names
    extra = {f: n - PENDING_SWEEP.get(f, set()) for f, n in found.items()}
    extra = {f: sorted(n) for f, n in extra.items() if n}
    assert not extra, f"use treeoflife.vocabulary instead of module constants: {extra}"
    swept = {f: sorted(n - found.get(f, set())) for f, n in PENDING_SWEEP.items()}
    swept = {f: n for f, n in swept.items() if n}
    assert not swept, f"swept, now remove them from PENDING_SWEEP: {swept}"


@pytest.mark.parametrize("path", sorted(PENDING_SWEEP))
def test_constants_pending_the_sweep_are_vocabulary_words(path):
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    words = {r.value for r in Reason} | {
        s.value for s in (*Status, *FetchStatus, *IngestStatus, *Ignored)
    }
    for name in PENDING_SWEEP[path]:
        value = getattr(module, name)
        if isinstance(value, str):
            assert value in words, f"{path}: {name} = {value!r} is not in treeoflife.vocabulary"


def test_the_grep_sees_a_constant():
    """The pattern the module test relies on finds what it must (and not look-alikes)."""
    text = 'REASON_X = "x"\nSTATUS_Y: str = "y"\n_STATUS_COLUMNS = []\n    REASON_Z = 1\n'
    assert set(_CONSTANT.findall(text)) == {"REASON_X", "STATUS_Y"}
