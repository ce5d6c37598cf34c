"""Typed build configuration, loaded from YAML.

Unknown keys and wrong types are rejected with the key named before any work starts. Relative
source paths are relative to the data root; a relative data root is relative to the directory
the command runs in.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from treeoflife.errors import ConfigError
from treeoflife.evalsets.files import name_problem
from treeoflife.evalsets.layouts import LAYOUTS
from treeoflife.schemas import RANKS


@dataclass(frozen=True)
class INat21Archive:
    images: str  # .tar.gz path or URL
    annotations: str  # COCO JSON path or URL: .json, .json.gz or .json.tar.gz (as published)
    md5: str | None = None  # published md5 of `images`, checked when given
    annotations_md5: str | None = None  # published md5 of the `annotations` file as given


@dataclass(frozen=True)
class INat21Config:
    archives: list[INat21Archive] = field(default_factory=list)
    images_per_part: int = 2000
    max_member_bytes: int = 100_000_000  # a larger archive member is recorded, not read


@dataclass(frozen=True)
class BioscanConfig:
    metadata: str | None = None  # BIOSCAN_Insect_Dataset_metadata.tsv
    zips: list[str] = field(default_factory=list)  # image zips with part<chunk>/<file> members
    # Which image package to read when the zips hold several (members under a folder named
    # after another package are ignored): cropped_256, original_256, cropped, original_full;
    # null reads whatever the zips hold.
    package: str | None = None
    images_per_part: int = 2000
    max_member_bytes: int = 100_000_000  # a larger zip member is recorded, not read

    def __post_init__(self):
        packages = ("cropped_256", "original_256", "cropped", "original_full")
        if self.package is not None and self.package not in packages:
            raise ConfigError(
                f"sources.bioscan.package: {self.package!r} is not one of {', '.join(packages)}"
            )


@dataclass(frozen=True)
class EOLConfig:
    manifests: list[str] = field(default_factory=list)  # media manifest CSV chunks
    pages: str | None = None  # page id -> name (+ hierarchy) CSV
    # URL prefix rewrites: {"https://content.eol.org/data/media/": "sample/eol/mirror/"}.
    # A value that is not an http(s)/file URL is a local directory relative to the data root.
    mirror: dict[str, str] = field(default_factory=dict)
    rows_per_part: int = 2000
    concurrency: int = 32  # requests in flight, all hosts together
    per_host_concurrency: int = 8  # connections per host
    per_host_rps: float = 0.0  # requests started per second per host; 0 = no pacing
    timeout_s: float = 30.0  # one whole attempt (connect + headers + body)
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 30.0  # longest silence between two reads of a body
    retries: int = 3
    max_bytes: int = 50_000_000
    max_redirects: int = 5
    user_agent: str = "treeoflife/0.1 (+https://github.com/treeoflife/treeoflife)"
    # Stored images: "none" keeps originals (the shard stage resizes; exact-md5 dedup against
    # evaluation sets, which are EOL images too, needs the served bytes), "max_side" or
    # "shorter_side" shrink to `image_size` (aspect kept, never enlarged, JPEG draft decode).
    resize_mode: str = "none"
    image_size: int = 0
    jpeg_quality: int = 95
    parts_in_flight: int = 3  # parts downloading at once (keeps the network busy at part ends)
    decode_workers: int | None = None  # decode/resize processes; None = min(2, cpus), 0 = inline
    # >1: that many download processes, each with its own event loop and decode threads, one
    # part at a time (concurrency and per-host limits are split between them). Faster when the
    # CPU is the bottleneck (fast mirrors); 1 keeps one event loop + decode processes.
    processes: int = 1


@dataclass(frozen=True)
class SourcesConfig:
    inat21: INat21Config = field(default_factory=INat21Config)
    bioscan: BioscanConfig = field(default_factory=BioscanConfig)
    eol: EOLConfig = field(default_factory=EOLConfig)


def check_precedence(precedence: dict, where: str = "taxonomy.rank_precedence") -> None:
    """Raise ConfigError unless `precedence` maps ranks to non-empty lists of distinct names."""
    for rank, order in precedence.items():
        if rank not in RANKS:
            raise ConfigError(f"{where}: {rank!r} is not one of {', '.join(RANKS)}")
        if (
            not isinstance(order, list)
            or not order
            or not all(isinstance(a, str) and a for a in order)
            or len(set(order)) != len(order)
        ):
            raise ConfigError(f"{where}.{rank}: expected a non-empty list of distinct names")


@dataclass(frozen=True)
class TaxonomyConfig:
    backbone: str | None = None  # DwC-A folder or backbone.zip
    fuzzy_max_distance: int = 2
    # Below a higher-rank match, keep the source's own lower ranks when its higher ranks
    # confirm the match (provenance = the source, flag source_below_match).
    source_below_match: bool = True
    # GBIF species-match API for what the local backbone misses (None: local only). Answers
    # are cached in taxonomy/api-cache.duckdb, so no name is asked twice across runs.
    # ITIS's downloadable SQLite database, asked (locally) for what the backbone leaves short
    # of a species, before the GBIF API (None: not used).
    itis_sqlite: str | None = None
    gbif_api_url: str | None = None  # e.g. https://api.gbif.org
    gbif_api_version: str = "v1"  # v1 | v2
    gbif_checklist_key: str | None = None  # v2 only (e.g. the Catalogue of Life release)
    api_concurrency: int = 8
    api_rate_per_s: float = 10.0
    api_retries: int = 4
    api_timeout_s: float = 30.0
    api_user_agent: str = "treeoflife/0.1 (+https://github.com/treeoflife/treeoflife)"
    # Per rank, which label wins when an authority and the source both give one and differ:
    # e.g. {"species": ["source", "gbif-backbone"]}; "source" = the row's own source. A rank
    # without a list (the default) keeps the authority's label (treeoflife.taxonomy.precedence).
    rank_precedence: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self):
        check_precedence(self.rank_precedence)


@dataclass(frozen=True)
class EvalSetConfig:
    # Names the set's folders and files (hashes/evalsets/<name>.parquet,
    # release/evalsets/wds/<name>/): letters, digits, '_', '-', '.'; unique among the sets.
    name: str
    # The set's list (CSV) or folder; what it holds depends on `layout`. rare_species: a CSV
    # kingdom,phylum,cls,order,family,genus,species,common_name,filepath.
    metadata: str
    root: str | None = None  # folder the filepaths are relative to (default: the CSV's folder)
    hold_out_species: bool = False  # remove every training image of its species
    # rare_species | birds525 | meta_album | folder | manifest (treeoflife.evalsets.layouts)
    layout: str = "rare_species"

    def __post_init__(self):
        problem = name_problem(self.name)
        if problem:
            raise ConfigError(f"evalsets.name: {problem}")
        if self.layout not in LAYOUTS:
            raise ConfigError(
                f"evalsets.{self.name}.layout: {self.layout!r} is not one of {', '.join(LAYOUTS)}"
            )


@dataclass(frozen=True)
class DedupConfig:
    # pHash (dct64-v2) Hamming distance counted as a copy of an evaluation image; 8 is chosen
    # from the robustness study (docs/dedup-robustness.md).
    phash_max_distance: int = 8
    # In-train near-duplicate groups by pHash (one image kept per group); None: md5 groups only.
    in_train_phash_max_distance: int | None = None
    contact_sheet_pairs: int = 48  # near-duplicate pairs drawn in dedup/near_pairs.jpg
    hash_workers: int = 2  # processes hashing images (output does not depend on it)

    def __post_init__(self):
        for name in ("phash_max_distance", "in_train_phash_max_distance"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 32:
                raise ConfigError(f"dedup.{name}: {value} is not a Hamming distance in 0..32")


@dataclass(frozen=True)
class SplitsConfig:
    seed: int = 0
    val_fraction: float = 0.05
    train_small_fraction: float = 0.1


@dataclass(frozen=True)
class ShardsConfig:
    samples_per_shard: int = 10_000  # a shard ends at this many samples ...
    max_shard_bytes: int = 0  # ... or before it would pass this many bytes (0: no byte limit)
    image_size: int = 224  # training resolution; 0 keeps the stored image
    # "shorter_side": shorter side to image_size, aspect kept; "square": image_size x image_size
    # like BioCLIP's make_wds.py (aspect not kept).
    resize_mode: str = "shorter_side"
    jpeg_quality: int = 95
    # What the plain `txt` member (the one stock open_clip reads) holds: a caption kind (sci,
    # com, taxon, taxonTag, sci_com, taxon_com, taxonTag_com) or "random": BioCLIP's mixed
    # text type, one of sci/com/taxon/sci_com/taxon_com per sample, fixed by key and seed.
    text_type: str = "taxon_com"
    seed: int = 0  # seeds the global shuffle across sources and the "random" text type
    workers: int = 1  # processes decoding/resizing images (output bytes do not depend on it)


@dataclass(frozen=True)
class TrainConfig:
    """open_clip_train options (BioCLIP: ViT-B-16 from `openai`, lr 1e-4, 1000 warm-up steps,
    cosine over 100 epochs, wd 0.2, amp, global batch 32,768 = batch_size x GPUs)."""

    model: str = "ViT-B-16"
    pretrained: str | None = None  # e.g. "openai" where the weights are cached; None: random init
    batch_size: int = 256  # per process (open_clip's convention)
    epochs: int = 100
    lr: float = 1e-4
    warmup: int = 1000
    wd: float = 0.2
    precision: str = "amp"
    workers: int = 8
    seed: int = 0
    output: str = "models"
    # Stock open_clip trains on each sample's `txt`; its caption kind (one type or BioCLIP's
    # mixture, "random") is chosen when the shards are written (shards.text_type). When set,
    # this must equal shards.text_type: a guard against training on other captions than meant.
    text_type: str | None = None
    lock_image: bool = False
    lock_image_unlocked_groups: int = 0
    lock_text: bool = False
    lock_text_unlocked_layers: int = 0
    grad_checkpointing: bool = False
    accum_freq: int = 1
    report_to: str = "none"  # open_clip's --report-to: none, tensorboard, wandb
    log_every_n_steps: int = 100
    nproc_per_node: int = 1  # >1: torchrun on one node, with --local-loss --gather-with-grad
    device: str | None = None  # None: cuda when available, else cpu
    export: str = "export"  # local-dir model folder under <output>/<run>/


@dataclass(frozen=True)
class EvaluateConfig:
    text_type: str = "taxon_com"  # class names packaged with the evaluation sets
    # Class names for zero-shot: None uses the packaged ones; else scientific, common,
    # taxonomic, combined (or a caption kind: sci, com, taxon, taxon_com, ...).
    zero_shot_text_type: str | None = None
    templates: list[str] = field(default_factory=list)  # empty: each set's own templates file
    shots: list[int] = field(default_factory=lambda: [1, 5])  # SimpleShot k
    draws: int = 5  # seeded support draws per k
    seed: int = 0
    batch_size: int = 256
    device: str | None = None
    output: str = "eval"


TASK_RUNNERS = ("threads", "dask")


@dataclass(frozen=True)
class ExecutionConfig:
    """Where the heavy stages' parts and shards run (the Prefect flows read it; the CLI runs
    them locally). Output bytes do not depend on any of it."""

    task_runner: str = "threads"  # threads | dask (prefect-dask)
    max_workers: int = 2  # threads: parts/shards at once (each may use its stage's processes)
    dask_address: str | None = None  # an existing scheduler (tcp://host:8786); None: LocalCluster
    dask_workers: int = 2  # LocalCluster worker processes
    dask_threads_per_worker: int = 1  # LocalCluster threads per worker

    def __post_init__(self):
        if self.task_runner not in TASK_RUNNERS:
            raise ConfigError(
                f"execution.task_runner: {self.task_runner!r} is not one of "
                f"{', '.join(TASK_RUNNERS)}"
            )
        for name in ("max_workers", "dask_workers", "dask_threads_per_worker"):
            if getattr(self, name) < 1:
                raise ConfigError(f"execution.{name}: must be >= 1, got {getattr(self, name)}")

    @property
    def parallelism(self) -> int:
        """Parts or shards that run at once (a part's share of limits such as download
        concurrency; with `dask_address`, the workers x threads the cluster is meant to have)."""
        if self.task_runner == "dask":
            return self.dask_workers * self.dask_threads_per_worker
        return self.max_workers


@dataclass(frozen=True)
class StorageConfig:
    """Shared storage for fan-out tasks that do not share the driver's disk (treeoflife.storage).

    null (default): tasks use the data root itself, which suits one machine or a POSIX folder
    that every worker mounts (NFS). An fsspec URL (s3://bucket/prefix, gs://..., abfs://...):
    the hash and shard tasks read image stores from it and write their outputs there, and the
    driver pushes their inputs and pulls their outputs; the shards end up there too.
    """

    shared: str | None = None
    options: dict[str, typing.Any] = field(default_factory=dict)  # fsspec filesystem options

    def __post_init__(self):
        if self.shared is not None and "://" not in self.shared:
            raise ConfigError(
                f"storage.shared: {self.shared!r} is not a URL such as s3://bucket/prefix "
                "(a folder every worker mounts needs no setting: it is the data root)"
            )


@dataclass(frozen=True)
class BuildConfig:
    data_root: str = "data"
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    taxonomy: TaxonomyConfig = field(default_factory=TaxonomyConfig)
    evalsets: list[EvalSetConfig] = field(default_factory=list)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    sample: dict[str, typing.Any] = field(default_factory=dict)  # sample generator options

    def __post_init__(self):
        seen: dict[str, int] = {}
        for i, es in enumerate(self.evalsets):
            # casefold: on a case-insensitive disk `Rare` and `rare` are one folder
            first = seen.setdefault(es.name.casefold(), i)
            if first != i:
                raise ConfigError(
                    f"evalsets[{i}].name: {es.name!r} is already the name of evalsets[{first}] "
                    "(each set needs its own name: its hashes and packaged folder are named by it)"
                )

    @property
    def root(self) -> Path:
        return Path(self.data_root)

    def path(self, value: str | None) -> Path | None:
        """A source path from the config, resolved against the data root."""
        if value is None:
            return None
        p = Path(os.path.expanduser(value))
        return p if p.is_absolute() else self.root / p

    def section_dict(self, name: str) -> dict:
        return dataclasses.asdict(getattr(self, name))


def _convert(tp, value, where: str):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], value, where)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return {str(k): v for k, v in value.items()}
    if tp is typing.Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def _build(cls, data: dict, where: str):
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{where}.{f.name}".lstrip("."))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {f.name}")
    return cls(**kwargs)


def load_config(path: str | Path, data_root: str | None = None) -> BuildConfig:
    """Read and validate a YAML build config; `data_root` overrides the file's."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        # one line: YAML's messages span several (with a caret under the spot)
        raise ConfigError(f"cannot read config {path}: {' '.join(str(exc).split())}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    if data_root is not None:
        data["data_root"] = data_root
    return _build(BuildConfig, data, "")


def config_from_dict(data: dict) -> BuildConfig:
    return _build(BuildConfig, data, "")
