"""The heavy stages fanned out through Prefect task runners: threads (the default) and Dask.

The parent flow builds the sample on a Dask cluster (2 worker processes) and the outputs are
byte-identical to the threads build (`sample_build`); the mapper keeps input order, bounds what
is in flight and retries only what a retry can fix.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
from prefect import flow

from flows._common import PrefectPartMapper, task_runner
from tests.conftest import REPO
from treeoflife.config import ExecutionConfig
from treeoflife.errors import InputError
from treeoflife.fanout import local_processes
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.writer import write_split_shards

pytestmark = pytest.mark.slow

OUTPUTS = ("catalog", "images", "taxonomy", "hashes", "dedup", "release")


def _digest(root: Path) -> dict[str, str]:
    out = {}
    for sub in OUTPUTS:
        for p in sorted((root / sub).rglob("*")):
            # EOL's status tables hold wall-clock timings; DuckDB files are lookup stores.
            if p.is_file() and not p.name.endswith((".status.parquet", ".duckdb")):
                out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _where(item: int) -> tuple[int, int, bool, int]:
    """(item, pid, daemonic?, processes a part may start) of the process running the item."""
    return item, os.getpid(), multiprocessing.current_process().daemon, local_processes(4)


def _slow_square(item: int) -> int:
    time.sleep(0.02 * (6 - item % 6))  # earlier items finish later
    return item * item


def _attempt(path: str, error: type[Exception]) -> int:
    """Count the call in `path`; the first call fails with `error`."""
    p = Path(path)
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    if n == 1:
        raise error("first attempt fails")
    return n


def _flaky(path: str) -> int:
    return _attempt(path, OSError)


def _bad_input(path: str) -> int:
    return _attempt(path, InputError)


def _marked(markers: str, fn: Callable, item):
    """`fn(item)` after a start marker (shard, pid), a half-written shard's temporary (as a
    worker killed mid-write leaves) and a pause in which the test may kill this worker."""
    name = f".shard-{item.index:06d}.tar.{os.getpid()}.tmp"
    Path(item.job.split_dir, name).write_bytes(b"half a shard")
    Path(markers, f"start-{item.index}-{os.getpid()}").write_text("")
    time.sleep(1.0)
    return fn(item)


def test_task_runner_follows_the_config():
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    threads = task_runner(ExecutionConfig(max_workers=3))
    assert isinstance(threads, ThreadPoolTaskRunner) and threads._max_workers == 3
    local = task_runner(ExecutionConfig(task_runner="dask", dask_workers=3))
    assert isinstance(local, DaskTaskRunner) and local.address is None
    assert local.cluster_kwargs["n_workers"] == 3 and local.cluster_kwargs["processes"]
    remote = task_runner(ExecutionConfig(task_runner="dask", dask_address="tcp://h:8786"))
    assert remote.address == "tcp://h:8786" and not remote.cluster_kwargs


@flow
def _in_a_flow(check: Callable[[], None]) -> None:
    """Part tasks run inside a flow run, as in the build (their logs go to that run)."""
    check()


def test_thread_mapper_keeps_order_and_bounds_items_in_flight(prefect_harness):
    drawn: list[int] = []
    results: list[int] = []

    def items():
        for i in range(12):
            drawn.append(i)
            yield i

    def check():
        mapper = PrefectPartMapper(ExecutionConfig(max_workers=2))
        try:
            for result in mapper(_slow_square, items()):
                results.append(result)
                assert len(drawn) - len(results) <= 2 * 2  # never more than 2 x width ahead
        finally:
            mapper.close()

    _in_a_flow(check)
    assert results == [i * i for i in range(12)]


def test_parts_are_retried_unless_their_input_is_wrong(prefect_harness, tmp_path):
    def check():
        mapper = PrefectPartMapper(ExecutionConfig(max_workers=2))
        try:
            assert list(mapper(_flaky, [str(tmp_path / "flaky")])) == [2]
            with pytest.raises(InputError):
                list(mapper(_bad_input, [str(tmp_path / "bad")]))
        finally:
            mapper.close()

    _in_a_flow(check)
    assert (tmp_path / "bad").read_text() == "1"  # not retried: it would fail the same way


def test_a_temporary_local_cluster_runs_parts_in_worker_processes(prefect_harness):
    results: list[tuple] = []

    def check():
        mapper = PrefectPartMapper(ExecutionConfig(task_runner="dask", dask_workers=2))
        try:
            results.extend(mapper(_where, range(6)))
        finally:
            mapper.close()

    _in_a_flow(check)
    assert [r[0] for r in results] == list(range(6))
    assert os.getpid() not in {r[1] for r in results}
    # Dask's worker processes are daemonic: a part there encodes inline, never forks a pool.
    assert all(daemon and processes == 1 for _, _, daemon, processes in results)


def _build_on_a_local_cluster(sample_build, root: Path, settings: dict) -> dict:
    """The parent flow over the sample's inputs in `root`, on a 2-process Dask LocalCluster,
    with `settings` added to the sample config; the scheduler's task counts per prefix."""
    import yaml
    from distributed import Client, LocalCluster

    from flows.tree_of_life import tree_of_life

    root.mkdir()
    shutil.copytree(sample_build["root"] / "sample", root / "sample")  # the same inputs
    with LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        config = root.parent / f"{root.name}.yaml"
        execution = {"task_runner": "dask", "dask_address": cluster.scheduler_address}
        config.write_text(
            (REPO / "configs" / "sample.yaml").read_text()
            + yaml.safe_dump({"execution": execution, **settings})
        )
        tree_of_life(config_path=str(config), data_root=str(root))
        with Client(cluster) as client:
            return client.run_on_scheduler(
                lambda dask_scheduler: {
                    name: dict(prefix.state_counts)
                    for name, prefix in dask_scheduler.task_prefixes.items()
                }
            )


