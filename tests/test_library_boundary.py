"""The library ships library code only: test doubles live in tests/support, study and benchmark
helpers in bench/, and nothing under treeoflife/ imports either (the wheel has neither)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

LIBRARY = REPO / "treeoflife"
NOT_LIBRARY = ("tests", "bench")


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_library_imports_no_test_or_bench_code():
    offenders = {}
    for path in sorted(LIBRARY.rglob("*.py")):
        bad = {m for m in _imported_modules(path) if m.split(".")[0] in NOT_LIBRARY}
        if bad:
            offenders[str(path.relative_to(REPO))] = sorted(bad)
    assert not offenders, f"library modules importing tests/ or bench/: {offenders}"


def test_test_doubles_and_study_code_live_outside_the_library():
    assert not (LIBRARY / "testing").exists()
    for moved in ("dedup/study.py", "dedup/photos.py", "evaluation/crosscheck.py"):
        assert not (LIBRARY / moved).exists(), moved
    support = REPO / "tests" / "support"
    for double in ("mirror_server.py", "api_replay.py", "s3_server.py", "fanout.py"):
        assert (support / double).is_file(), double
    assert (REPO / "bench" / "_study.py").is_file() and (REPO / "bench" / "_photos.py").is_file()


def test_the_scan_sees_an_import_of_tests(tmp_path):
    """The scan would catch what it guards against (a plain and a from-import)."""
    probe = tmp_path / "probe.py"
    probe.write_text("import tests.support.fanout\nfrom bench._photos import x\nfrom . import y\n")
    assert _imported_modules(probe) == {"tests.support.fanout", "bench._photos"}
