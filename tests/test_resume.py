from treeoflife.resume import completed, fingerprint, fingerprint_paths, mark_done


def test_marker_round_trip_and_invalidation(tmp_path):
    out = tmp_path / "out.parquet"
    out.write_bytes(b"x")
    fp = fingerprint("stage", {"a": 1})
    assert completed(tmp_path, "stage", fp, [out]) is None
    mark_done(tmp_path, "stage", fp, {"rows": 3})
    assert completed(tmp_path, "stage", fp, [out]) == {"rows": 3}
    assert completed(tmp_path, "stage", fingerprint("stage", {"a": 2}), [out]) is None
    out.unlink()
    assert completed(tmp_path, "stage", fp, [out]) is None


def test_fingerprint_of_paths_changes_with_content(tmp_path):
    f = tmp_path / "d" / "f.txt"
    f.parent.mkdir()
    f.write_text("one")
    before = fingerprint(fingerprint_paths([tmp_path / "d"]))
    assert before == fingerprint(fingerprint_paths([tmp_path / "d"]))
    f.write_text("three")
    assert fingerprint(fingerprint_paths([tmp_path / "d"])) != before
    assert fingerprint_paths([tmp_path / "missing"])[0][1] is None
