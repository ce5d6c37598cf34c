"""Read every shard back and check it against its manifest, its index and the release catalog.

BioCLIP found corrupted shards only when a later script tripped on them; `treeoflife verify`
reads each shard in full (sha256, byte size, sample count from the tar itself, the members of
every sample in order) and checks that the shards hold exactly the catalog's kept rows of the
split, each at the shard and position the catalog gives, with a `json` member equal to its row.
Every problem is one line of the report (a damaged file is a problem, never a traceback), and
a report with problems says how to repair them: the next build rewrites what does not match.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from treeoflife.errors import InputError
from treeoflife.io import file_sha256
from treeoflife.progress import Progress, or_null
from treeoflife.schemas import CATALOG
from treeoflife.shards.manifest import (
    INDEX_FILE,
    INDEX_SCHEMA,
    SIZES_FILE,
    SplitManifest,
    shard_index,
)
from treeoflife.shards.sample_json import sample_json
from treeoflife.shards.shard_file import read_shard_layout

log = logging.getLogger(__name__)

MAX_PROBLEMS_PER_SPLIT = 50  # past this, the report only counts
REPAIR = "run build to repair"


@dataclass
class SplitReport:
    split: str
    shards: int = 0
    samples: int = 0
    bytes: int = 0
    problems: list[str] = field(default_factory=list)
    more_problems: int = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS_PER_SPLIT:
            self.problems.append(text)
        else:
            self.more_problems += 1

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "split": self.split,
            "ok": self.ok,
            "shards": self.shards,
            "samples": self.samples,
            "bytes": self.bytes,
            "problems": self.problems,
            "more_problems": self.more_problems,
            "repair": None if self.ok else REPAIR,
        }


def _expected_rows(catalog: pa.Table, split: str) -> dict[str, dict]:
    """{treeoflife_id: catalog row} of the kept rows that belong in `split`'s shards."""
    kept = pc.equal(catalog.column("status"), "kept")
    if split == "train_small":
        mask = pc.and_(kept, pc.fill_null(catalog.column("in_train_small"), False))
    else:
        mask = pc.and_(kept, pc.equal(catalog.column("split"), split))
    rows = catalog.filter(mask).to_pylist()
    return {r["treeoflife_id"]: r for r in rows}


