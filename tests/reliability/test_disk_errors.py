"""Disk full and permission errors while writing ingest parts and release shards.

Real kernel errors only (see limits.py): a small tmpfs over the output folder (ENOSPC), the same
tmpfs remounted read-only (EROFS), or where mounting is refused RLIMIT_FSIZE (EFBIG) and, for a
non-root user, a folder without write permission (EACCES). Each case checks the user gets one
line naming the path (CLI exit != 0, no traceback), nothing partial is left, and the rerun after
the disk is fixed writes the same bytes as a build that never failed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.shards.conftest import make_rows
from treeoflife.errors import OutputError
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.writer import write_split_shards

from .limits import SmallDisk, can_mount, file_size_limit, file_size_limit_here, is_root

pytestmark = pytest.mark.slow

SAMPLE_CONFIG = REPO / "configs" / "sample.yaml"
NO_SPACE = ("No space left on device", "File too large")


def cli(root: Path, *stages: str, preexec=None) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "treeoflife.cli", "build", "--config", str(SAMPLE_CONFIG)]
    args += ["--data-root", str(root), "--quiet"]
    for stage in stages:
        args += ["--stage", stage]
    return subprocess.run(
        args, cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=preexec
    )


def outputs(root: Path, *subs: str) -> dict[str, bytes]:
    """Relative path -> bytes of the reproducible outputs (EOL status tables hold timings)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for sub in subs
        for p in sorted((root / sub).rglob("*"))
        if p.is_file() and not p.name.endswith(".status.parquet")
    }


def temporaries(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if ".tmp" in p.name)


def assert_complete_tar(path: Path) -> None:
    """A tar under its final name holds whole members and the end-of-archive blocks."""
    data = path.read_bytes()
    assert len(data) % 512 == 0 and data[-1024:] == b"\0" * 1024, path
    with tarfile.open(path) as tar:
        for member in tar:
            assert len(tar.extractfile(member).read()) == member.size, (path, member.name)


def one_line_error(done: subprocess.CompletedProcess, path_part: Path, *messages: str) -> str:
    assert done.returncode != 0
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert str(path_part) in lines[0] and any(m in lines[0] for m in messages), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def mounts(tmp_path_factory) -> bool:
    return can_mount(tmp_path_factory.mktemp("probe") / "mnt")


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A data root with the bundled sample generated, and the ingest outputs of a clean run."""
    base = tmp_path_factory.mktemp("disk")
    root = base / "sample"
    done = cli(root, "sample")
    assert done.returncode == 0, done.stderr
    reference = base / "reference"
    shutil.copytree(root, reference)
    done = cli(reference, "ingest")
    assert done.returncode == 0, done.stderr
    return root, outputs(reference, "images", "catalog")


def test_ingest_disk_full_then_rerun_gives_the_same_bytes(sample, mounts, tmp_path):
    source, reference = sample
    root = tmp_path / "root"
    shutil.copytree(source, root)
    disk = SmallDisk(root / "images", 1 << 20) if mounts else None
    try:
        limit = None if mounts else file_size_limit(300_000)
        failed = cli(root, "ingest", preexec=limit)
        one_line_error(failed, root / "images", *NO_SPACE)
        assert temporaries(root) == []
        tars = sorted((root / "images").rglob("*.tar"))
        for tar in tars:
            assert_complete_tar(tar)
        if disk is not None:
            disk.grow(64 << 20)
        done = cli(root, "ingest")
        assert done.returncode == 0, done.stderr
        assert outputs(root, "images", "catalog") == reference
        assert temporaries(root) == []
    finally:
        if disk is not None:
            disk.close()


def test_ingest_read_only_then_rerun_gives_the_same_bytes(sample, mounts, tmp_path):
    source, reference = sample
    root = tmp_path / "root"
    shutil.copytree(source, root)
    images = root / "images"
    if mounts:
        disk = SmallDisk(images, 64 << 20)
    elif not is_root():
        disk = None
        images.mkdir()
        images.chmod(0o555)
    else:
        pytest.skip("running as root and mounting is refused: no permission error to provoke")
    try:
        if disk is not None:
            disk.read_only(True)
        failed = cli(root, "ingest")
        one_line_error(failed, images, "Read-only file system", "Permission denied")
        assert temporaries(root) == [] and not list(images.rglob("*.tar"))
        if disk is not None:
            disk.read_only(False)
        else:
            images.chmod(0o755)
        done = cli(root, "ingest")
        assert done.returncode == 0, done.stderr
        assert outputs(root, "images", "catalog") == reference
    finally:
        if disk is not None:
            disk.close()


SHARD_SETTINGS = ShardSettings(
    image_size=64, jpeg_quality=90, text_type="taxon_com", seed=0, samples_per_shard=4
)


def shard_outputs(split_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(split_dir.iterdir()) if p.is_file()}


@pytest.fixture
def shard_rows(tmp_path):
    data_root = tmp_path / "data"
    data_root.mkdir()
    rows = make_rows(data_root, 24)
    reference = tmp_path / "reference" / "train"
    write_split_shards(rows, reference, SHARD_SETTINGS, data_root=data_root)
    return rows, data_root, shard_outputs(reference)


def write_train(rows, out: Path, data_root: Path):
    return write_split_shards(rows, out / "train", SHARD_SETTINGS, data_root=data_root)


@pytest.mark.parametrize("fault", ["disk_full", "read_only"])
def test_shards_disk_error_leaves_nothing_partial_and_rerun_completes(
    shard_rows, mounts, tmp_path, fault
):
    rows, data_root, reference = shard_rows
    out = tmp_path / "out"
    if not mounts and fault == "read_only":
        pytest.skip("mounting is refused: a read-only folder cannot be made here")
    disk = SmallDisk(out, 48 << 10) if mounts else None
    try:
        if disk is None:
            with pytest.raises(OSError), file_size_limit_here(20_000):
                write_train(rows, out, data_root)
        else:
            if fault == "read_only":
                (out / "train").mkdir()
                disk.read_only(True)
            with pytest.raises((OSError, OutputError)) as info:
                write_train(rows, out, data_root)
            words = ("No space left on device", "Read-only file system")
            assert any(w in str(info.value) for w in words), repr(info.value)
        assert temporaries(out) == []
        written = shard_outputs(out / "train") if (out / "train").exists() else {}
        for name, data in written.items():
            if name.startswith("shard-"):
                assert data == reference[name], f"{name} is not complete"  # whole or absent
        assert "sizes.json" not in written
        if disk is not None:
            disk.read_only(False)
            disk.grow(64 << 20)
        write_train(rows, out, data_root)
        assert shard_outputs(out / "train") == reference
        assert temporaries(out) == []
    finally:
        if disk is not None:
            disk.close()


def test_shards_disk_full_error_names_the_shard(shard_rows, mounts, tmp_path):
    rows, data_root, _ = shard_rows
    out = tmp_path / "out"
    if not mounts:
        pytest.skip("mounting is refused")
    with SmallDisk(out, 48 << 10):
        with pytest.raises((OutputError, OSError)) as info:
            write_train(rows, out, data_root)
        assert "No space left on device" in str(info.value)
        assert str(out / "train") in str(info.value)  # the shard, or at least its folder
