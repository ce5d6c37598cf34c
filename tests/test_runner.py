"""treeoflife.runner on a small stage of its own (real files in a real data root): what makes a
stage up to date, what makes it run again, what it repairs and sweeps first."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from treeoflife import pipeline, schemas
from treeoflife.config import config_from_dict
from treeoflife.layout import Layout
from treeoflife.runner import Stage, read_marker, run_stage
from treeoflife.sources.catalogs import REGISTRY


class Copier:
    """A stage that copies `input.txt` (read from outside the build, beside the root) into
    `out/a.txt` and `out/b.txt`, writing only what is missing (its own part-level resume)."""

    def __init__(self, source: Path):
        self.source = source
        self.runs: list[list[str]] = []  # per run: the files it wrote
        self.repaired: list[list[str]] = []

    def stage(self, **kw) -> Stage:
        return Stage(
            "copy",
            run=self.run,
            outputs=lambda cfg: [cfg.root / "out"],
            inputs=lambda cfg: [self.source],
            settings=lambda cfg: cfg.dedup.phash_max_distance,
            repair=self.repair,
            **kw,
        )

    def run(self, cfg, ctx) -> dict:
        out = cfg.root / "out"
        out.mkdir(exist_ok=True)
        wrote = []
        for name in ("a.txt", "b.txt"):
            if not (out / name).exists():
                (out / name).write_text(self.source.read_text() + name)
                wrote.append(name)
        self.runs.append(wrote)
        return {"wrote": wrote, "fingerprint": ctx.fingerprint}

    def repair(self, cfg, damaged: list[Path]) -> None:
        self.repaired.append(sorted(p.name for p in damaged))
        for p in damaged:
            p.unlink(missing_ok=True)


def _cfg(root: Path, distance: int = 8):
    return config_from_dict({"data_root": str(root), "dedup": {"phash_max_distance": distance}})


@pytest.fixture
def world(tmp_path):
    source = tmp_path / "inputs" / "input.txt"
    source.parent.mkdir()
    source.write_text("hello ")
    root = tmp_path / "data"
    root.mkdir()
    return Copier(source), root


def test_second_run_is_up_to_date_and_does_nothing(world):
    copier, root = world
    first = run_stage(copier.stage(), _cfg(root))
    assert not first.up_to_date and first.summary["wrote"] == ["a.txt", "b.txt"]
    again = run_stage(copier.stage(), _cfg(root))
    assert again.up_to_date and again.summary == first.summary
    assert len(copier.runs) == 1
    marker = read_marker(Layout(root).state_dir, "copy")
    assert sorted(r[0] for r in marker["outputs"]) == ["out/a.txt", "out/b.txt"]


def test_settings_and_inputs_change_the_fingerprint(world):
    copier, root = world
    run_stage(copier.stage(), _cfg(root))
    assert not run_stage(copier.stage(), _cfg(root, distance=3)).up_to_date
    assert run_stage(copier.stage(), _cfg(root, distance=3)).up_to_date
    copier.source.write_text("other content ")
    assert not run_stage(copier.stage(), _cfg(root, distance=3)).up_to_date


def test_fingerprint_is_relative_to_a_moved_or_linked_data_root(tmp_path):
    source = tmp_path / "data" / "sources" / "input.txt"  # an input inside the data root
    source.parent.mkdir(parents=True)
    source.write_text("inside ")
    root = tmp_path / "data"
    copier = Copier(source)
    first = run_stage(copier.stage(), _cfg(root))

    moved = tmp_path / "elsewhere" / "data"
    shutil.copytree(root, moved)  # copy2: sizes and mtimes kept
    moved_copier = Copier(moved / "sources" / "input.txt")
    result = run_stage(moved_copier.stage(), _cfg(moved))
    assert result.up_to_date and moved_copier.runs == []
    assert result.summary["fingerprint"] == first.summary["fingerprint"]

    link = tmp_path / "link"
    link.symlink_to(root)
    linked = Copier(link / "sources" / "input.txt")
    assert run_stage(linked.stage(), _cfg(link)).up_to_date and linked.runs == []


@pytest.mark.parametrize("damage", ["delete", "truncate", "alter"])
def test_a_damaged_output_reruns_the_stage_which_repairs_only_it(world, damage):
    copier, root = world
    run_stage(copier.stage(), _cfg(root))
    a, b = root / "out" / "a.txt", root / "out" / "b.txt"
    good, a_stamp = b.read_bytes(), a.stat().st_mtime_ns
    if damage == "delete":
        b.unlink()
    elif damage == "truncate":
        b.write_bytes(good[:3])
    else:  # one byte, same size
        b.write_bytes(bytes([good[0] ^ 1]) + good[1:])
    result = run_stage(copier.stage(), _cfg(root))
    assert not result.up_to_date and result.repaired == ["out/b.txt"]
    assert copier.repaired == [["b.txt"]] and copier.runs[-1] == ["b.txt"]
    assert b.read_bytes() == good and a.stat().st_mtime_ns == a_stamp  # a.txt left alone
    assert run_stage(copier.stage(), _cfg(root)).up_to_date  # and recorded again


def test_same_size_change_is_found_by_mtime(world):
    copier, root = world
    run_stage(copier.stage(), _cfg(root))
    b = root / "out" / "b.txt"
    st = b.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert not run_stage(copier.stage(), _cfg(root)).up_to_date


def test_a_new_file_in_an_output_folder_is_not_damage(world):
    copier, root = world
    run_stage(copier.stage(), _cfg(root))
    (root / "out" / "notes.txt").write_text("mine")
    assert run_stage(copier.stage(), _cfg(root)).up_to_date


def test_temporaries_of_a_dead_writer_are_swept_before_the_run(world):
    copier, root = world
    out = root / "out"
    out.mkdir()
    dead = 2**22 + 12345  # above the default pid_max: no such process
    stale = out / f".a.txt.{dead}.tmp"
    stale.write_text("half")
    (Layout(root).state_dir).mkdir()
    stale_marker = Layout(root).state_dir / f".copy.done.json.{dead}.tmp"
    stale_marker.write_text("{")
    run_stage(copier.stage(), _cfg(root))
    assert not stale.exists() and not stale_marker.exists()


def test_skip_and_rerun_hooks(world):
    copier, root = world
    skipped = run_stage(copier.stage(skip=lambda cfg: "not configured"), _cfg(root))
    assert skipped.skipped == "not configured" and copier.runs == []
    run_stage(copier.stage(), _cfg(root))
    assert not run_stage(copier.stage(rerun=lambda cfg: True), _cfg(root)).up_to_date
    assert copier.runs[-1] == []  # ran, found its parts done


def test_a_killed_run_leaves_no_marker(world):
    copier, root = world
    run_stage(copier.stage(), _cfg(root))
    copier.source.write_text("changed ")

    def killed(cfg, ctx):
        raise KeyboardInterrupt

    stage = Stage("copy", run=killed, outputs=lambda cfg: [cfg.root / "out"],
                  inputs=lambda cfg: [copier.source])  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        run_stage(stage, _cfg(root))
    assert read_marker(Layout(root).state_dir, "copy") is None


def test_the_stage_table_is_in_dependency_order():
    assert tuple(REGISTRY) == schemas.SOURCES  # every source registered once, in order
    names = list(pipeline.TABLE)
    for i, stage in enumerate(pipeline.TABLE.values()):
        assert set(stage.depends) <= set(names[:i]), stage.name
    grouped = [n for g in pipeline.STAGES for n in pipeline.GROUPS[g]]
    assert grouped == names  # every stage in exactly one `--stage` group, in table order


def test_a_repaired_upstream_output_reruns_what_follows(tmp_path):
    """A repair may write other bytes than the first run did (a re-downloaded image changed)
    under the same fingerprint, so the stages after it must not stay "up to date"."""
    version = {"n": 0}
    seen: list[str] = []

    def upstream_run(cfg, ctx) -> dict:
        out = cfg.root / "out"
        out.mkdir(exist_ok=True)
        for name in ("a.txt", "b.txt"):
            if not (out / name).exists():
                (out / name).write_text(f"{name} v{version['n']}")
        return {}

    def downstream_run(cfg, ctx) -> dict:
        seen.append((cfg.root / "out" / "b.txt").read_text())
        return {}

    upstream = Stage("up", run=upstream_run, outputs=lambda cfg: [cfg.root / "out"])
    downstream = Stage("after", run=downstream_run, outputs=lambda cfg: [], depends=("up",))
    cfg = _cfg(tmp_path)
    for stage in (upstream, downstream):
        run_stage(stage, cfg)
    assert run_stage(upstream, cfg).up_to_date and run_stage(downstream, cfg).up_to_date

    (tmp_path / "out" / "b.txt").unlink()
    version["n"] = 1  # the repair now gives other bytes, the fingerprint stays the same
    assert run_stage(upstream, cfg).repaired == ["out/b.txt"]
    result = run_stage(downstream, cfg)
    assert not result.up_to_date and seen == ["b.txt v0", "b.txt v1"]
    assert run_stage(downstream, cfg).up_to_date
