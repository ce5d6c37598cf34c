"""Children die with the main process (issue 15: `kill -9` of a build left the forkserver and
the decode workers orphaned).

Every process a test starts carries a marker in its environment, which every descendant
inherits; after the SIGKILL, /proc is searched for that marker, so a worker started a moment
before the kill is found as surely as one listed before it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from treeoflife import procs

REPO = Path(__file__).resolve().parents[1]
MARK = "TREEOFLIFE_TEST_PROCS_MARK"
GONE_WITHIN_S = 10.0

POOLS = """
import os, sys, time
from treeoflife.procs import process_pool

if __name__ == "__main__":
    pools = [process_pool(2, "spawn"), process_pool(2, "forkserver")]
    pids = set()
    for pool in pools:
        pids |= {f.result() for f in [pool.submit(os.getpid) for _ in range(8)]}
    print(" ".join(map(str, sorted(pids))), flush=True)
    time.sleep(600)
"""


def marked(mark: str) -> list[int]:
    """Processes (other than this one) whose environment carries `mark`."""
    needle = f"{MARK}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in environ.split(b"\0") and state != "Z":  # a zombie has ended
            found.append(int(entry.name))
    return found


def wait_until_gone(mark: str, within: float = GONE_WITHIN_S) -> list[int]:
    deadline = time.monotonic() + within
    while (left := marked(mark)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _env(mark: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), MARK: mark}


pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")


def test_pool_workers_of_both_start_methods_exit_when_their_starter_is_killed(tmp_path):
    mark = uuid.uuid4().hex
    script = tmp_path / "pools.py"
    script.write_text(POOLS)
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=_env(mark)
    )
    workers = [int(p) for p in proc.stdout.readline().split()]
    assert len(workers) >= 2
    alive = marked(mark)
    assert set(workers) <= set(alive)  # the marker search sees them
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert wait_until_gone(mark) == []


def test_watch_process_runs_its_action_when_the_process_ends():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    ended = []
    thread = procs.watch_process(child.pid, on_exit=lambda: ended.append(True))
    time.sleep(0.3)
    assert not ended
    child.kill()
    child.wait()
    thread.join(5)
    assert ended == [True]
    # a process already gone: the action runs at once
    again = []
    assert procs.watch_process(child.pid, on_exit=lambda: again.append(True)) is None
    assert again == [True]


def test_a_subprocess_with_the_preexec_dies_with_its_parent(tmp_path):
    mark = uuid.uuid4().hex
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from treeoflife.procs import die_with_parent_preexec\n"
            "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
            " preexec_fn=die_with_parent_preexec)\n"
            "print(c.pid, flush=True)\n"
            "time.sleep(600)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(mark),
    )
    child = int(parent.stdout.readline())
    assert child in marked(mark)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert wait_until_gone(mark) == []


def _pool_config(tmp_path: Path) -> Path:
    """The sample with every pool switched on (EOL download processes, decode, hash and shard
    workers), so a kill mid-build finds workers running."""
    data = yaml.safe_load((REPO / "configs" / "sample.yaml").read_text())
    data["sources"]["eol"].update({"processes": 2, "decode_workers": 2})
    data["dedup"]["hash_workers"] = 2
    data["shards"]["workers"] = 2
    path = tmp_path / "pools.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_killing_a_build_mid_stage_leaves_no_worker_behind(tmp_path):
    config, root = _pool_config(tmp_path), tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    base = [sys.executable, "-m", "treeoflife.cli"]
    sample = [*base, "sample", "--config", str(config), "--data-root", str(root)]
    subprocess.run(sample, cwd=REPO, env=env, check=True, capture_output=True, timeout=300)
    rng = random.Random(15)
    kills = 0
    for _trial in range(4):
        mark = uuid.uuid4().hex
        build = subprocess.Popen(
            [*base, "build", "-q", "--config", str(config), "--data-root", str(root)],
            cwd=REPO,
            env=_env(mark),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # wait for workers (descendants other than the build), then a little more
        deadline = time.monotonic() + 120
        while build.poll() is None and time.monotonic() < deadline:
            if len([p for p in marked(mark) if p != build.pid]) >= 2:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 1.0))
        if build.poll() is None:
            kills += 1
            build.send_signal(signal.SIGKILL)
        build.wait()
        assert wait_until_gone(mark) == [], "a worker outlived the killed build"
    assert kills >= 2, "the build finished before it could be killed: no test"
    # and the build still finishes afterwards
    done = subprocess.run(
        [*base, "build", "-q", "--config", str(config), "--data-root", str(root)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr


def test_a_thread_id_of_another_process_is_no_live_writer():
    """kill(2) accepts thread ids: a temporary named `.x.<tid>.tmp` by chance (pid 99 is a
    thread of init on some machines) must still be swept."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, threading\n"
            "t = threading.Thread(target=sys.stdin.read, daemon=True); t.start()\n"
            "print(t.native_id, flush=True); t.join()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        tid = int(child.stdout.readline())
        assert tid != child.pid
        assert procs.process_alive(child.pid)
        assert not procs.process_alive(tid)
    finally:
        child.kill()
        child.wait()
