"""A data root whose path holds glob or query characters (`?`, `[`, `*`) builds like any other.

Issue 15: a `?` in the data-root path crashed DuckDB (it reads `?` as the start of options and
wrote the taxonomy database's log to `<a>.wal?<b>`), and the BIOSCAN zip patterns, matched
under the root, read the root's own `?` and `[` as pattern syntax ("no file matches").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from treeoflife.config import config_from_dict, input_problems
from treeoflife.config_rules import glob_under
from treeoflife.io import duckdb_writable

REPO = Path(__file__).resolve().parents[2]
ODD = "da?ta[1]*root"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "treeoflife.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )


def _release(root: Path) -> dict[str, bytes]:
    release = root / "release"
    return {
        str(p.relative_to(release)): p.read_bytes()
        for p in release.rglob("*")
        if p.is_file() and p.name != "summary.json" and "report" not in p.parts
    }


def test_the_sample_builds_and_verifies_in_a_root_with_glob_and_query_characters(tmp_path):
    plain, odd = tmp_path / "plain", tmp_path / ODD
    for root in (plain, odd):
        assert _cli("sample", "--data-root", str(root)).returncode == 0
        done = _cli("build", "-q", "--data-root", str(root))
        assert done.returncode == 0, done.stderr[-3000:]
        checked = _cli("verify", "-q", "--data-root", str(root))
        assert checked.returncode == 0, checked.stdout + checked.stderr
    assert _release(odd) == _release(plain)
    assert not [p for p in tmp_path.iterdir() if ".wal" in p.name], "a log outside the root"
    again = _cli("build", "-q", "--data-root", str(odd))  # and it is up to date
    assert again.returncode == 0 and "taxonomy         up to date" in again.stdout


def test_a_duckdb_database_under_a_query_character_is_written_and_reopened(tmp_path):
    db = tmp_path / "a?b" / "x.duckdb"
    db.parent.mkdir()
    for value in (1, 2):
        with duckdb_writable(db) as path, duckdb.connect(path) as con:
            con.execute("CREATE TABLE IF NOT EXISTS t (v INTEGER)")
            con.execute("INSERT INTO t VALUES (?)", [value])
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT v FROM t ORDER BY v").fetchall() == [(1,), (2,)]
    assert sorted(p.name for p in db.parent.iterdir()) == ["x.duckdb"]


@pytest.mark.parametrize("pattern, expected", [("z/*.zip", ["a.zip", "b.zip"]), ("z/a.zip", None)])
def test_a_glob_setting_is_matched_under_the_root_literally(tmp_path, pattern, expected):
    root = tmp_path / "r[1]?"
    (root / "z").mkdir(parents=True)
    for name in ("a.zip", "b.zip"):
        (root / "z" / name).write_bytes(b"")
    found = glob_under(root, pattern)
    assert (None if found is None else [p.name for p in found]) == expected
    cfg = config_from_dict(
        {"data_root": str(root), "sources": {"bioscan": {"metadata": "z/a.zip", "zips": [pattern]}}}
    )
    assert input_problems(cfg) == []
