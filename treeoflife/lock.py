"""One build per data root: an OS lock on `<data_root>/state/build.lock`.

Two builds writing one data root race on every output (each sweeps, replaces and re-parts what
the other is writing), so a build, a sample generation or a training run holds an exclusive
`flock` on the root's lock file for its whole run. The kernel drops the lock when the holder
ends, however it ends (SIGKILL included), so a stale lock never blocks anyone; the file keeps
the holder's pid and command only so that a second run can say whom it waits for. A second run
waits (saying so once), or with `wait=False` stops at once with `BuildLocked` naming the
holder. The lock is advisory and local: builds on different machines sharing one data root
over a network file system are not serialised by it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from treeoflife.errors import TreeOfLifeError
from treeoflife.io import writing
from treeoflife.layout import Layout

LOCK_NAME = "build.lock"
HOLDER_WAIT_S = 2.0  # how long to wait for a new holder to write its pid into the lock file


class BuildLocked(TreeOfLifeError):
    """Another process holds the data root's build lock (and we were told not to wait)."""

    def __init__(self, message: str, holder: Holder | None):
        super().__init__(message)
        self.holder = holder


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a data root's lock, as its lock file says."""

    pid: int | None
    command: str = ""
    since: str = ""

    def describe(self) -> str:
        who = f"pid {self.pid}" if self.pid is not None else "an unknown pid"
        return f"{who} ({self.command})" if self.command else who


def lock_path(root: str | Path) -> Path:
    return Layout(Path(root)).state_dir / LOCK_NAME


def read_holder(path: str | Path) -> Holder | None:
    """The holder written in a lock file, or None (no file, empty, or not ours)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    pid = data.get("pid")
    return Holder(
        pid if isinstance(pid, int) else None,
        str(data.get("command", "")),
        str(data.get("since", "")),
    )


class BuildLock:
    """A held lock on a data root; `release()` (or leaving the `with` block) lets it go."""

    def __init__(self, root: Path, fd: int):
        self.root, self.path, self._fd = root, lock_path(root), fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no holder named while nobody holds it
        os.close(fd)  # drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> BuildLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(
    root: str | Path,
    command: str,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> BuildLock:
    """Take the build lock of data root `root` for `command` (words shown to a waiting run).

    When another process holds it: with `wait`, call `on_wait` once with
    `waiting for build pid N on <root>` and block until it is free; without, raise
    BuildLocked naming the holder's pid.
    """
    root = Path(root)
    path = lock_path(root)
    with writing(path):  # a read-only or full data root: one line naming the lock file
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _current_holder(path)
            who = holder.describe() if holder else "an unknown pid"
            if not wait:
                raise BuildLocked(
                    f"another build holds data root {root}: {who}; wait for it to end, or "
                    f"run without --no-wait to queue behind it",
                    holder,
                ) from None
            if on_wait is not None:
                pid = holder.pid if holder and holder.pid is not None else "?"
                on_wait(f"waiting for build pid {pid} on {root}")
            fcntl.flock(fd, fcntl.LOCK_EX)
        record = {
            "pid": os.getpid(),
            "command": command,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode("utf-8"), 0)
    except BaseException:
        os.close(fd)
        raise
    return BuildLock(root, fd)


def _current_holder(path: Path) -> Holder | None:
    """The holder's record; a holder that has just taken the lock writes it a moment later."""
    deadline = time.monotonic() + HOLDER_WAIT_S
    while True:
        holder = read_holder(path)
        if holder is not None or time.monotonic() > deadline:
            return holder
        time.sleep(0.02)
