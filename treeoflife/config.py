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


@dataclass(frozen=True)
class INat21Archive:
    images: str  # .tar.gz path or URL
    annotations: str  # COCO JSON path or URL
    md5: str | None = None  # published md5 of `images`, checked when given


@dataclass(frozen=True)
class INat21Config:
    archives: list[INat21Archive] = field(default_factory=list)
    images_per_part: int = 2000


@dataclass(frozen=True)
class BioscanConfig:
    metadata: str | None = None  # BIOSCAN_Insect_Dataset_metadata.tsv
    zips: list[str] = field(default_factory=list)  # image zips with part<chunk>/<file> members
    images_per_part: int = 2000


@dataclass(frozen=True)
class EOLConfig:
    manifests: list[str] = field(default_factory=list)  # media manifest CSV chunks
    pages: str | None = None  # page id -> name (+ hierarchy) CSV
    # URL prefix rewrites: {"https://content.eol.org/data/media/": "sample/eol/mirror/"}.
    # A value that is not an http(s)/file URL is a local directory relative to the data root.
    mirror: dict[str, str] = field(default_factory=dict)
    rows_per_part: int = 2000
    concurrency: int = 32
    per_host_concurrency: int = 8
    timeout_s: float = 30.0
    retries: int = 3
    max_bytes: int = 50_000_000
    user_agent: str = "treeoflife/0.1 (+https://github.com/treeoflife/treeoflife)"


@dataclass(frozen=True)
class SourcesConfig:
    inat21: INat21Config = field(default_factory=INat21Config)
    bioscan: BioscanConfig = field(default_factory=BioscanConfig)
    eol: EOLConfig = field(default_factory=EOLConfig)


@dataclass(frozen=True)
class TaxonomyConfig:
    backbone: str | None = None  # DwC-A folder or backbone.zip
    fuzzy_max_distance: int = 2


@dataclass(frozen=True)
class EvalSetConfig:
    name: str
    # Rare-Species-style CSV: kingdom,phylum,cls,order,family,genus,species,common_name,filepath
    metadata: str
    root: str | None = None  # folder the filepaths are relative to (default: the CSV's folder)
    hold_out_species: bool = False  # remove every training image of its species


@dataclass(frozen=True)
class DedupConfig:
    phash_max_distance: int = 8


@dataclass(frozen=True)
class SplitsConfig:
    seed: int = 0
    val_fraction: float = 0.05
    train_small_fraction: float = 0.1


@dataclass(frozen=True)
class ShardsConfig:
    samples_per_shard: int = 10_000
    image_size: int = 224  # shorter side after resize (aspect kept); 0 keeps the stored image
    jpeg_quality: int = 95
    text_type: str = "taxon_com"  # what the plain `txt` member holds
    seed: int = 0


@dataclass(frozen=True)
class TrainConfig:
    model: str = "ViT-B-16"
    pretrained: str | None = None
    batch_size: int = 256
    epochs: int = 100
    lr: float = 1e-4
    warmup: int = 1000
    wd: float = 0.2
    precision: str = "amp"
    workers: int = 8
    seed: int = 0
    output: str = "models"


@dataclass(frozen=True)
class EvaluateConfig:
    text_type: str = "taxon_com"
    batch_size: int = 256
    output: str = "eval"


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
    sample: dict[str, typing.Any] = field(default_factory=dict)  # sample generator options

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
        raise ConfigError(f"cannot read config {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    if data_root is not None:
        data["data_root"] = data_root
    return _build(BuildConfig, data, "")


def config_from_dict(data: dict) -> BuildConfig:
    return _build(BuildConfig, data, "")
