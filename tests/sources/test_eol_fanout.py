"""EOL's download parts run by an injected mapper (treeoflife.fanout): the same catalog and
image stores as the stage's own loop, from small, absolute, picklable part items."""

from __future__ import annotations

import dataclasses
import json
import pickle

from tests.support.fanout import map_out_of_order
from tests.support.mirror_server import Fault, MirrorServer
from treeoflife.sources import ingest_eol
from treeoflife.sources.eol import EolPart

from .builders import EOL_HEADER, jpeg, snapshot, write_csv
from .test_eol_download_parts import eol_cfg


def test_mapped_parts_equal_the_local_run(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    faults = {}
    for i in range(10):
        (served / f"{i}.jpg").write_bytes(jpeg(i, 40, 30))
        if i % 4 == 0:
            faults[f"/{i}.jpg"] = Fault(latency_s=0.2)  # earlier parts finish later
    with MirrorServer(served, faults) as server:
        manifest = tmp_path / "m.csv"
        lines = [[i + 1, 7, "", f"{server.url}/{i}.jpg", "cc0", "o"] for i in range(10)]
        lines.append([99, 7, "", f"{server.url}/missing.jpg", "cc0", "o"])
        write_csv(manifest, EOL_HEADER, lines)
        local = eol_cfg(tmp_path / "local", manifest)
        ingest_eol(local, decode_workers=0)
        monkeypatch.chdir(tmp_path)  # a relative data root: workers get it absolute
        mapped = eol_cfg(tmp_path / "mapped", manifest)
        mapped = dataclasses.replace(mapped, data_root="mapped/data")
        items: list[EolPart] = []

        def mapper(fn, parts):
            parts = list(parts)
            items.extend(parts)
            yield from map_out_of_order(fn, parts)

        stats = ingest_eol(mapped, map_parts=mapper)
    assert snapshot(local.root) == snapshot(tmp_path / "mapped" / "data")
    assert stats.rows == 11 and stats.ok == 10 and stats.parts_written == 3
    assert [i.index for i in items] == [0, 1, 2]
    assert all(i.cfg.root.is_absolute() for i in items)
    assert pickle.loads(pickle.dumps(items[0])) == items[0]


def test_parts_through_object_storage_equal_the_local_run(tmp_path, s3_storage):
    """Workers that do not see this disk: each part is written in a scratch data root and
    left on shared storage, record last; the driver pulls it back. A retried task whose
    first attempt finished downloads nothing."""
    from treeoflife.config import StorageConfig
    from treeoflife.sources.eol import download_eol_part
    from treeoflife.storage import shared_storage

    served = tmp_path / "served"
    served.mkdir()
    for i in range(6):
        (served / f"{i}.jpg").write_bytes(jpeg(i, 40, 30))
    with MirrorServer(served, {}) as server:
        manifest = tmp_path / "m.csv"
        lines = [[i + 1, 7, "", f"{server.url}/{i}.jpg", "cc0", "o"] for i in range(6)]
        write_csv(manifest, EOL_HEADER, lines)
        local = eol_cfg(tmp_path / "local", manifest)
        ingest_eol(local, decode_workers=0)
        shared = StorageConfig(shared=s3_storage.location, options=s3_storage.options)
        mapped = dataclasses.replace(eol_cfg(tmp_path / "mapped", manifest), storage=shared)
        items: list[EolPart] = []

        def mapper(fn, parts):
            parts = list(parts)
            items.extend(parts)
            yield from map_out_of_order(fn, parts)

        stats = ingest_eol(mapped, map_parts=mapper)
        hits = sum(server.hits.values())
        assert download_eol_part(items[0]) == (0, 4, {})  # retried: its record is there
        assert sum(server.hits.values()) == hits
    pulled = snapshot(mapped.root)
    ledger = [json.loads(line)[0] for line in pulled.pop("state/shared-push.jsonl").splitlines()]
    assert snapshot(local.root) == pulled
    # Each pulled file is noted (the hash and shard stages do not push it back), record last.
    assert ledger[4] == "state/parts/eol/part-00000.parquet" and len(ledger) == 10
    assert stats.parts_written == 2 and [i.index for i in items] == [0, 1]
    assert all(i.folder == shared_storage(mapped) for i in items)
    for part in (mapped.root / "catalog" / "eol").rglob("part-?????.parquet"):
        rel = part.relative_to(mapped.root).as_posix()
        assert s3_storage.read_bytes(rel) == part.read_bytes()


def test_a_part_of_other_inputs_on_object_storage_is_redone(tmp_path, s3_server, s3_storage):
    """A fresh data root over the same shared prefix, one manifest row changed: the parts an
    earlier build left there count only when their key is the one planned now. The changed
    part is fetched and written again (the bytes of a build over a clean prefix), the
    unchanged one is pulled without a download."""
    from treeoflife.config import StorageConfig
    from treeoflife.storage import FsspecStorage

    served = tmp_path / "served"
    served.mkdir()
    for i in range(6):
        (served / f"{i}.jpg").write_bytes(jpeg(i, 40, 30))
    clean = FsspecStorage(s3_server.url(f"clean-{tmp_path.name}"), s3_server.options)

    def build(name: str, storage: FsspecStorage, lines: list) -> dict:
        manifest = tmp_path / f"{name}.csv"
        write_csv(manifest, EOL_HEADER, lines)
        shared = StorageConfig(shared=storage.location, options=storage.options)
        cfg = dataclasses.replace(eol_cfg(tmp_path / name, manifest), storage=shared)
        ingest_eol(cfg, map_parts=map_out_of_order)
        files = snapshot(cfg.root)
        files.pop("state/shared-push.jsonl")
        return files

    with MirrorServer(served, {}) as server:
        lines = [[i + 1, 7, "", f"{server.url}/{i}.jpg", "cc0", "o"] for i in range(6)]
        build("first", s3_storage, lines)
        lines[5][4] = "cc-by"  # part 1 (rows 4-5): the same image under another licence
        before = sum(server.hits.values())
        again = build("again", s3_storage, lines)
        fetched = sum(server.hits.values()) - before
        fresh = build("fresh", clean, lines)
    assert again == fresh
    assert fetched == 2  # part 1's two rows; part 0 was pulled as it was
    rel = "catalog/eol/part-00001.parquet"
    assert s3_storage.read_bytes(rel) == clean.read_bytes(rel)  # the stale part was replaced