def verify_split(
    split_dir: Path, catalog: pa.Table | None, progress: Progress | None = None
) -> SplitReport:
    """Check one split folder against its manifest, sizes.json, index.parquet and the catalog
    (None: an unreadable catalog, reported by the caller; the shards are still read back)."""
    split_dir = Path(split_dir)
    split = split_dir.name
    report = SplitReport(split)
    progress = or_null(progress)
    try:
        manifest, malformed = SplitManifest.read(split_dir)
    except InputError as exc:
        report.problem(str(exc))  # nothing to check the shards against
        return report
    for problem in malformed.values():
        report.problem(problem)
    entries = manifest.shards
    on_disk = [p.name for p in split_dir.glob("shard-*.tar") if shard_index(p.name) is not None]
    for name in sorted(set(on_disk) - set(entries) - set(malformed)):
        report.problem(f"{name}: on disk but not in the manifest")
    try:
        sizes = json.loads((split_dir / SIZES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.problem(f"{SIZES_FILE}: cannot read it: {exc}")
    else:
        if isinstance(sizes, dict):
            sizes = {n: v for n, v in sizes.items() if n not in malformed}
        if sizes != {n: e.samples for n, e in entries.items()}:
            report.problem(f"{SIZES_FILE} disagrees with the manifest")
    index_rows = _read_index(split_dir, report)

    expected = _expected_rows(catalog, split) if catalog is not None else None
    seen: set[str] = set()
    read: set[str] = set()  # shards read back whole
    progress.start(f"verify {split}", sum(e.samples for e in entries.values()))
    for name in sorted(set(entries) | (set(malformed) & set(on_disk))):
        path, entry = split_dir / name, entries.get(name)  # None: a malformed entry (listed)
        report.shards += 1
        if not path.exists():
            report.problem(f"{name}: missing")
            continue
        size = path.stat().st_size
        report.bytes += size
        if entry is not None and size != entry.bytes:
            report.problem(f"{name}: {size} bytes, manifest says {entry.bytes}")
            continue  # one line per damaged shard: what follows would only repeat it
        if entry is not None and file_sha256(path) != entry.sha256:
            report.problem(f"{name}: sha256 differs from the manifest")
        try:
            samples, metas = read_shard_layout(path)
        except InputError as exc:
            report.problem(str(exc))
            continue
        read.add(name)
        if entry is not None and len(samples) != entry.samples:
            report.problem(f"{name}: {len(samples)} samples, manifest says {entry.samples}")
        report.samples += len(samples)
        _check_samples(report, path, samples, metas, index_rows, expected, seen)
        progress.advance(len(samples))
    progress.finish()
    if index_rows is not None:
        indexed = sum(1 for shard, _ in index_rows if shard in read or shard not in entries)
        if indexed != report.samples:
            report.problem(
                f"{INDEX_FILE} has {indexed} rows for the shards read, they hold {report.samples}"
            )
    missing = sorted(set(expected) - seen) if expected is not None else []
    if missing:
        report.problem(f"{len(missing)} kept catalog rows are in no shard, e.g. {missing[0]}")
    return report


def _read_index(split_dir: Path, report: SplitReport) -> dict | None:
    """{(shard, position): index row}, or None (and a problem) if index.parquet is unusable."""
    try:
        index = pq.read_table(split_dir / INDEX_FILE)
    except (OSError, ValueError, pa.ArrowException) as exc:
        report.problem(f"{INDEX_FILE}: cannot read it: {exc}")
        return None
    if not index.schema.equals(INDEX_SCHEMA, check_metadata=False):
        report.problem(f"{INDEX_FILE} does not have the shard index schema")
        return None
    return {(r["shard"], r["position"]): r for r in index.to_pylist()}


def _check_samples(report, path, samples, metas, index_rows, expected, seen) -> None:
    split = path.parent.name
    for sample, meta in zip(samples, metas, strict=True):
        tid, where = sample["treeoflife_id"], f"{path.name}#{sample['position']}"
        if index_rows is not None and index_rows.get((path.name, sample["position"])) != sample:
            report.problem(f"{where}: index.parquet row differs from the shard")
        if tid in seen:
            report.problem(f"{where}: sample {tid} appears twice")
        seen.add(tid)
        if expected is None:
            continue
        row = expected.get(tid)
        if row is None:
            report.problem(f"{where}: sample {tid} is not a kept {split} row of the catalog")
            continue
        if meta != _comparable(row):
            report.problem(f"{where}: json member differs from the catalog row of {tid}")
        if split != "train_small" and (
            row["shard"] != f"{split}/{path.name}" or row["shard_position"] != sample["position"]
        ):
            placed = f"{row['shard']}#{row['shard_position']}"
            report.problem(f"{where}: catalog places {tid} at {placed}")


def _comparable(row: dict) -> dict:
    return json.loads(json.dumps(sample_json(row), default=str))


def verify_release(
    release_dir: Path, splits: tuple[str, ...] | None = None, progress: Progress | None = None
) -> list[SplitReport]:
    """Verify every split under `<release_dir>/shards` against `<release_dir>/catalog.parquet`."""
    release_dir = Path(release_dir)
    catalog_path = release_dir / "catalog.parquet"
    if not catalog_path.exists():
        raise InputError(f"no catalog at {catalog_path}: build the release first")
    try:
        catalog = pq.read_table(catalog_path, columns=list(CATALOG.names))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise InputError(f"cannot read {catalog_path}: {exc}; {REPAIR}") from exc
    roots = sorted(p for p in (release_dir / "shards").glob("*") if p.is_dir())
    if splits:
        roots = [p for p in roots if p.name in splits]
    if not roots:
        raise InputError(f"no shard folders under {release_dir / 'shards'}")
    return [verify_split(p, catalog, progress) for p in roots]
