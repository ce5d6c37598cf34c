import fnmatch
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from treeoflife.assemble import fill_shard_locations
from treeoflife.cli import app
from treeoflife.errors import InputError
from treeoflife.release.catalog import write_catalog
from treeoflife.schemas import CATALOG
from treeoflife.shards.settings import ShardSettings
from treeoflife.shards.verify import verify_release, verify_split
from treeoflife.shards.writer import write_split_shards

from .conftest import make_rows

SETTINGS = ShardSettings(
    image_size=48, jpeg_quality=90, text_type="sci_com", seed=0, samples_per_shard=4
)


def _catalog_table(rows) -> pa.Table:
    schema = pa.schema(
        [
            *CATALOG,
            pa.field("image_file", pa.string()),
            pa.field("image_offset", pa.int64()),
            pa.field("image_size", pa.int64()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def _write_release(data_root):
    """Train and train_small shards of 11 rows, and the catalog that places them: what the
    release stage writes (run again over the same rows, it repairs what it finds damaged)."""
    rows = make_rows(data_root, 11)
    for r in rows:
        r["shard"] = r["shard_position"] = None
    table = _catalog_table(rows)
    shards = data_root / "release" / "shards"
    train = write_split_shards(table, shards / "train", SETTINGS, data_root=data_root)
    index = pq.read_table(train.index, columns=["key", "shard", "position"])
    table = fill_shard_locations(table, index, "train")
    small = [r["key"] for r in rows if r["in_train_small"]]
    write_split_shards(
        table,
        shards / "train_small",
        SETTINGS,
        data_root=data_root,
        keys=small,
        assign_location=False,
    )
    write_catalog(table, data_root / "release" / "catalog.parquet")
    return data_root / "release"


@pytest.fixture
def release(data_root):
    """A release folder: train and train_small shards plus the catalog that places them."""
    return _write_release(data_root)


def _problems(release, split="train"):
    catalog = pq.read_table(release / "catalog.parquet")
    return verify_split(release / "shards" / split, catalog).problems


def test_a_good_release_verifies(release):
    reports = verify_release(release)
    assert [(r.split, r.ok, r.samples) for r in reports] == [
        ("train", True, 11),
        ("train_small", True, 6),
    ]
    assert reports[0].shards == 3 and reports[0].bytes > 0


def test_train_small_json_is_the_catalog_row(release):
    catalog = pq.read_table(release / "catalog.parquet").to_pylist()
    placed = {r["treeoflife_id"]: (r["shard"], r["shard_position"]) for r in catalog}
    import webdataset as wds

    urls = sorted(str(p) for p in (release / "shards" / "train_small").glob("*.tar"))
    for sample in wds.WebDataset(urls, shardshuffle=False):
        meta = json.loads(sample["json"])
        assert (meta["shard"], meta["shard_position"]) == placed[sample["__key__"]]
        assert meta["shard"].startswith("train/")


def test_flipped_byte_is_found(release):
    path = release / "shards" / "train" / "shard-000001.tar"
    data = bytearray(path.read_bytes())
    data[700] ^= 0xFF  # inside the first JPEG
    path.write_bytes(bytes(data))
    assert _problems(release) == ["shard-000001.tar: sha256 differs from the manifest"]


def test_truncated_and_missing_shards_are_found(release):
    split = release / "shards" / "train"
    path = split / "shard-000000.tar"
    path.write_bytes(path.read_bytes()[:3000])
    (split / "shard-000002.tar").unlink()
    problems = "\n".join(_problems(release))
    assert "shard-000000.tar: 3000 bytes" in problems
    assert "shard-000002.tar: missing" in problems
    assert "kept catalog rows are in no shard" in problems


def test_catalog_disagreements_are_found(release):
    path = release / "catalog.parquet"
    table = pq.read_table(path)
    rows = table.to_pylist()
    rows[0]["shard_position"] = 3 if rows[0]["shard_position"] != 3 else 2
    rows[1]["common_name"] = "Changed after the shards were written"
    dropped = rows.pop()
    pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), path)
    problems = "\n".join(_problems(release))
    assert f"catalog places {rows[0]['treeoflife_id']}" in problems
    assert f"json member differs from the catalog row of {rows[1]['treeoflife_id']}" in problems
    assert f"sample {dropped['treeoflife_id']} is not a kept train row" in problems


def test_stray_shard_and_bad_sizes_are_found(release):
    split = release / "shards" / "train"
    shutil.copy(split / "shard-000000.tar", split / "shard-000007.tar")
    (split / "sizes.json").write_text('{"shard-000000.tar": 4}')
    problems = "\n".join(_problems(release))
    assert "shard-000007.tar: on disk but not in the manifest" in problems
    assert "sizes.json disagrees" in problems


def test_cli_verify_exit_codes(release, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"data_root: {release.parent}\n")
    runner = CliRunner()
    ok = runner.invoke(app, ["verify", "--config", str(config), "-q"])
    assert ok.exit_code == 0, ok.output
    assert "train        ok" in ok.output
    path = release / "shards" / "train_small" / "shard-000000.tar"
    path.write_bytes(path.read_bytes()[:-10240])
    bad = runner.invoke(app, ["verify", "--config", str(config), "-q"])
    assert bad.exit_code == 1
    assert "train_small  FAILED" in bad.output and "shard-000000.tar" in bad.output
    assert "run build to repair" in bad.output and "Traceback" not in bad.output


def test_no_release_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no catalog"):
        verify_release(tmp_path)


def _stamps(split_dir) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(split_dir.iterdir())}