def _parts_of(built: Path) -> int:
    """Parts the build fans out: EOL's download parts, every catalog part's hashes, shards."""
    return (
        len(list((built / "catalog" / "eol").glob("part-*[0-9].parquet")))
        + len(list((built / "catalog").glob("*/part-*[0-9].parquet")))
        + len(list((built / "release" / "shards").glob("*/shard-*.tar")))
    )


def test_dask_build_is_byte_identical_to_the_threads_build(sample_build, tmp_path):
    root = tmp_path / "dask"
    done = _build_on_a_local_cluster(sample_build, root, {})
    # Every part ran there: EOL's download parts, every catalog part's hashes, every shard.
    assert done["run_part"]["memory"] == _parts_of(sample_build["root"]), done
    threads, dask = _digest(sample_build["root"]), _digest(root)
    assert any(k.endswith(".tar") and "/shards/" in k for k in threads)
    assert dask == threads
    leftovers = [p for p in root.rglob("*") if p.name == ".work" or p.name.endswith(".tmp")]
    assert not leftovers


def test_dask_build_through_object_storage_is_byte_identical(sample_build, tmp_path, s3_server):
    """Workers that share no disk with the flow: EOL parts, hash parts and shards travel
    through S3 (a loopback S3-compatible server, real HTTP), and the outputs do not change."""
    import uuid

    from treeoflife.storage import FsspecStorage

    root = tmp_path / "s3"
    prefix = f"build-{uuid.uuid4().hex[:8]}"
    storage = {"shared": s3_server.url(prefix), "options": s3_server.options}
    done = _build_on_a_local_cluster(sample_build, root, {"storage": storage})
    assert done["run_part"]["memory"] == _parts_of(sample_build["root"]), done
    threads, through_s3 = _digest(sample_build["root"]), _digest(root)
    assert through_s3 == threads
    leftovers = [p for p in root.rglob("*") if p.name == ".work" or p.name.endswith(".tmp")]
    assert not leftovers
    shared = FsspecStorage(storage["shared"], storage["options"])
    # What the tasks wrote is there: EOL's parts, and the released splits, whole.
    built = sample_build["root"]
    for part in (built / "catalog" / "eol").glob("part-*[0-9].parquet"):
        assert shared.exists(part.relative_to(built).as_posix())
    for split in (built / "release" / "shards").iterdir():
        rel = split.relative_to(built).as_posix()
        names = sorted(p.name for p in split.iterdir() if p.is_file())
        assert shared.list(rel) == names
        tar = next(n for n in names if n.endswith(".tar"))
        assert shared.read_bytes(f"{rel}/{tar}") == (split / tar).read_bytes()
    assert not shared.list(".work/hashes")  # hash targets are removed once pulled


def test_a_worker_killed_mid_shard_is_replaced_and_the_bytes_hold(prefect_harness, tmp_path):
    import pyarrow as pa

    from tests.shards.conftest import make_rows
    from treeoflife.schemas import CATALOG

    data_root = tmp_path / "data"
    data_root.mkdir()
    rows = make_rows(data_root, 10)
    location = [("image_file", pa.string()), ("image_offset", pa.int64())]
    location.append(("image_size", pa.int64()))
    table = pa.Table.from_pylist(rows, schema=pa.schema([*CATALOG, *location]))
    settings = ShardSettings(
        image_size=64, jpeg_quality=90, text_type="taxon_com", seed=0, samples_per_shard=2
    )
    clean = tmp_path / "clean" / "train"
    write_split_shards(rows, clean, settings, data_root=data_root)
    markers, out = tmp_path / "markers", tmp_path / "dask" / "train"
    markers.mkdir()
    killed: list[int] = []

    def kill_the_worker_of_shard_2():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            found = list(markers.glob("start-2-*"))
            if found:
                time.sleep(0.3)
                killed.append(int(found[0].name.rsplit("-", 1)[1]))
                os.kill(killed[0], signal.SIGKILL)
            time.sleep(0.05)

    def check():
        mapper = PrefectPartMapper(ExecutionConfig(task_runner="dask", dask_workers=2))
        marked = partial(_marked, str(markers))
        threading.Thread(target=kill_the_worker_of_shard_2, daemon=True).start()
        try:
            write_split_shards(
                table,
                out,
                settings,
                data_root=data_root,
                map_parts=lambda fn, items: mapper(partial(marked, fn), items),
            )
        finally:
            mapper.close()

    _in_a_flow(check)
    assert killed
    # Dask ran shard 2 again on a live worker; the dead one's temporary was swept.
    assert len(list(markers.glob("start-2-*"))) == 2
    assert {p.name: p.read_bytes() for p in out.iterdir()} == {
        p.name: p.read_bytes() for p in clean.iterdir()
    }
