"""Typed build configuration, loaded from YAML.

Unknown keys, wrong types, values out of range or not among a setting's choices, and (for a
build) input paths that do not exist are all refused before any work starts, every problem on
its own line naming the key. Each field declares its rule with `setting()` (see
treeoflife.config_rules); a new setting only adds its rule there. The comment beside or above a
field is its documentation: docs/config.md is generated from this file
(`python -m treeoflife.config_docs`). Relative source paths are relative to the data root; a
relative data root is relative to the directory the command runs in.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from treeoflife.config_rules import (
    Problems,
    check,
    glob_under,
    local_path,
    path_problem,
    raise_problems,
    setting,
    walk_paths,
)
from treeoflife.errors import ConfigError
from treeoflife.evalsets.files import name_problem
from treeoflife.evalsets.layouts import LAYOUTS
from treeoflife.schemas import RANKS

# Choices the stages accept, kept here so that config.py stays a leaf module; a test asserts
# each equals the constant of the module that acts on it (tests/test_config_rules.py).
BIOSCAN_PACKAGES = ("cropped_256", "original_256", "cropped", "original_full")
EOL_RESIZE_MODES = ("none", "max_side", "shorter_side")
PUBLISHED_LABEL_MODES = ("published", "resolved")
SHARD_RESIZE_MODES = ("shorter_side", "square")
CAPTION_KINDS = ("sci", "com", "taxon", "taxonTag", "sci_com", "taxon_com", "taxonTag_com")
TEXT_TYPE_ALIASES = ("scientific", "common", "taxonomic", "combined", "scientific_common")
PRECISIONS = ("amp", "amp_bf16", "amp_bfloat16", "bf16", "fp16", "pure_bf16", "pure_fp16", "fp32")
REPORT_TO = ("none", "tensorboard", "wandb", "all", "tensorboard,wandb", "wandb,tensorboard")
MD5 = {"pattern": r"[0-9a-fA-F]{32}", "hint": "an md5 (32 hex digits)"}
HTTP_URL = {"pattern": r"https?://\S+", "hint": "an http(s) URL"}
NAME = {"pattern": r"[A-Za-z0-9][A-Za-z0-9_.-]*", "hint": "a name of letters, digits, _ . -"}
ALLOW_HOST = {
    "pattern": r"(\[[0-9A-Fa-f:.]+\]|[0-9A-Za-z._-]+|[0-9A-Fa-f:]+)(/\d{1,3})?(:[1-9]\d{0,4})?",
    "hint": "a host name, address or CIDR, optionally with :port",
}


@dataclass(frozen=True)
class INat21Archive:
    images: str = setting(path="file")  # .tar.gz path or URL
    # COCO JSON path or URL: .json, .json.gz or .json.tar.gz (as published)
    annotations: str = setting(path="file")
    md5: str | None = setting(None, **MD5)  # published md5 of `images`, checked when given
    # published md5 of the `annotations` file as given
    annotations_md5: str | None = setting(None, **MD5)


@dataclass(frozen=True)
class INat21Config:
    archives: list[INat21Archive] = field(default_factory=list)  # train, val, ... archives
    images_per_part: int = setting(2000, ge=1)  # images per catalog part (the unit of resume)
    # a larger archive member is recorded, not read
    max_member_bytes: int = setting(100_000_000, ge=1)


@dataclass(frozen=True)
class BioscanConfig:
    metadata: str | None = setting(None, path="file")  # BIOSCAN_Insect_Dataset_metadata.tsv
    # image zips with part<chunk>/<file> members (glob patterns allowed, expanded sorted)
    zips: list[str] = setting(factory=list, path="glob")
    # Which image package to read when the zips hold several (members under a folder named
    # after another package are ignored): cropped_256, original_256, cropped, original_full;
    # null reads whatever the zips hold.
    package: str | None = setting(None, choices=BIOSCAN_PACKAGES)
    images_per_part: int = setting(2000, ge=1)  # images per catalog part (the unit of resume)
    max_member_bytes: int = setting(100_000_000, ge=1)  # a larger zip member is recorded, not read


@dataclass(frozen=True)
class EOLConfig:
    manifests: list[str] = setting(factory=list, path="file")  # media manifest CSV chunks
    pages: str | None = setting(None, path="file")  # page id -> name (+ hierarchy) CSV
    # URL prefix rewrites: {"https://content.eol.org/data/media/": "sample/eol/mirror/"}.
    # A value that is not an http(s)/file URL is a local directory relative to the data root.
    mirror: dict[str, str] = setting(factory=dict, path="dir")
    rows_per_part: int = setting(2000, ge=1)  # manifest rows per part (the unit of resume)
    concurrency: int = setting(256, ge=1)  # a ceiling: requests in flight, all hosts together
    # A ceiling per host. With adaptive_concurrency each host starts at host_start_concurrency
    # and grows while its latency stays flat, backing off on 429 / 503 / timeouts / rising
    # latency (honouring Retry-After); without it, every host gets this from the start.
    per_host_concurrency: int = setting(64, ge=1)
    adaptive_concurrency: bool = True  # per-host limits that adapt (sources/host_limit.py)
    host_start_concurrency: int = setting(4, ge=1)  # requests in flight to a new host
    # requests started per second per host; 0 = no pacing
    per_host_rps: float = setting(0.0, ge=0)
    timeout_s: float = setting(30.0, gt=0)  # one whole attempt (connect + headers + body)
    connect_timeout_s: float = setting(15.0, gt=0)  # connecting to a host
    read_timeout_s: float = setting(30.0, gt=0)  # longest silence between two reads of a body
    retries: int = setting(3, ge=0)  # further attempts after a transient failure
    max_bytes: int = setting(50_000_000, ge=1)  # a larger image is a failed row (too_large)
    max_redirects: int = setting(5, ge=0)  # redirects followed per request
    # sent with every request (name the project and a contact, as polite crawlers do)
    user_agent: str = "treeoflife/0.1 (+https://github.com/treeoflife/treeoflife)"
    # Non-public hosts the downloader may reach: "127.0.0.1:8080", "10.0.0.0/8", "[::1]:80",
    # "mirror.internal". Every other loopback, private, link-local or metadata address is
    # refused, for manifest URLs and redirects alike (the row fails as non_public_address).
    # file:// URLs are read only under the mirror's local folders.
    allow_hosts: list[str] = setting(factory=list, **ALLOW_HOST)
    # Rows that failed transiently (timeout, connection error, 5xx, 429) are fetched again by
    # the next run, for at most this many later runs (>= 0; 0: never).
    rerun_transient: int = setting(3, ge=0)
    # Stored images: "none" keeps originals (the shard stage resizes; exact-md5 dedup against
    # evaluation sets, which are EOL images too, needs the served bytes), "max_side" or
    # "shorter_side" shrink to `image_size` (aspect kept, never enlarged, JPEG draft decode).
    resize_mode: str = setting("none", choices=EOL_RESIZE_MODES)
    image_size: int = setting(0, ge=0)  # the side `resize_mode` shrinks to (0 with "none")
    jpeg_quality: int = setting(95, ge=1, le=100)  # of images re-encoded when stored
    # parts downloading at once (keeps the network busy at part ends)
    parts_in_flight: int = setting(3, ge=1)
    # decode/resize processes; None = min(2, cpus), 0 = inline
    decode_workers: int | None = setting(None, ge=0)
    # >1: that many download processes, each with its own event loop and decode threads, one
    # part at a time (concurrency and per-host limits are split between them). Faster when the
    # CPU is the bottleneck (fast mirrors); 1 keeps one event loop + decode processes.
    processes: int = setting(1, ge=1)
    # A finished remote image is not fetched again; true (`build --revalidate`): every stored
    # remote image is asked again with a conditional request (the ETag / Last-Modified kept
    # with it; a plain GET without): 304 keeps it, 200 replaces it, a 404/410 fails its row.
    revalidate: bool = False

    def __post_init__(self):
        if self.resize_mode != "none" and self.image_size <= 0:
            raise ConfigError(
                f"sources.eol.image_size: resize_mode {self.resize_mode!r} needs a size >= 1, "
                f"got {self.image_size}"
            )


@dataclass(frozen=True)
class PublishedConfig:
    """Rebuild a published dataset (TreeOfLife-10M) from its metadata (docs/stages/published.md).

    EOL images are fetched with `sources.eol`'s downloader settings (mirror, allow_hosts,
    concurrency) or read from the published image sets; iNat21 and BIOSCAN-1M images are
    matched in the user's own copies.
    """

    catalog: str | None = setting(None, path="file")  # catalog.csv (None: published mode off)
    licenses: str | None = setting(None, path="file")  # licenses.csv (md5 + URLs of EOL rows)
    # image_set_*.tar.gz with <treeoflife_id>.jpg members (glob patterns allowed); empty:
    # every EOL image is fetched by its URL
    image_sets: list[str] = setting(factory=list, path="glob")
    # the user's iNat21 train archive(s), matched by inat21_filename
    inat21_archives: list[str] = setting(factory=list, path="file")
    # the user's BIOSCAN-1M image zips (part<chunk>/<file>), matched by bioscan_part/_filename
    bioscan_zips: list[str] = setting(factory=list, path="glob")
    # published: the catalog's seven ranks and common name, exactly (what BioCLIP trained on);
    # resolved: our taxonomy stage on the same names (the label diff says what changed)
    label_mode: str = setting("published", choices=PUBLISHED_LABEL_MODES)
    md5_check: bool = True  # an EOL image whose md5 differs from licenses.csv is set aside
    rows_per_part: int = setting(2000, ge=1)  # plan rows per catalog part (the unit of resume)
    # the dataset card's published totals, compared with the rebuilt counts in the
    # reproduction report: {"eol": 6600000, "full_taxonomy": 8455243, ...}
    expected_totals: dict[str, int] = field(default_factory=dict)

    @property
    def configured(self) -> bool:
        return self.catalog is not None


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
    backbone: str | None = setting(None, path="path")  # DwC-A folder or backbone.zip
    fuzzy_max_distance: int = setting(2, ge=0, le=10)  # edit distance of a fuzzy epithet match
    # Below a higher-rank match, keep the source's own lower ranks when its higher ranks
    # confirm the match (provenance = the source, flag source_below_match).
    source_below_match: bool = True
    # ITIS's downloadable SQLite database, asked (locally) for what the backbone leaves short
    # of a species, before the GBIF API (None: not used).
    itis_sqlite: str | None = setting(None, path="file")
    # GBIF species-match API for what the local backbone misses (None: local only), e.g.
    # https://api.gbif.org. Answers are cached in taxonomy/api-cache.duckdb, so no name is
    # asked twice across runs.
    gbif_api_url: str | None = setting(None, **HTTP_URL)
    gbif_api_version: str = setting("v1", choices=("v1", "v2"))  # v1 | v2
    gbif_checklist_key: str | None = None  # v2 only (e.g. the Catalogue of Life release)
    api_concurrency: int = setting(8, ge=1)  # API requests in flight
    api_rate_per_s: float = setting(10.0, gt=0)  # API requests started per second
    api_retries: int = setting(4, ge=0)  # further attempts after a transient failure
    api_timeout_s: float = setting(30.0, gt=0)  # one whole API request
    api_user_agent: str = (
        "treeoflife/0.1 (+https://github.com/treeoflife/treeoflife)"  # sent to APIs
    )
    # ITIS JSON web service, asked last and only for rows the backbone, the ITIS database and
    # the GBIF API left short of a species (None: not used), e.g. https://www.itis.gov;
    # answers are cached in taxonomy/itis-api-cache.duckdb like GBIF's. Shares the api_* knobs.
    itis_api_url: str | None = setting(None, **HTTP_URL)
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
    metadata: str = setting(path="path")
    # folder the filepaths are relative to (default: the CSV's folder)
    root: str | None = setting(None, path="dir")
    hold_out_species: bool = False  # remove every training image of its species
    # rare_species | birds525 | meta_album | folder | manifest (treeoflife.evalsets.layouts)
    layout: str = setting("rare_species", choices=tuple(LAYOUTS))

    def __post_init__(self):  # also when built in code, not only from YAML
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
    phash_max_distance: int = setting(8, ge=0, le=32)
    # In-train near-duplicate groups by pHash (one image kept per group); None: md5 groups only.
    in_train_phash_max_distance: int | None = setting(None, ge=0, le=32)
    # near-duplicate pairs drawn in dedup/near_pairs.jpg
    contact_sheet_pairs: int = setting(48, ge=0)
    hash_workers: int = setting(2, ge=1)  # processes hashing images (output does not depend on it)


@dataclass(frozen=True)
class SplitsConfig:
    seed: int = setting(0, ge=0)  # seeds the hash that assigns each key its split
    # share of kept images in `val` (0: no validation images; the val split is then empty)
    val_fraction: float = setting(0.05, ge=0, lt=1)
    train_small_fraction: float = setting(0.1, ge=0, le=1)  # share of train also in train_small


@dataclass(frozen=True)
class ShardsConfig:
    samples_per_shard: int = setting(10_000, ge=1)  # a shard ends at this many samples ...
    # ... or before it would pass this many bytes (0: no byte limit)
    max_shard_bytes: int = setting(0, ge=0)
    image_size: int = setting(224, ge=0)  # training resolution; 0 keeps the stored image
    # "shorter_side": shorter side to image_size, aspect kept; "square": image_size x image_size
    # like BioCLIP's make_wds.py (aspect not kept).
    resize_mode: str = setting("shorter_side", choices=SHARD_RESIZE_MODES)
    jpeg_quality: int = setting(95, ge=1, le=100)  # of the shards' JPEGs
    # What the plain `txt` member (the one stock open_clip reads) holds: a caption kind (sci,
    # com, taxon, taxonTag, sci_com, taxon_com, taxonTag_com) or "random": BioCLIP's mixed
    # text type, one of sci/com/taxon/sci_com/taxon_com per sample, fixed by key and seed.
    text_type: str = setting("taxon_com", choices=(*CAPTION_KINDS, "random"))
    seed: int = setting(
        0, ge=0
    )  # seeds the global shuffle across sources and the "random" text type
    # processes decoding/resizing images (output bytes do not depend on it)
    workers: int = setting(1, ge=1)


@dataclass(frozen=True)
class TrainConfig:
    """open_clip_train options (BioCLIP: ViT-B-16 from `openai`, lr 1e-4, 1000 warm-up steps,
    cosine over 100 epochs, wd 0.2, amp, global batch 32,768 = batch_size x GPUs)."""

    model: str = setting(
        "ViT-B-16", nonempty=True
    )  # open_clip model name (or ours: treeoflife-tiny)
    pretrained: str | None = None  # e.g. "openai" where the weights are cached; None: random init
    batch_size: int = setting(256, ge=1)  # per process (open_clip's convention)
    epochs: int = setting(100, ge=1)  # passes over the training shards
    lr: float = setting(1e-4, gt=0)  # peak learning rate
    warmup: int = setting(1000, ge=0)  # warm-up steps
    wd: float = setting(0.2, ge=0)  # weight decay
    precision: str = setting("amp", choices=PRECISIONS)  # open_clip's --precision (CPU: fp32)
    workers: int = setting(8, ge=0)  # data loader processes per training process
    seed: int = setting(0, ge=0)  # open_clip's --seed
    output: str = setting("models", nonempty=True)  # runs folder, relative to the data root
    # Stock open_clip trains on each sample's `txt`; its caption kind (one type or BioCLIP's
    # mixture, "random") is chosen when the shards are written (shards.text_type). When set,
    # this must equal shards.text_type: a guard against training on other captions than meant.
    text_type: str | None = setting(None, choices=(*CAPTION_KINDS, "random"))
    lock_image: bool = False  # freeze the image tower ...
    lock_image_unlocked_groups: int = setting(0, ge=0)  # ... except its last N layer groups
    lock_text: bool = False  # freeze the text tower ...
    lock_text_unlocked_layers: int = setting(0, ge=0)  # ... except its last N layers
    grad_checkpointing: bool = False  # trade compute for memory (open_clip's flag)
    accum_freq: int = setting(1, ge=1)  # batches accumulated per optimizer step
    report_to: str = setting("none", choices=REPORT_TO)  # open_clip's --report-to
    log_every_n_steps: int = setting(100, ge=1)  # open_clip logs (and we report) every N steps
    # >1: torchrun on one node, with --local-loss --gather-with-grad
    nproc_per_node: int = setting(1, ge=1)
    device: str | None = None  # None: cuda when available, else cpu
    export: str = setting("export", **NAME)  # local-dir model folder under <output>/<run>/


@dataclass(frozen=True)
class EvaluateConfig:
    # class names packaged with the evaluation sets
    text_type: str = setting("taxon_com", choices=CAPTION_KINDS)
    # Class names for zero-shot: None uses the packaged ones; else scientific, common,
    # taxonomic, combined (or a caption kind: sci, com, taxon, taxon_com, ...).
    zero_shot_text_type: str | None = setting(None, choices=(*TEXT_TYPE_ALIASES, *CAPTION_KINDS))
    # empty: each set's own templates file; else zero-shot templates with a {c} placeholder
    templates: list[str] = setting(
        factory=list, pattern=r".*\{c\}.*", hint="a template with a {c} placeholder"
    )
    shots: list[int] = setting(factory=lambda: [1, 5], ge=1)  # SimpleShot k
    draws: int = setting(5, ge=1)  # seeded support draws per k
    seed: int = setting(0, ge=0)  # seeds the few-shot support draws
    batch_size: int = setting(256, ge=1)  # images per forward pass
    device: str | None = None  # None: cuda when available, else cpu
    output: str = setting("eval", nonempty=True)  # results folder, relative to the data root


TASK_RUNNERS = ("threads", "dask")


@dataclass(frozen=True)
class ExecutionConfig:
    """Where the heavy stages' parts and shards run (the Prefect flows read it; the CLI runs
    them locally). Output bytes do not depend on any of it."""

    task_runner: str = setting("threads", choices=TASK_RUNNERS)  # threads | dask (prefect-dask)
    # threads: parts/shards at once (each may use its stage's processes)
    max_workers: int = setting(2, ge=1)
    # an existing scheduler (tcp://host:8786); None: LocalCluster
    dask_address: str | None = setting(
        None, pattern=r"[a-z]+://\S+", hint="a scheduler address such as tcp://host:8786"
    )
    dask_workers: int = setting(2, ge=1)  # LocalCluster worker processes
    dask_threads_per_worker: int = setting(1, ge=1)  # LocalCluster threads per worker

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

    shared: str | None = None  # an fsspec URL (s3://bucket/prefix); None: the data root
    options: dict[str, typing.Any] = field(default_factory=dict)  # fsspec filesystem options

    def __post_init__(self):
        if self.shared is not None and "://" not in self.shared:
            raise ConfigError(
                f"storage.shared: {self.shared!r} is not a URL such as s3://bucket/prefix "
                "(a folder every worker mounts needs no setting: it is the data root)"
            )


@dataclass(frozen=True)
class SampleOptions:
    """Options of the bundled sample generator (`treeoflife sample`; the `sample:` mapping)."""

    seed: int = setting(0, ge=0)  # seeds the generated world (same seed, same bytes)
    # also write the sample world in the published TreeOfLife-10M layout (sample/published/)
    published: bool = False


@dataclass(frozen=True)
class BuildConfig:
    # where every output goes (and relative source paths are read from)
    data_root: str = setting("data", nonempty=True)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    taxonomy: TaxonomyConfig = field(default_factory=TaxonomyConfig)
    # evaluation sets: deduplicated against, packaged with the release, evaluated on
    evalsets: list[EvalSetConfig] = field(default_factory=list)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    splits: SplitsConfig = field(default_factory=SplitsConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    # rebuild from a published catalog (TreeOfLife-10M's catalog.csv + licenses.csv)
    published: PublishedConfig = field(default_factory=PublishedConfig)
    # sample generator options (SampleOptions); present: the sample stage generates the sources
    sample: dict[str, typing.Any] = setting(factory=dict, schema=SampleOptions)

    def __post_init__(self):
        if self.train.text_type is not None and self.train.text_type != self.shards.text_type:
            raise ConfigError(
                f"train.text_type: {self.train.text_type!r} differs from shards.text_type "
                f"{self.shards.text_type!r} (stock open_clip trains on the shards' txt)"
            )
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

    def glob(self, value: str) -> list[Path] | None:
        """The files a glob pattern from the config matches (relative to the data root, whose
        own `?` or `[` are literal), sorted; None when `value` is no pattern."""
        return glob_under(self.root, value)

    def section_dict(self, name: str) -> dict:
        return dataclasses.asdict(getattr(self, name))


def input_problems(cfg: BuildConfig) -> list[str]:
    """Every input path the build reads that does not exist, one line each.

    URLs other than file:// are not checked (the stage fetching them reports). With a `sample`
    section, what the sample stage will generate (under <data_root>/sample) is not checked yet.
    """
    problems = Problems()
    generated = os.path.abspath(cfg.root / "sample") if cfg.sample else None
    for where, kind, value in walk_paths(cfg):
        local = local_path(value)
        if local is None:
            continue
        path = cfg.path(local)
        if generated and os.path.commonpath([generated, os.path.abspath(path)]) == generated:
            continue
        relative = not Path(os.path.expanduser(local)).is_absolute()
        problem = (
            path_problem(kind, Path(os.path.expanduser(local)), cfg.root)
            if kind == "glob" and relative
            else path_problem(kind, path)
        )
        if problem:
            problems.add(where, problem)
    return problems


def load_config(
    path: str | Path, data_root: str | None = None, check_inputs: bool = False
) -> BuildConfig:
    """Read and validate a YAML build config; `data_root` overrides the file's.

    Every problem is reported at once (one ConfigError, one line per problem). `check_inputs`
    also checks that the input paths exist (what `treeoflife build` asks for; `verify`,
    `train` and the others do not read the sources).
    """
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
    cfg = check(BuildConfig, data)
    if check_inputs:
        raise_problems(input_problems(cfg))
    return cfg


def config_from_dict(data: dict) -> BuildConfig:
    return check(BuildConfig, data)
