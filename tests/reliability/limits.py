"""Real kernel limits for disk-error tests: a small tmpfs, a read-only mount, RLIMIT_FSIZE.

We run as root in CI and here, so chmod does not stop a write; a tmpfs mounted over an output
folder gives a real ENOSPC (and, remounted read-only, EROFS). Where mounting is refused, a
file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) gives a real EFBIG for any file grown past it,
and a non-root user gets EACCES from a folder without write permission.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path


def _mount(*args: str) -> bool:
    try:
        done = subprocess.run(["mount", *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _umount(folder: Path) -> None:
    subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


def can_mount(probe: Path) -> bool:
    """Whether this process may mount a tmpfs (root outside a locked-down container).

    TREEOFLIFE_TEST_NO_MOUNT=1 answers no, to exercise the fallbacks where mounting works."""
    if os.environ.get("TREEOFLIFE_TEST_NO_MOUNT") == "1":
        return False
    probe.mkdir(parents=True, exist_ok=True)
    if not _mount("-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)):
        return False
    _umount(probe)
    return True


class SmallDisk:
    """A tmpfs of `size` bytes mounted on `folder` (which must be empty); `grow()` frees space."""

    def __init__(self, folder: Path, size: int):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            raise ValueError(f"{folder} is not empty")
        if not _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)):
            raise OSError(f"cannot mount a tmpfs on {folder}")

    def grow(self, size: int) -> None:
        if not _mount("-o", f"remount,size={size}", str(self.folder)):
            raise OSError(f"cannot remount {self.folder}")

    def read_only(self, flag: bool) -> None:
        if not _mount("-o", "remount," + ("ro" if flag else "rw"), str(self.folder)):
            raise OSError(f"cannot remount {self.folder}")

    def copy_out(self, to: Path) -> None:
        subprocess.run(["cp", "-a", f"{self.folder}/.", str(to)], check=True)

    def close(self) -> None:
        _umount(self.folder)

    def __enter__(self) -> SmallDisk:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def file_size_limit(nbytes: int):
    """A preexec_fn for subprocess: files may not grow past `nbytes` (EFBIG, not SIGXFSZ)."""

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(
            resource.RLIMIT_FSIZE, (nbytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1])
        )

    return apply


@contextlib.contextmanager
def file_size_limit_here(nbytes: int) -> Iterator[None]:
    """The same limit on this process for a moment (only the soft limit changes: restorable)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)


def is_root() -> bool:
    return os.geteuid() == 0
