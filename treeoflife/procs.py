"""Child processes that die with the process that started them.

A build killed with SIGKILL runs no cleanup, so its worker processes would live on as orphans
(decode workers, hashing and shard encoders, the forkserver's children), holding memory and
sometimes writing. Every process pool the library starts comes from `process_pool`: each
worker first starts a watcher thread on a pidfd of the starting process and exits the moment
that process is gone, however it ended. (The forkserver itself already exits when its last
client is gone.) A pidfd is used rather than `prctl(PR_SET_PDEATHSIG)` because the death
signal follows the *thread* that forked the worker, and pools here are created and grown from
short-lived threads. A subprocess that runs code we do not control (open_clip training) gets
`PR_SET_PDEATHSIG` from `die_with_parent_preexec` instead; the thread that starts it waits
for it, so the thread caveat does not apply there.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

POLL_S = 0.5  # where pidfds are missing: how often a worker checks that its starter lives
_PR_SET_PDEATHSIG = 1

# Loaded now, not in a forked child (a child of a threaded parent must not load libraries).
_LIBC = (
    ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if sys.platform.startswith("linux")
    else None
)


def process_pool(
    workers: int,
    method: str = "spawn",
    initializer: Callable | None = None,
    initargs: tuple = (),
) -> ProcessPoolExecutor:
    """A ProcessPoolExecutor of `workers` processes started by `method` (spawn or forkserver:
    never fork a threaded parent) whose workers exit when this process dies."""
    ctx = multiprocessing.get_context(method)
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=ctx,
        initializer=_start_worker,
        initargs=(os.getpid(), initializer, initargs),
    )


def _start_worker(starter: int, initializer: Callable | None, initargs: tuple) -> None:
    """Pool initializer: watch the starting process, then run the caller's initializer."""
    watch_process(starter)
    if initializer is not None:
        initializer(*initargs)


def watch_process(pid: int, on_exit: Callable[[], None] | None = None) -> threading.Thread | None:
    """Run `on_exit` (default: end this process at once) when process `pid` ends.

    Returns the daemon watcher thread, or None when `pid` is already gone (then `on_exit` has
    run). `pid` must be alive when this is called (a pool's starter is: it is waiting for
    its worker to start).
    """
    action = on_exit or _exit_now
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        action()
        return None
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): poll instead
        fd = None
    thread = threading.Thread(
        target=_wait_for_exit, args=(pid, fd, action), name=f"watch-{pid}", daemon=True
    )
    thread.start()
    return thread


def _wait_for_exit(pid: int, fd: int | None, action: Callable[[], None]) -> None:
    if fd is not None:
        select.select([fd], [], [])  # readable once the process has ended
        with contextlib.suppress(OSError):
            os.close(fd)
    else:
        while process_alive(pid):
            time.sleep(POLL_S)
    action()


def _exit_now() -> None:
    os._exit(1)  # the starter is gone: nobody waits for our results, run no cleanup


def process_alive(pid: int | None) -> bool:
    """Whether a process `pid` runs on this machine (another user's counts as running)."""
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return _is_process(pid)


def _is_process(pid: int) -> bool:
    """On Linux, kill(2) also accepts a thread id of another process: a number that names a
    thread is no process (a temporary named by such a pid has a dead writer)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("Tgid:"):
                    return int(line.split()[1]) == pid
    except (OSError, ValueError):
        pass
    return True  # no /proc: trust kill(2)


def die_with_parent_preexec() -> None:
    """`preexec_fn` for subprocess.Popen: the child gets SIGKILL when its parent dies (Linux;
    elsewhere nothing). Keep the starting thread alive while the child runs."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() == 1:  # the parent died before the signal was armed
            os._exit(1)
