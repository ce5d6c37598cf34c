"""Stage markers and fingerprints (treeoflife.runner's primitives)."""

from treeoflife.runner import (
    damaged_outputs,
    fingerprint,
    fingerprint_paths,
    mark_done,
    read_marker,
    record_outputs,
)


def test_marker_round_trip_records_outputs(tmp_path):
    out = tmp_path / "out" / "part.parquet"
    out.parent.mkdir()
    out.write_bytes(b"x")
    fp = fingerprint("stage", {"a": 1})
    assert read_marker(tmp_path, "stage") is None
    recorded = record_outputs(tmp_path, [tmp_path / "out"])
    assert recorded == [["out/part.parquet", 1, out.stat().st_mtime_ns]]
    mark_done(tmp_path, "stage", fp, {"rows": 3}, recorded)
    marker = read_marker(tmp_path, "stage")
    assert marker["fingerprint"] == fp and marker["result"] == {"rows": 3}
    assert damaged_outputs(tmp_path, marker["outputs"]) == []
    out.write_bytes(b"xy")
    assert damaged_outputs(tmp_path, marker["outputs"]) == ["out/part.parquet"]
    out.unlink()
    assert damaged_outputs(tmp_path, marker["outputs"]) == ["out/part.parquet"]
    (tmp_path / "stage.done.json").write_text("[1, 2")
    assert read_marker(tmp_path, "stage") is None  # a malformed marker: not done


def test_fingerprint_of_paths_changes_with_content(tmp_path):
    f = tmp_path / "d" / "f.txt"
    f.parent.mkdir()
    f.write_text("one")
    before = fingerprint(fingerprint_paths([tmp_path / "d"]))
    assert before == fingerprint(fingerprint_paths([tmp_path / "d"]))
    f.write_text("three")
    assert fingerprint(fingerprint_paths([tmp_path / "d"])) != before
    assert fingerprint_paths([tmp_path / "missing"])[0][1] is None
    assert fingerprint_paths([f], tmp_path)[0][0] == "d/f.txt"
