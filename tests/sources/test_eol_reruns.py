"""Long jobs: the next run fetches again only the rows that failed transiently (a few runs at
most), keeps everything else without refetching it, and ends where a clean run ends."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq

from tests.support.fanout import map_out_of_order
from tests.support.mirror_server import Fault, MirrorServer
from treeoflife.sources import ingest_eol
from treeoflife.sources.eol import EolPart, download_eol_part, transient_reruns_pending

from .builders import EOL_HEADER, jpeg, snapshot, write_csv
from .test_eol_download_parts import eol_cfg, status_rows

NAMES = ["0.jpg", "1.jpg", "busy.jpg", "gone.jpg", "3.jpg", "4.jpg"]


def world(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    for i, name in enumerate(NAMES):
        if name != "gone.jpg":
            (served / name).write_bytes(jpeg(i, 40, 30))
    return served


def manifest(tmp_path, url: str):
    path = tmp_path / "m.csv"
    write_csv(
        path, EOL_HEADER, [[i + 1, 7, "", f"{url}/{n}", "cc0", "o"] for i, n in enumerate(NAMES)]
    )
    return path


def test_a_transient_failure_is_fetched_again_by_the_next_run_and_nothing_else(tmp_path):
    served = world(tmp_path)
    with MirrorServer(served, {"/busy.jpg": Fault(status=503)}) as server:
        m = manifest(tmp_path, server.url)
        cfg = eol_cfg(tmp_path / "a", m, retries=0, rows_per_part=4)
        first = ingest_eol(cfg, decode_workers=0)
        assert first.reasons == {"http_503": 1, "http_404": 1}
        assert transient_reruns_pending(cfg) == 1
        before = dict(server.hits)
        server.set_fault("/busy.jpg", None)  # the host recovered
        second = ingest_eol(cfg, decode_workers=0)
        after = dict(server.hits)
        clean = eol_cfg(tmp_path / "clean", m, retries=0, rows_per_part=4)
        ingest_eol(clean, decode_workers=0)
    fetched_again = {p: after[p] - before.get(p, 0) for p in after if after[p] != before.get(p)}
    assert fetched_again == {"/busy.jpg": 1}  # the 404 and the stored rows were not asked again
    assert second.reasons == {"http_404": 1} and second.parts_written == 1
    assert snapshot(cfg.root) == snapshot(clean.root)  # catalog + image stores as a clean run
    runs = {r["url"].rsplit("/", 1)[1]: r["runs"] for r in status_rows(cfg.root)}
    assert runs == {"0.jpg": 1, "1.jpg": 1, "busy.jpg": 2, "gone.jpg": 1, "3.jpg": 1, "4.jpg": 1}
    assert transient_reruns_pending(cfg) == 0


def test_reruns_stop_after_the_cap(tmp_path):
    served = world(tmp_path)
    with MirrorServer(served, {"/busy.jpg": Fault(status=503)}) as server:
        m = manifest(tmp_path, server.url)
        cfg = eol_cfg(tmp_path / "a", m, retries=0, rows_per_part=4, rerun_transient=2)
        hits = []
        for _ in range(5):
            ingest_eol(cfg, decode_workers=0)
            hits.append(server.hits["/busy.jpg"])
    assert hits == [1, 2, 3, 3, 3]  # the first run and two reruns, then it stays failed
    (busy,) = [r for r in status_rows(cfg.root) if r["url"].endswith("/busy.jpg")]
    assert (busy["status"], busy["reason"], busy["runs"]) == ("failed", "http_503", 3)
    assert transient_reruns_pending(cfg) == 0
    part = pq.read_table(cfg.root / "catalog/eol/part-00000.parquet").to_pylist()
    assert [r["reason"] for r in part].count("http_503") == 1


def shared_cfg(root, m, storage, **eol):
    """A build whose download parts run as tasks that leave them on `storage` (object storage
    on the loopback S3 server) for the driver to pull."""
    from treeoflife.config import StorageConfig

    shared = StorageConfig(shared=storage.location, options=storage.options)
    return dataclasses.replace(eol_cfg(root, m, **eol), storage=shared)


def test_a_transient_failure_is_fetched_again_through_object_storage(tmp_path, s3_storage):
    """The part's key is unchanged, and its record from the first build is on the shared
    prefix: the task must still fetch its transient failure again (only that row), and a
    retried task whose rerun finished must not fetch it once more."""
    served = world(tmp_path)
    items: list[EolPart] = []

    def mapper(fn, parts):
        parts = list(parts)
        items.extend(parts)
        yield from map_out_of_order(fn, parts)

    with MirrorServer(served, {"/busy.jpg": Fault(status=503)}) as server:
        m = manifest(tmp_path, server.url)
        cfg = shared_cfg(tmp_path / "a", m, s3_storage, retries=0, rows_per_part=4)
        first = ingest_eol(cfg, map_parts=mapper)
        assert first.reasons == {"http_503": 1, "http_404": 1}
        assert transient_reruns_pending(cfg) == 1
        before = dict(server.hits)
        server.set_fault("/busy.jpg", None)  # the host recovered
        items.clear()
        second = ingest_eol(cfg, map_parts=mapper)
        after = dict(server.hits)
        assert [i.index for i in items] == [0]
        download_eol_part(items[0])  # retried: its rerun finished, nothing is fetched
        assert dict(server.hits) == after
        clean = eol_cfg(tmp_path / "clean", m, retries=0, rows_per_part=4)
        ingest_eol(clean, decode_workers=0)
    fetched_again = {p: after[p] - before.get(p, 0) for p in after if after[p] != before.get(p)}
    assert fetched_again == {"/busy.jpg": 1}  # the 404 and the stored rows were not asked again
    assert second.reasons == {"http_404": 1} and second.parts_written == 1
    pulled = snapshot(cfg.root)
    pulled.pop("state/shared-push.jsonl")
    assert pulled == snapshot(clean.root)  # catalog + image stores as a clean run
    runs = {r["url"].rsplit("/", 1)[1]: r["runs"] for r in status_rows(cfg.root)}
    assert runs == {"0.jpg": 1, "1.jpg": 1, "busy.jpg": 2, "gone.jpg": 1, "3.jpg": 1, "4.jpg": 1}
    assert transient_reruns_pending(cfg) == 0
    rel = "catalog/eol/part-00000.parquet"
    assert s3_storage.read_bytes(rel) == (cfg.root / rel).read_bytes()


def test_reruns_through_object_storage_stop_after_the_cap(tmp_path, s3_storage):
    served = world(tmp_path)
    with MirrorServer(served, {"/busy.jpg": Fault(status=503)}) as server:
        m = manifest(tmp_path, server.url)
        cfg = shared_cfg(
            tmp_path / "a", m, s3_storage, retries=0, rows_per_part=4, rerun_transient=2
        )
        hits = []
        for _ in range(5):
            ingest_eol(cfg, map_parts=map_out_of_order)
            hits.append(server.hits["/busy.jpg"])
    assert hits == [1, 2, 3, 3, 3]  # the first run and two reruns, then it stays failed
    (busy,) = [r for r in status_rows(cfg.root) if r["url"].endswith("/busy.jpg")]
    assert (busy["status"], busy["reason"], busy["runs"]) == ("failed", "http_503", 3)
    assert transient_reruns_pending(cfg) == 0


def test_a_rerun_whose_part_is_not_on_object_storage_fetches_it_whole(tmp_path, s3_storage):
    """The part was written on this disk (no shared storage then): the task cannot start the
    rerun from it, so it fetches the whole part, and ends where a clean run ends."""
    served = world(tmp_path)
    with MirrorServer(served, {"/busy.jpg": Fault(status=503)}) as server:
        m = manifest(tmp_path, server.url)
        ingest_eol(eol_cfg(tmp_path / "a", m, retries=0, rows_per_part=4), decode_workers=0)
        server.set_fault("/busy.jpg", None)
        before = dict(server.hits)
        cfg = shared_cfg(tmp_path / "a", m, s3_storage, retries=0, rows_per_part=4)
        second = ingest_eol(cfg, map_parts=map_out_of_order)
        after = dict(server.hits)
        clean = eol_cfg(tmp_path / "clean", m, retries=0, rows_per_part=4)
        ingest_eol(clean, decode_workers=0)
    fetched_again = {p: after[p] - before.get(p, 0) for p in after if after[p] != before.get(p)}
    assert fetched_again == {f"/{n}": 1 for n in NAMES[:4]}  # part 0, whole
    assert second.parts_written == 1 and transient_reruns_pending(cfg) == 0
    pulled = snapshot(cfg.root)
    pulled.pop("state/shared-push.jsonl")
    assert pulled == snapshot(clean.root)
