"""Nothing in the project reads outside its own tree, so a clone anywhere passes its tests.

Two checks. Statically, every path expression of the project's Python code that climbs from
its file (`Path(__file__).parents[k]`, `.parent`, `/ ".."`, `os.path.dirname`, names bound to
those) must stay inside the repository, and config files name no `../` path: what caught the
old `REPO.parent / "shared" / "fixtures"` reads. At run time, a copy of the repository alone
builds the sample and runs the tests that read real fixtures, with every path each Python
process opens or lists recorded (tests/support/open_audit): all must be in the copy or in the
interpreter and system folders.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath

from tests.conftest import REPO

PATH_CALLS = {"Path", "PurePath", "PosixPath"}
SAME_LEVEL = {"resolve", "absolute", "expanduser"}
CONFIG_SUFFIXES = {".yaml", ".yml", ".toml", ".cfg", ".ini"}
COPY_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".pytest_cache", ".ruff_cache", "*.egg-info", ".tmp"
)


def project_files() -> list[Path]:
    """The repository's files (git's list when it is a checkout, else a walk)."""
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=True
        ).stdout
        return [REPO / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", ".venv", "data", "__pycache__"}
        return [
            p for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)
        ]


def _segments_up(text: str) -> tuple[int, int]:
    """(net, highest) levels a relative path string climbs: `../x` (0, 1), `a/b` (-2, 0)."""
    level = peak = 0
    for part in PurePosixPath(text).parts:
        if part == "..":
            level += 1
        elif part not in (".", "/"):
            level -= 1
        peak = max(peak, level)
    return level, peak


class _Climb(ast.NodeVisitor):
    """Levels above its file (0: the file, 1: its folder, ...) of each path expression."""

    def __init__(self, depth: int):
        self.escape_level = depth + 2  # the file's folder is 1, the repository root depth + 1
        self.names: dict[str, int] = {}
        self.escapes: list[tuple[int, str]] = []

    def level(self, node) -> int | None:
        if isinstance(node, ast.Name):
            return 0 if node.id == "__file__" else self.names.get(node.id)
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in PATH_CALLS | {"abspath", "realpath"} and node.args:
                return self.level(node.args[0])
            if name in SAME_LEVEL and isinstance(func, ast.Attribute):
                return self.level(func.value)
            if name == "dirname" and node.args:
                base = self.level(node.args[0])
                return None if base is None else base + 1
            if name == "join" and node.args:
                base = self.level(node.args[0])
                for arg in node.args[1:]:
                    if base is not None and isinstance(arg, ast.Constant):
                        base = self._climb(node, base, str(arg.value))
                return base
        if isinstance(node, ast.Attribute) and node.attr == "parent":
            base = self.level(node.value)
            return None if base is None else base + 1
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Attribute)
            and node.value.attr == "parents"
            and isinstance(node.slice, ast.Constant)
        ):
            base = self.level(node.value.value)
            return None if base is None else base + 1 + int(node.slice.value)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            base = self.level(node.left)
            if base is not None and isinstance(node.right, ast.Constant):
                return self._climb(node, base, str(node.right.value))
            return base
        return None

    def _climb(self, node, base: int, text: str) -> int:
        net, peak = _segments_up(text)
        if peak > 0 and base + peak >= self.escape_level:  # `..` past the root, even if back down
            self._report(node)
        return base + net

    def _report(self, node) -> None:
        hit = (node.lineno, ast.unparse(node))
        if hit not in self.escapes:
            self.escapes.append(hit)

    def generic_visit(self, node):
        if isinstance(node, ast.expr):
            level = self.level(node)
            if level is not None and level >= self.escape_level:
                self._report(node)
                return  # one report per expression
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            level = self.level(node.value)
            if isinstance(node.targets[0], ast.Name) and level is not None:
                self.names[node.targets[0].id] = level
        super().generic_visit(node)


def climbs_out(relative: str, source: str) -> list[tuple[int, str]]:
    """(line, expression) of each path expression in `source`, a file at `relative` in the
    repository, that points outside the repository."""
    visitor = _Climb(depth=len(PurePosixPath(relative).parts) - 1)
    visitor.visit(ast.parse(source))
    return visitor.escapes


def test_the_scan_catches_the_old_fixture_reads():
    # tests/conftest.py and tests/taxonomy/conftest.py before the fixtures moved in
    old_conftest = (
        "from pathlib import Path\n"
        "REPO = Path(__file__).resolve().parents[1]\n"
        'SHARED_REAL = REPO.parent / "shared" / "fixtures" / "real"\n'
    )
    assert [line for line, _ in climbs_out("tests/conftest.py", old_conftest)] == [3]
    old_taxonomy = (
        "REAL_ARCHAEA = (\n"
        '    Path(__file__).resolve().parents[2].parent / "shared/fixtures/real/gbif"\n'
        ")\n"
    )
    assert climbs_out("tests/taxonomy/conftest.py", old_taxonomy)
    assert climbs_out("bench/x.py", 'open(os.path.join(os.path.dirname(__file__), "../.."))')
    # what the project does today stays inside
    fine = 'ROOT = Path(__file__).resolve().parents[2]\nNOTEBOOK = ROOT / "notebooks" / "x.py"\n'
    assert climbs_out("tests/release/test_x.py", fine) == []
    assert climbs_out("bench/x.py", "ROOT = Path(__file__).resolve().parent.parent") == []


def test_no_project_code_or_config_points_outside_the_repository():
    found = []
    for path in project_files():
        relative = path.relative_to(REPO).as_posix()
        if relative.startswith("tests/fixtures/"):
            continue  # third-party data, never read as code
        if path.suffix == ".py":
            found += [(relative, *hit) for hit in climbs_out(relative, path.read_text("utf-8"))]
        elif path.suffix in CONFIG_SUFFIXES or path.name == "Makefile":
            for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
                if "../" in line.split("#", 1)[0]:
                    found.append((relative, number, line.strip()))
    assert found == []


def _allowed_roots(copy: Path) -> list[str]:
    roots = {copy, Path(sys.prefix), Path(sys.base_prefix), Path(sys.exec_prefix)}
    roots |= {r.resolve() for r in roots}
    return [str(r) for r in roots] + ["/dev", "/proc", "/sys", "/etc", "/usr", "/lib"]


def test_a_copy_of_the_repository_alone_builds_the_sample_and_reads_its_fixtures():
    # A short path: multiprocessing's forkserver socket lives in TMPDIR (108 bytes at most).
    with tempfile.TemporaryDirectory(prefix="tol-") as scratch:
        _build_and_test_in_a_copy(Path(scratch))


def _build_and_test_in_a_copy(scratch: Path) -> None:
    copy = scratch / "repo"
    shutil.copytree(REPO, copy, ignore=COPY_IGNORE)
    shutil.rmtree(copy / "data", ignore_errors=True)
    (copy / ".tmp").mkdir()
    log = scratch / "opened.txt"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(copy), str(copy / "tests/support/open_audit")]),
        "TREEOFLIFE_OPEN_LOG": str(log),
        "TMPDIR": str(copy / ".tmp"),  # temporary files too stay in the tree
        "PREFECT_HOME": str(copy / ".tmp" / "prefect"),
    }
    env.pop("CROISSANT_CACHE", None)
    commands = [
        [sys.executable, "-m", "treeoflife.cli", "build", "-c", "configs/sample.yaml", "-q"],
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/taxonomy/test_taxonomy_itis_api.py",
            "tests/evalsets/test_layouts.py",
        ],
    ]
    for command in commands:
        proc = subprocess.run(
            command, cwd=copy, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, (command, proc.stdout[-2000:], proc.stderr[-2000:])
    opened = log.read_text("utf-8").splitlines()
    # the recording worked: the build's inputs and the tests' real fixtures were read here
    assert str(copy / "treeoflife/sample/data/gbif-backbone-archaea/Taxon.tsv") in opened
    assert any(p.startswith(str(copy / "tests/fixtures/real/itis-api")) for p in opened)
    roots = _allowed_roots(copy)
    outside = [p for p in opened if not any(p == r or p.startswith(r + os.sep) for r in roots)]
    assert outside == []
