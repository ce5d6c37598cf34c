"""One build per data root (issue 15): real processes contend for a real flock.

Two builds on one data root used to race (16 of 22 trials ended with an opaque
`No such file or directory: .../.shard-000001.tar.<pid>.tmp`); now the second one waits,
saying for whom, or with `--no-wait` exits 2 naming the holder's pid.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from treeoflife import lock
from treeoflife.errors import OutputError
from treeoflife.io import atomic_path, remove_stale_temporaries, temporary_name, writer_alive

REPO = Path(__file__).resolve().parents[1]

# A process that takes the lock, says so on stdout, and holds it until its stdin closes.
HOLD = """
import sys
from treeoflife import lock
from treeoflife.errors import OutputError
held = lock.acquire(sys.argv[1], "test holder", on_wait=lambda m: print(m, flush=True))
print("held", flush=True)
sys.stdin.read()
held.release()
print("released", flush=True)
"""


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _holder(root: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    return proc


def _read_line(proc: subprocess.Popen) -> str:
    assert proc.stdout is not None
    return proc.stdout.readline().strip()


@pytest.fixture
def held(tmp_path):
    root = tmp_path / "data"
    proc = _holder(root)
    assert _read_line(proc) == "held"
    yield root, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_the_lock_file_names_its_holder(held):
    root, proc = held
    holder = lock.read_holder(lock.lock_path(root))
    assert holder is not None and holder.pid == proc.pid and holder.command == "test holder"


def test_a_second_process_waits_then_takes_the_lock(held):
    root, first = held
    second = _holder(root)
    try:
        assert _read_line(second) == f"waiting for build pid {first.pid} on {root}"
        time.sleep(0.5)
        assert second.poll() is None  # still waiting
        first.stdin.close()
        assert _read_line(first) == "released"
        assert _read_line(second) == "held"
        assert lock.read_holder(lock.lock_path(root)).pid == second.pid
    finally:
        second.kill()
        second.wait()


def test_a_killed_holder_frees_the_lock(held):
    root, first = held
    first.send_signal(signal.SIGKILL)
    first.wait()
    taken = lock.acquire(root, "after a kill", wait=False)  # no stale lock
    try:
        assert lock.read_holder(taken.path).pid == os.getpid()
    finally:
        taken.release()
    assert lock.read_holder(taken.path) is None  # released: nobody named


def test_no_wait_in_this_process_names_the_holder(held):
    root, first = held
    with pytest.raises(lock.BuildLocked, match=f"pid {first.pid}") as err:
        lock.acquire(root, "second", wait=False)
    assert err.value.holder.pid == first.pid


@pytest.mark.parametrize("command", ["build", "sample"])
def test_cli_no_wait_exits_2_naming_the_holder(held, command):
    root, first = held
    done = subprocess.run(
        [sys.executable, "-m", "treeoflife.cli", command, "--no-wait", "--data-root", str(root)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=_env(),
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert f"pid {first.pid}" in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1  # one line
    assert sorted(p.name for p in root.iterdir()) == ["state"], "work started"


def test_cli_build_waits_saying_for_whom(held):
    root, first = held
    waiting = subprocess.Popen(
        [sys.executable, "-m", "treeoflife.cli", "build", "-q", "--data-root", str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=_env(),
    )
    try:
        assert waiting.stderr.readline().strip() == f"waiting for build pid {first.pid} on {root}"
        time.sleep(0.5)
        assert waiting.poll() is None
        assert sorted(p.name for p in root.iterdir()) == ["state"], "work started"
    finally:
        waiting.kill()
        waiting.wait()


def test_a_symlinked_root_is_the_same_lock(held, tmp_path):
    root, first = held
    link = tmp_path / "link"
    link.symlink_to(root)
    with pytest.raises(lock.BuildLocked, match=f"pid {first.pid}"):
        lock.acquire(link, "through a link", wait=False)


def test_temporaries_of_a_live_writer_in_another_process_are_kept(tmp_path):
    """The sweep removes a dead writer's temporaries only (the pid is in the name)."""
    live = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead_pid = int(dead.stdout)
    try:
        final = tmp_path / "shards" / "shard-000001.tar"
        final.parent.mkdir()
        theirs = final.with_name(f".{final.name}.{live.pid}.tmp")
        gone = final.with_name(f".{final.name}.{dead_pid}.tmp")
        for p in (theirs, gone):
            p.write_bytes(b"x")
        assert writer_alive(live.pid) and writer_alive(os.getpid())
        assert not writer_alive(dead_pid)
        with atomic_path(final) as ours:  # ours, being written
            ours.write_bytes(b"x")
            assert ours == temporary_name(final)
            assert remove_stale_temporaries(tmp_path) == 1
            assert ours.exists() and theirs.exists() and not gone.exists()
        assert final.read_bytes() == b"x"
    finally:
        live.kill()
        live.wait()
    assert remove_stale_temporaries(tmp_path) == 1  # now its writer is dead too
    assert not theirs.exists()


def test_the_holder_record_is_json(held):
    root, first = held
    record = json.loads(lock.lock_path(root).read_text())
    assert record["pid"] == first.pid and record["since"].endswith("Z")


def test_a_read_only_data_root_is_one_line_naming_the_lock(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(OutputError, match="build.lock"):
            lock.acquire(root, "read-only")
    finally:
        root.chmod(0o755)