def _flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[700] ^= 0xFF  # inside the first JPEG
    path.write_bytes(bytes(data))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:3000])


@pytest.mark.parametrize(
    "damage, problems, rewritten",
    [
        pytest.param(
            lambda split: (split / "shard-000001.tar").unlink(),
            [
                "shard-000001.tar: missing",
                "4 kept catalog rows are in no shard, e.g. *",
            ],
            {"shard-000001.tar"},
            id="missing-shard",
        ),
        pytest.param(
            lambda split: _truncate(split / "shard-000001.tar"),
            [
                "shard-000001.tar: 3000 bytes, manifest says *",
                "4 kept catalog rows are in no shard, e.g. *",
            ],
            {"shard-000001.tar"},
            id="truncated-shard",
        ),
        pytest.param(
            lambda split: _flip_a_byte(split / "shard-000001.tar"),
            ["shard-000001.tar: sha256 differs from the manifest"],
            {"shard-000001.tar"},
            id="altered-shard",
        ),
        pytest.param(
            lambda split: (split / "manifest.json").write_text('{"shards": {"shard-0000'),
            ["manifest.json: cannot read it: *"],
            # No record of what made the shards: each is written again (the same bytes).
            {"shard-000000.tar", "shard-000001.tar", "shard-000002.tar"},
            id="malformed-manifest",
        ),
        pytest.param(
            lambda split: _edit_manifest(
                split, lambda m: m["shards"]["shard-000002.tar"].update(sha256=7)
            ),
            ["manifest.json: malformed entry 'shard-000002.tar': sha256 is 7"],
            {"shard-000002.tar"},
            id="malformed-manifest-entry",
        ),
        pytest.param(
            lambda split: _truncate(split / "index.parquet"),
            ["index.parquet: cannot read it: *"],
            set(),
            id="truncated-index",
        ),
    ],
)
def test_each_damage_is_listed_and_the_next_run_repairs_exactly_it(
    release, data_root, damage, problems, rewritten
):
    split = release / "shards" / "train"
    before = _stamps(split)
    damage(split)
    listed = _problems(release)
    assert len(listed) == len(problems), listed
    for line, pattern in zip(listed, problems, strict=True):
        assert fnmatch.fnmatchcase(line, pattern), (line, pattern)
    report = verify_split(split, pq.read_table(release / "catalog.parquet")).to_dict()
    assert report["repair"] == "run build to repair"

    _write_release(data_root)  # the same rows again, as the next build does

    after = _stamps(split)
    assert {n: data for n, (_, data) in after.items()} == {
        n: data for n, (_, data) in before.items()
    }  # every file as it was
    changed = {n for n in after if after[n][0] != before[n][0] and n.startswith("shard-")}
    assert changed == rewritten  # and only the damaged shards written again
    assert all(r.ok for r in verify_release(release))


def _edit_manifest(split, edit):
    path = split / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
