"""Where every stage reads and writes under the data root (one place, so paths never drift)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    root: Path

    def catalog_dir(self, source: str) -> Path:
        return self.root / "catalog" / source

    def images_dir(self, source: str) -> Path:
        return self.root / "images" / source

    @property
    def sample_dir(self) -> Path:
        return self.root / "sample"

    @property
    def taxonomy_dir(self) -> Path:
        return self.root / "taxonomy"

    @property
    def taxonomy_db(self) -> Path:
        return self.taxonomy_dir / "backbone.duckdb"

    @property
    def taxa(self) -> Path:
        return self.taxonomy_dir / "taxa.parquet"

    @property
    def hashes_dir(self) -> Path:
        return self.root / "hashes"

    def hashes(self, source: str) -> Path:
        return self.hashes_dir / f"{source}.parquet"

    def evalset_hashes(self, name: str) -> Path:
        return self.hashes_dir / "evalsets" / f"{name}.parquet"

    @property
    def dedup_dir(self) -> Path:
        return self.root / "dedup"

    @property
    def removals(self) -> Path:
        return self.dedup_dir / "removals.parquet"

    @property
    def release_dir(self) -> Path:
        return self.root / "release"

    @property
    def release_work(self) -> Path:
        """The release's scratch tables (treeoflife.release.tables); gone when it is done."""
        return self.root / "work" / "release"

    def shards_dir(self, split: str) -> Path:
        return self.release_dir / "shards" / split

    @property
    def catalog(self) -> Path:
        return self.release_dir / "catalog.parquet"

    @property
    def evalsets_wds(self) -> Path:
        return self.release_dir / "evalsets" / "wds"

    @property
    def summary(self) -> Path:
        return self.release_dir / "summary.json"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def eval_dir(self) -> Path:
        return self.root / "eval"

    @property
    def state_dir(self) -> Path:
        """Stage completion markers (`<stage>.done.json`)."""
        return self.root / "state"

    @property
    def shared_ledger(self) -> Path:
        """What is already on shared storage: noted by treeoflife.storage.push_files and by
        treeoflife.exchange.pull_outputs (through storage.note_copied), so a file pulled from
        there is not pushed back."""
        return self.state_dir / "shared-push.jsonl"
