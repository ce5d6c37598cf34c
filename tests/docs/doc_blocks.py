"""The fenced blocks of README.md and docs/, and running a page's blocks as a user would.

A page's shell blocks run in order in one bash session (`set -e`), in a fresh workspace: a
folder whose entries link to the repository's (so `configs/`, `flows/`, `prefect.yaml`,
`.venv/bin/...` work as written) with its own empty `data/`, so every relative data path lands
in the workspace. Python blocks run at their place in the session with the test's interpreter,
from the workspace. Nothing in a block is rewritten except the ports a `loopback` block names
(replaced by free ones, so parallel runs do not collide); PREFECT_HOME points into the
workspace unless a block sets its own; the test's own Prefect and telemetry settings are
removed from the environment, so a block must set what it needs.

Markers, an HTML comment on the line right before a block:

    <!-- doctest: skip: WHY -->       a shell or Python block that is not run (say why)
    <!-- doctest: excerpt: WHAT -->   not a program (a listing, a diagram)
    <!-- doctest: loopback: HOW -->   needs a server or a cluster: run as written on this
                                      machine, against local processes (ports replaced)

and, anywhere in a page, `<!-- doctest: page: after make shards -->`: the session starts with
`make shards` (the page assumes the sample is built). YAML blocks are config fragments, checked
with `config_from_dict` unless marked `excerpt`. Any other block must be marked.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHELL = ("bash", "sh", "shell")
MARKS = ("skip", "excerpt", "loopback")
_FENCE = re.compile(r"^(\s*)(`{3,})\s*([\w+-]*)\s*$")
_MARK = re.compile(r"^\s*<!--\s*doctest:\s*(\w+)(?::\s*(.*?))?\s*-->\s*$")
_PAGE = "<!-- doctest: page: after make shards -->"
_PORT_NOTE = re.compile(r"replaces? port[s]? ([\d, and]+) with")


def doc_pages() -> list[Path]:
    """README.md and every Markdown page under docs/."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    mark: str | None = None
    note: str = ""

    @property
    def where(self) -> str:
        page = self.page.relative_to(REPO) if self.page.is_relative_to(REPO) else self.page
        return f"{page}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in (*SHELL, "python") and self.mark not in ("skip", "excerpt")

    def ports(self) -> list[int]:
        """The ports a loopback block's marker says the test replaces."""
        m = _PORT_NOTE.search(self.note) if self.mark == "loopback" else None
        return [int(p) for p in re.findall(r"\d+", m.group(1))] if m else []


def blocks(page: Path) -> list[Block]:
    """Every fenced block of a Markdown page, with the marker right before it."""
    lines = page.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        j = i + 1
        while j < len(lines) and lines[j].strip() != fence:
            j += 1
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : j]]
        prev = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        mark = _MARK.match(prev)
        if mark and mark.group(1) == "page":  # the page's own marker, not this block's
            mark = None
        name, note = (mark.group(1), mark.group(2) or "") if mark else (None, "")
        out.append(Block(page, i + 1, lang.lower(), "\n".join(body) + "\n", name, note))
        i = j + 1
    return out


def after_make_shards(page: Path) -> bool:
    return _PAGE in page.read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_workspace(folder: Path) -> Path:
    """A folder that looks like a fresh clone with its venv installed (see the module doc)."""
    ws = folder / "workspace"
    ws.mkdir(parents=True)
    for entry in REPO.iterdir():
        if entry.name not in (".git", "data", ".venv"):
            (ws / entry.name).symlink_to(entry)
    (ws / "data").mkdir()
    venv = ws / ".venv"  # the test's environment, with a fresh stamp: make never reinstalls
    venv.mkdir()
    for entry in Path(sys.prefix).iterdir():
        if entry.name != ".installed":
            (venv / entry.name).symlink_to(entry)
    (venv / ".installed").touch()
    return ws


def block_env(folder: Path) -> dict[str, str]:
    """The environment of a user's shell: none of the test's Prefect or telemetry settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "PYTEST_")) and k != "DO_NOT_TRACK"
    }
    env["PREFECT_HOME"] = str(folder / "prefect-home")  # never the user's ~/.prefect
    env["HF_HUB_OFFLINE"] = "1"  # the sample trains offline (the Makefile sets it too)
    return env


@dataclass
class PageRun:
    page: Path
    workspace: Path
    ports: dict[int, int]  # documented port -> the free port used
    returncode: int
    output: str
    failed_block: str | None  # where the failing block starts, when one failed


def run_page(
    page: Path,
    folder: Path,
    timeout: float,
    while_running: Callable[[PageRun], None] | None = None,
) -> PageRun:
    """Run every runnable block of `page` in order in one session; `while_running` is called
    before the session's background processes (servers, workers) are stopped."""
    ws = make_workspace(folder)
    ports: dict[int, int] = {}
    script = ["set -e", f"cd {shlex.quote(str(ws))}"]
    if after_make_shards(page):
        script += ["echo '::doctest setup: make shards' >&2", "make shards >/dev/null"]
    for n, block in enumerate(b for b in blocks(page) if b.runs):
        script.append(f"echo '::doctest {block.where}' >&2")
        if block.lang == "python":
            path = folder / f"block-{n}.py"
            path.write_text(block.text)
            script.append(f"{shlex.quote(sys.executable)} {shlex.quote(str(path))}")
            continue
        text = block.text
        for port in block.ports():
            ports.setdefault(port, free_port())
            text = re.sub(rf"\b{port}\b", str(ports[port]), text)
        script.append(text)
    script.append("echo '::doctest end' >&2")
    (folder / "page.sh").write_text("\n".join(script) + "\n")
    log = folder / "page.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            ["bash", str(folder / "page.sh")],
            cwd=ws,
            env=block_env(folder),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            returncode = -1
        output = log.read_text(errors="replace")
        started = re.findall(r"^::doctest (.+)$", output, flags=re.M)
        failed = started[-1] if returncode != 0 and started else None
        result = PageRun(page, ws, ports, returncode, output, failed)
        if returncode == 0 and while_running is not None:
            while_running(result)
        return result
    finally:
        stop_session(proc.pid)


def stop_session(pgid: int, grace: float = 15.0) -> None:
    """Stop every process the page started (its session): SIGTERM, then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
