"""EOL parts keyed by what they are made from: a metadata edit or a re-parting rewrites parts
without fetching an image again; `revalidate` fetches remote images again, replacing what
changed and failing what was taken down. Each rerun ends where a clean run of the same inputs
ends (catalog parts and image stores byte for byte)."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from tests.support.mirror_server import MirrorServer
from treeoflife.sources import ingest_eol

from .builders import EOL_HEADER, jpeg, snapshot, write_csv
from .test_eol_download_parts import eol_cfg

N = 9


def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    for i in range(N):
        (folder / f"{i}.jpg").write_bytes(jpeg(i, 40, 30))
    return folder


def rows(url: str, licence: str = "cc0", order=range(N)) -> list[list]:
    return [[i + 1, 7, "", f"{url}/{i}.jpg", licence if i == 4 else "cc0", "o"] for i in order]


def catalog(root) -> list[dict]:
    return [
        r
        for p in sorted((root / "catalog/eol").glob("part-*[0-9].parquet"))
        for r in pq.read_table(p).to_pylist()
    ]


def clean_run(tmp_path, manifest, **eol):
    cfg = eol_cfg(tmp_path / "clean", manifest, **eol)
    ingest_eol(cfg, decode_workers=0)
    return snapshot(cfg.root)


@pytest.mark.parametrize(
    ("change", "eol"),
    [
        ("licence", {}),
        ("reorder", {}),
        ("remove", {}),
        ("none", {"rows_per_part": 2}),
    ],
)
def test_metadata_and_parting_changes_fetch_nothing_again(tmp_path, change, eol):
    folder = served(tmp_path)
    m = tmp_path / "m.csv"
    with MirrorServer(folder) as server:
        write_csv(m, EOL_HEADER, rows(server.url))
        cfg = eol_cfg(tmp_path / "a", m, rows_per_part=4)
        ingest_eol(cfg, decode_workers=0)
        hits = sum(server.hits.values())
        if change == "licence":
            write_csv(m, EOL_HEADER, rows(server.url, licence="cc-by-4.0"))
        elif change == "reorder":
            write_csv(m, EOL_HEADER, rows(server.url, order=reversed(range(N))))
        elif change == "remove":
            write_csv(m, EOL_HEADER, rows(server.url, order=[0, 1, 2, 5, 6, 7, 8]))
        cfg = eol_cfg(tmp_path / "a", m, **{"rows_per_part": 4, **eol})
        again = ingest_eol(cfg, decode_workers=0)
        assert sum(server.hits.values()) == hits  # every image came from the stored parts
        assert again.parts_written >= 1
        assert snapshot(cfg.root) == clean_run(tmp_path, m, **{"rows_per_part": 4, **eol})
    assert not (cfg.root / "state/parts/eol/_previous").exists()
    if change == "licence":
        assert [r["license"] for r in catalog(cfg.root)][4] == "cc-by-4.0"


def test_remote_images_are_not_fetched_again_unless_revalidating(tmp_path):
    folder = served(tmp_path)
    m = tmp_path / "m.csv"
    with MirrorServer(folder) as server:
        write_csv(m, EOL_HEADER, rows(server.url))
        cfg = eol_cfg(tmp_path / "a", m, rows_per_part=4)
        ingest_eol(cfg, decode_workers=0)
        (folder / "2.jpg").write_bytes(jpeg(77, 50, 20))  # replaced upstream
        (folder / "6.jpg").unlink()  # taken down
        before = {r["key"]: r["md5"] for r in catalog(cfg.root)}
        hits = sum(server.hits.values())
        same = ingest_eol(cfg, decode_workers=0)
        assert (same.parts_written, sum(server.hits.values())) == (0, hits)  # the default
        revalidating = eol_cfg(tmp_path / "a", m, rows_per_part=4, revalidate=True)
        stats = ingest_eol(revalidating, decode_workers=0)
        assert sum(server.hits.values()) == hits + N  # every remote image asked again
        assert stats.reasons == {"http_404": 1}
        after = {r["key"]: r["md5"] for r in catalog(cfg.root)}
        assert after["eol/3_7"] != before["eol/3_7"] and after["eol/7_7"] is None
        assert {k for k in after if after[k] != before[k]} == {"eol/3_7", "eol/7_7"}
        assert snapshot(cfg.root) == clean_run(tmp_path, m, rows_per_part=4)


def test_a_stored_image_whose_bytes_changed_is_fetched_again(tmp_path):
    """Reuse checks a stored image against its md5: damaged bytes are never carried over."""
    folder = served(tmp_path)
    m = tmp_path / "m.csv"
    with MirrorServer(folder) as server:
        write_csv(m, EOL_HEADER, rows(server.url))
        cfg = eol_cfg(tmp_path / "a", m, rows_per_part=4)
        ingest_eol(cfg, decode_workers=0)
        part = [r for r in catalog(cfg.root) if r["key"] == "eol/5_7"][0]  # in part 1
        store = cfg.root / part["image_file"]
        data = bytearray(store.read_bytes())
        data[part["image_offset"] + part["image_size"] // 2] ^= 0xFF
        store.write_bytes(bytes(data))
        hits = dict(server.hits)
        write_csv(m, EOL_HEADER, rows(server.url, licence="cc-by-4.0"))  # row 4: part 1
        ingest_eol(cfg, decode_workers=0)
        fetched = {p: n - hits.get(p, 0) for p, n in server.hits.items() if n != hits.get(p)}
        assert fetched == {"/4.jpg": 1}
        assert snapshot(cfg.root) == clean_run(tmp_path, m, rows_per_part=4)
