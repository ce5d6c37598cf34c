"""The settings table: every bad setting is refused before any work, with one line naming it.

Each case is a config fragment and the exact line the user reads. `bench/reliability.py`
counts these cases ("settings tried"). The cases from issue 15 (a concurrency of 0 hung the
EOL download forever; a string sample seed and an int mirror value gave tracebacks; shard
settings were checked only at release, after every earlier stage had run) and issue 20 (a
misspelled top-level key said `error: : unknown key(s) dedupe`) are all here.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from treeoflife.config import config_from_dict, input_problems, load_config
from treeoflife.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
EOL_MEDIA = "https://content.eol.org/data/media/"

# (name, config fragment, the one line it gives)
SETTINGS: list[tuple[str, dict, str]] = [
    ("top_level_typo", {"dedupe": {}}, "top level: unknown key(s) dedupe"),
    (
        "section_typo",
        {"shards": {"sample_per_shard": 3}},
        "shards: unknown key(s) sample_per_shard",
    ),
    ("data_root_empty", {"data_root": ""}, "data_root: must not be empty"),
    ("sample_seed_text", {"sample": {"seed": "abc"}}, "sample.seed: expected int, got 'abc'"),
    ("sample_seed_negative", {"sample": {"seed": -1}}, "sample.seed: must be >= 0, got -1"),
    ("sample_unknown_option", {"sample": {"sed": 1}}, "sample: unknown key(s) sed"),
    (
        "eol_concurrency_0",
        {"sources": {"eol": {"concurrency": 0}}},
        "sources.eol.concurrency: must be >= 1, got 0",
    ),
    (
        "eol_per_host_concurrency_0",
        {"sources": {"eol": {"per_host_concurrency": 0}}},
        "sources.eol.per_host_concurrency: must be >= 1, got 0",
    ),
    (
        "eol_retries_negative",
        {"sources": {"eol": {"retries": -1}}},
        "sources.eol.retries: must be >= 0, got -1",
    ),
    (
        "eol_timeout_0",
        {"sources": {"eol": {"timeout_s": 0}}},
        "sources.eol.timeout_s: must be > 0, got 0",
    ),
    (
        "eol_read_timeout_nan",
        {"sources": {"eol": {"read_timeout_s": float("nan")}}},
        "sources.eol.read_timeout_s: expected a finite number, got nan",
    ),
    (
        "eol_per_host_rps_negative",
        {"sources": {"eol": {"per_host_rps": -3}}},
        "sources.eol.per_host_rps: must be >= 0, got -3",
    ),
    (
        "eol_max_bytes_0",
        {"sources": {"eol": {"max_bytes": 0}}},
        "sources.eol.max_bytes: must be >= 1, got 0",
    ),
    (
        "eol_jpeg_quality_1000",
        {"sources": {"eol": {"jpeg_quality": 1000}}},
        "sources.eol.jpeg_quality: must be in 1..100, got 1000",
    ),
    (
        "eol_resize_mode_unknown",
        {"sources": {"eol": {"resize_mode": "fit"}}},
        "sources.eol.resize_mode: 'fit' is not one of none, max_side, shorter_side",
    ),
    (
        "eol_resize_without_size",
        {"sources": {"eol": {"resize_mode": "max_side"}}},
        "sources.eol.image_size: resize_mode 'max_side' needs a size >= 1, got 0",
    ),
    (
        "eol_processes_0",
        {"sources": {"eol": {"processes": 0}}},
        "sources.eol.processes: must be >= 1, got 0",
    ),
    (
        "eol_mirror_int",
        {"sources": {"eol": {"mirror": {EOL_MEDIA: 5}}}},
        f"sources.eol.mirror[{EOL_MEDIA!r}]: expected str, got 5",
    ),
    (
        "eol_rows_per_part_0",
        {"sources": {"eol": {"rows_per_part": 0}}},
        "sources.eol.rows_per_part: must be >= 1, got 0",
    ),
    (
        "bioscan_package_unknown",
        {"sources": {"bioscan": {"package": "thumbs"}}},
        "sources.bioscan.package: 'thumbs' is not one of cropped_256, original_256, cropped, "
        "original_full",
    ),
    (
        "inat21_md5_malformed",
        {"sources": {"inat21": {"archives": [{"images": "a", "annotations": "b", "md5": "x"}]}}},
        "sources.inat21.archives[0].md5: 'x' is not an md5 (32 hex digits)",
    ),
    (
        "inat21_archive_without_annotations",
        {"sources": {"inat21": {"archives": [{"images": "a.tar.gz"}]}}},
        "sources.inat21.archives[0]: missing required key annotations",
    ),
    (
        "taxonomy_api_version",
        {"taxonomy": {"gbif_api_version": "v3"}},
        "taxonomy.gbif_api_version: 'v3' is not one of v1, v2",
    ),
    (
        "taxonomy_api_url_not_http",
        {"taxonomy": {"gbif_api_url": "api.gbif.org"}},
        "taxonomy.gbif_api_url: 'api.gbif.org' is not an http(s) URL",
    ),
    (
        "taxonomy_rate_0",
        {"taxonomy": {"api_rate_per_s": 0}},
        "taxonomy.api_rate_per_s: must be > 0, got 0",
    ),
    (
        "evalset_layout_unknown",
        {"evalsets": [{"name": "a", "metadata": "a.csv", "layout": "imagenet"}]},
        "evalsets[0].layout: 'imagenet' is not one of rare_species, birds525, meta_album, "
        "folder, manifest",
    ),
    (
        "evalset_name_path",
        {"evalsets": [{"name": "../out", "metadata": "a.csv"}]},
        "evalsets.name: '../out' is not a safe name: use 1-128 letters, digits, '_', '-' or "
        "'.', starting with a letter or digit, without '..' (it names the set's folders)",
    ),
    (
        "evalset_names_twice",
        {"evalsets": [{"name": "a", "metadata": "a.csv"}, {"name": "a", "metadata": "b.csv"}]},
        "evalsets[1].name: 'a' is already the name of evalsets[0] (each set needs its own "
        "name: its hashes and packaged folder are named by it)",
    ),
    (
        "dedup_distance_70",
        {"dedup": {"phash_max_distance": 70}},
        "dedup.phash_max_distance: must be in 0..32, got 70",
    ),
    (
        "splits_val_fraction_1",
        {"splits": {"val_fraction": 1}},
        "splits.val_fraction: must be >= 0 and < 1, got 1",
    ),
    (
        "splits_train_small_negative",
        {"splits": {"train_small_fraction": -0.1}},
        "splits.train_small_fraction: must be in 0..1, got -0.1",
    ),
    (
        "shards_samples_0",
        {"shards": {"samples_per_shard": 0}},
        "shards.samples_per_shard: must be >= 1, got 0",
    ),
    (
        "shards_bytes_negative",
        {"shards": {"max_shard_bytes": -1}},
        "shards.max_shard_bytes: must be >= 0, got -1",
    ),
    (
        "shards_image_size_negative",
        {"shards": {"image_size": -224}},
        "shards.image_size: must be >= 0, got -224",
    ),
    (
        "shards_resize_mode",
        {"shards": {"resize_mode": "crop"}},
        "shards.resize_mode: 'crop' is not one of shorter_side, square",
    ),
    (
        "shards_text_type",
        {"shards": {"text_type": "latin"}},
        "shards.text_type: 'latin' is not one of sci, com, taxon, taxonTag, sci_com, taxon_com, "
        "taxonTag_com, random",
    ),
    (
        "shards_jpeg_quality_0",
        {"shards": {"jpeg_quality": 0}},
        "shards.jpeg_quality: must be in 1..100, got 0",
    ),
    (
        "train_precision",
        {"train": {"precision": "fp64"}},
        "train.precision: 'fp64' is not one of amp, amp_bf16, amp_bfloat16, bf16, fp16, "
        "pure_bf16, pure_fp16, fp32",
    ),
    ("train_lr_0", {"train": {"lr": 0}}, "train.lr: must be > 0, got 0"),
    (
        "train_text_type_disagrees",
        {"train": {"text_type": "sci"}},
        "train.text_type: 'sci' differs from shards.text_type 'taxon_com' (stock open_clip "
        "trains on the shards' txt)",
    ),
    ("evaluate_shots_0", {"evaluate": {"shots": [1, 0]}}, "evaluate.shots[1]: must be >= 1, got 0"),
    (
        "evaluate_template_without_placeholder",
        {"evaluate": {"templates": ["a photo"]}},
        "evaluate.templates[0]: 'a photo' is not a template with a {c} placeholder",
    ),
    (
        "execution_runner",
        {"execution": {"task_runner": "ray"}},
        "execution.task_runner: 'ray' is not one of threads, dask",
    ),
    (
        "storage_not_a_url",
        {"storage": {"shared": "/mnt/nfs"}},
        "storage.shared: '/mnt/nfs' is not a URL such as s3://bucket/prefix (a folder every "
        "worker mounts needs no setting: it is the data root)",
    ),
]


@pytest.mark.parametrize("name, fragment, line", SETTINGS, ids=[c[0] for c in SETTINGS])
def test_a_bad_setting_gives_its_one_line(name, fragment, line):
    with pytest.raises(ConfigError) as err:
        config_from_dict(fragment)
    assert err.value.problems == [line]
    assert str(err.value) == line


def _merge(into: dict, fragment: dict) -> None:
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _path(fragment: dict) -> str:
    """`a.b.c` of a one-key-per-level fragment (a list or a scalar ends it)."""
    ((key, value),) = fragment.items()
    return f"{key}.{_path(value)}" if isinstance(value, dict) and len(value) == 1 else key


def _one_config_with_every_case() -> tuple[dict, list[str]]:
    """One config holding every case that names the key it sets, each key once (checks across
    fields, which run only once a section's fields are valid, are left out)."""
    merged: dict = {}
    lines = []
    seen: set[str] = set()
    for _name, fragment, line in SETTINGS:
        path, key = _path(fragment), line.split(": ")[0]
        if path in seen or "differs" in line or not (key == path or key.startswith(path + "[")):
            continue
        seen.add(path)
        _merge(merged, fragment)
        lines.append(line)
    return merged, lines


def test_every_problem_is_reported_at_once_by_the_cli_before_any_work(tmp_path):
    data, lines = _one_config_with_every_case()
    assert len(lines) > 30
    data["data_root"] = str(tmp_path / "data")
    lines.remove("data_root: must not be empty")
    data["dedupe"] = {"phash_max_distance": 4}
    lines.append("top level: unknown key(s) dedupe")
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(data))
    done = subprocess.run(
        [sys.executable, "-m", "treeoflife.cli", "build", "--config", str(config), "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    said = done.stderr.splitlines()
    assert sorted(said) == sorted(f"error: {ln}" for ln in lines)
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists(), "a stage ran before the settings were checked"


def test_build_checks_input_paths_but_not_urls_or_what_the_sample_generates(tmp_path):
    root = tmp_path / "data"
    (tmp_path / "mirror").mkdir()
    (root / "zips").mkdir(parents=True)
    (root / "zips" / "part1.zip").write_bytes(b"")
    config = tmp_path / "inputs.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "data_root": str(root),
                "sources": {
                    "inat21": {
                        "archives": [
                            {"images": "https://example.org/train.tar.gz", "annotations": "a.json"}
                        ]
                    },
                    "bioscan": {"metadata": "meta.tsv", "zips": ["zips/*.zip", "other/*.zip"]},
                    "eol": {
                        "manifests": ["m1.csv"],
                        "mirror": {
                            EOL_MEDIA: f"file://{tmp_path}/mirror",
                            "https://a.org/": "https://b.org/",
                            "https://c.org/": "no-mirror/",
                        },
                    },
                },
                "taxonomy": {"backbone": "backbone"},
                "evalsets": [{"name": "rare", "metadata": "rare/metadata.csv"}],
            }
        )
    )
    expected = [
        f"sources.inat21.archives[0].annotations: no such file {root}/a.json",
        f"sources.bioscan.metadata: no such file {root}/meta.tsv",
        f"sources.bioscan.zips[1]: no file matches {root}/other/*.zip",
        f"sources.eol.manifests[0]: no such file {root}/m1.csv",
        f"sources.eol.mirror['https://c.org/']: no such folder {root}/no-mirror",
        f"taxonomy.backbone: no such file or folder {root}/backbone",
        f"evalsets[0].metadata: no such file or folder {root}/rare/metadata.csv",
    ]
    assert input_problems(load_config(config)) == expected
    done = subprocess.run(
        [sys.executable, "-m", "treeoflife.cli", "build", "--config", str(config), "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"error: {ln}" for ln in expected]
    assert sorted(p.name for p in root.iterdir()) == ["zips"], "a stage ran"
    # `verify` does not read the sources: it is not refused for them (it finds no release)
    done = subprocess.run(
        [sys.executable, "-m", "treeoflife.cli", "verify", "--config", str(config), "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert done.returncode == 2 and "no catalog" in done.stderr, done.stderr
    # the sample config's sources are generated by its first stage: not missing
    assert input_problems(load_config(REPO / "configs/sample.yaml", data_root=str(root))) == []


def test_shipped_configs_satisfy_every_rule():
    for name in ("sample.yaml", "tol10m.yaml"):
        load_config(REPO / "configs" / name)  # raises on any problem
