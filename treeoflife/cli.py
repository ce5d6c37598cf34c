"""`treeoflife` command line: the same library stages the Prefect flows run, with progress bars."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from treeoflife import lock, pipeline
from treeoflife.config import BuildConfig, load_config
from treeoflife.errors import ConfigError, TreeOfLifeError
from treeoflife.layout import Layout
from treeoflife.release.stage import verify_release
from treeoflife.runner import StageResult, read_marker
from treeoflife.schemas import SPLITS
from treeoflife.train.stage import run_train  # torch only once training starts
from treeoflife.train.steps import STEP_LOG

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="build config (YAML)")]
DataRootOpt = Annotated[
    str | None, typer.Option("--data-root", help="override the config's data_root")
]
NoWaitOpt = Annotated[
    bool,
    typer.Option(
        "--no-wait", help="exit 2 if another build holds the data root (default: wait for it)"
    ),
]


class TqdmProgress:
    """Progress bars on stderr, one per stage; one line per stage when stderr is not a terminal."""

    def __init__(self, disable: bool = False):
        self.bar: tqdm | None = None
        self.disable = disable
        self.plain = not sys.stderr.isatty()
        self.stage, self.done, self.t0 = "", 0, 0.0

    def start(self, stage: str, total: int | None) -> None:
        self.finish()
        self.stage, self.done, self.t0 = stage, 0, time.perf_counter()
        if not self.plain and not self.disable:
            self.bar = tqdm(
                total=total,
                desc=f"{stage:>20}",
                unit="img",
                leave=False,
                dynamic_ncols=True,
                file=sys.stderr,
            )

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def finish(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.stage and self.plain and not self.disable:
            took = time.perf_counter() - self.t0
            print(f"{self.stage:>22}: {self.done} items in {took:.1f} s", file=sys.stderr)
        self.stage = ""


def _load(config: Path, data_root: str | None) -> BuildConfig:
    # Only `build` reads the sources, so only it checks that the input paths exist (`verify`,
    # `train`, ... still work once the raw sources are gone).
    check_inputs = _invoked["command"] == "build"
    try:
        return load_config(config, data_root=data_root, check_inputs=check_inputs)
    except ConfigError as exc:  # every problem on its own line, before any work
        for line in str(exc).splitlines():
            typer.secho(f"error: {line}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    except TreeOfLifeError as exc:
        _fail(exc)


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


def _one_build(cfg: BuildConfig, no_wait: bool) -> lock.BuildLock:
    """The data root's build lock (treeoflife.lock): one build, sample or train at a time."""
    try:
        return lock.acquire(
            cfg.root,
            " ".join(["treeoflife", *sys.argv[1:]]),
            wait=not no_wait,
            on_wait=lambda msg: typer.echo(msg, err=True),
        )
    except TreeOfLifeError as exc:
        _fail(exc)


def _run(fn, *args):
    try:
        return fn(*args)
    except TreeOfLifeError as exc:
        _fail(exc)
    except OSError as exc:  # storage trouble no stage named: still one line (-v: traceback)
        logging.getLogger(__name__).debug("stage failed", exc_info=True)
        _fail(exc)


_invoked: dict[str, str | None] = {"command": None}  # the subcommand this process runs


@app.callback()
def main(
    ctx: typer.Context, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False
) -> None:
    _invoked["command"] = ctx.invoked_subcommand
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


def format_summary(
    results: dict[str, StageResult], elapsed: float, data_root: Path | None = None
) -> str:
    """The short text the build ends with: counts per source, status, split; where outputs are."""
    lines = []
    for name, res in results.items():
        if name == "release":
            continue
        flag = "up to date" if res.up_to_date else "done"
        if res.skipped:
            lines.append(f"  {name:<16} skipped ({res.skipped})")
        elif name.startswith("ingest-"):
            s = res.summary
            lines.append(
                f"  {name:<16} {flag:<10} rows={s.get('rows')} ok={s.get('ok')} "
                f"failed={s.get('failed')}"
            )
        else:
            lines.append(f"  {name:<16} {flag}")
    rel = results["release"].summary if "release" in results else None
    if rel:
        lines.append("")
        lines.append(f"images: {rel['images']}")
        for source, counts in rel["by_source"].items():
            lines.append(f"  {source:<8} " + "  ".join(f"{k}={v}" for k, v in counts.items()))
        lines.append("status:  " + "  ".join(f"{k}={v}" for k, v in rel["by_status"].items()))
        if rel.get("by_reason"):
            lines.append("reasons: " + "  ".join(f"{k}={v}" for k, v in rel["by_reason"].items()))
        lines.append("splits:  " + "  ".join(f"{k}={v}" for k, v in rel["by_split"].items()))
        for split, s in rel["shards"].items():
            lines.append(f"  shards/{split:<12} {s['shards']} shard(s), {s['samples']} samples")
        for name, s in rel.get("evalsets", {}).items():
            lines.append(f"  evalset {name:<12} {s['images']} images, {s['classes']} classes")
        lines.append("outputs:")
        for what, path in rel["outputs"].items():
            lines.append(f"  {what:<9} {Path(data_root or '.') / path}")
    lines.append(f"finished in {elapsed:.1f} s")
    return "\n".join(lines)


@app.command()
def build(
    config: ConfigOpt = Path("configs/sample.yaml"),
    data_root: DataRootOpt = None,
    stage: Annotated[
        list[str] | None, typer.Option("--stage", help=f"run only these of {pipeline.STAGES}")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
    revalidate: Annotated[
        bool,
        typer.Option(
            "--revalidate",
            help="ask whether finished remote EOL images changed (conditional requests); "
            "refetch those that did",
        ),
    ] = False,
    no_wait: NoWaitOpt = False,
) -> None:
    """Build the dataset end to end (skipping what is already done)."""
    cfg = _load(config, data_root)
    if revalidate:  # sources.eol.revalidate for this run
        eol = dataclasses.replace(cfg.sources.eol, revalidate=True)
        cfg = dataclasses.replace(cfg, sources=dataclasses.replace(cfg.sources, eol=eol))
    stages = tuple(stage) if stage else pipeline.STAGES
    unknown = [s for s in stages if s not in pipeline.STAGES]
    if unknown:
        _fail(ValueError(f"unknown stage(s) {unknown}; choose from {pipeline.STAGES}"))
    t0 = time.perf_counter()
    progress = TqdmProgress(disable=quiet)
    try:
        with _one_build(cfg, no_wait):
            results = _run(pipeline.build, cfg, progress, stages)
    finally:
        progress.finish()
    typer.echo(format_summary(results, time.perf_counter() - t0, cfg.root))


@app.command()
def sample(
    config: ConfigOpt = Path("configs/sample.yaml"),
    data_root: DataRootOpt = None,
    no_wait: NoWaitOpt = False,
) -> None:
    """Generate the bundled sample sources under <data_root>/sample."""
    cfg = _load(config, data_root)
    with _one_build(cfg, no_wait):
        result = _run(pipeline.run, "sample", cfg, TqdmProgress())
    out = {**result.summary, "up_to_date": result.up_to_date}
    typer.echo(json.dumps({"skipped": result.skipped} if result.skipped else out, indent=1))


_SPLIT_ORDER = (*SPLITS, "train_small")
_OUTPUT_ORDER = ("release", "catalog", "shards", "evalsets", "report")


def _in_build_order(values: dict, order: tuple[str, ...]) -> dict:
    """summary.json sorts its keys; the build prints them in `order` (others after, sorted)."""

    def rank(item: tuple) -> tuple:
        return (order.index(item[0]), "") if item[0] in order else (len(order), item[0])

    return dict(sorted(values.items(), key=rank))


def _last_build(cfg: BuildConfig, release: dict) -> dict:
    """The results `build` printed, from the stage markers and the release summary."""
    layout = Layout(cfg.root)
    release = {
        **release,
        "by_split": _in_build_order(release.get("by_split", {}), _SPLIT_ORDER),
        "shards": _in_build_order(release.get("shards", {}), _SPLIT_ORDER),
        "outputs": _in_build_order(release.get("outputs", {}), _OUTPUT_ORDER),
    }
    results: dict[str, StageResult] = {}
    for stage in pipeline.TABLE:
        marker = read_marker(layout.state_dir, stage)
        if marker is not None and stage != "release":
            results[stage] = StageResult(stage, marker.get("result", {}))
    return {**results, "release": StageResult("release", release)}


@app.command()
def summary(
    config: ConfigOpt = Path("configs/sample.yaml"),
    data_root: DataRootOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="the release summary as JSON")] = False,
) -> None:
    """Print the last build's summary (counts and output paths), as `build` ends."""
    cfg = _load(config, data_root)
    path = Layout(cfg.root).summary
    if not path.exists():
        _fail(FileNotFoundError(f"no build summary at {path}: run `treeoflife build` first"))
    text = path.read_text()
    if as_json:
        typer.echo(text)
        return
    try:
        release = json.loads(text)
    except ValueError as exc:
        _fail(ValueError(f"{path} is not a build summary ({exc}): run `treeoflife build`"))
    # format_summary ends with the build's run time, which a summary does not have.
    typer.echo(format_summary(_last_build(cfg, release), 0.0, cfg.root).rsplit("\n", 1)[0])


@app.command()
def verify(
    config: ConfigOpt = Path("configs/sample.yaml"),
    data_root: DataRootOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Read every shard back; check it against its manifest, index and the catalog, and every
    file the build recorded against its size and mtime (exit 1 if anything is wrong)."""
    cfg = _load(config, data_root)
    progress = TqdmProgress(disable=quiet)
    try:
        result = _run(verify_release, cfg, progress)
        damaged = _run(pipeline.damaged_outputs, cfg)
    finally:
        progress.finish()
    for problem in result["problems"]:
        typer.echo(f"release      FAILED {problem}")
    for split, rep in result["splits"].items():
        flag = "ok" if rep["ok"] else "FAILED"
        typer.echo(
            f"{split:<12} {flag:<6} {rep['shards']} shard(s), {rep['samples']} samples, "
            f"{rep['bytes']} bytes"
        )
        for problem in rep["problems"]:
            typer.echo(f"  {problem}")
        if rep["more_problems"]:
            typer.echo(f"  ... and {rep['more_problems']} more problems")
        if rep.get("repair"):
            typer.echo(f"  {rep['repair']}")
    for stage, problems in damaged.items():
        typer.echo(f"{stage:<12} FAILED {len(problems)} output file(s) changed since the build")
        for problem in problems:
            typer.echo(f"  {problem}")
    if not result["ok"] or damaged:
        typer.echo("run `treeoflife build` to repair")
        raise typer.Exit(1)


@contextlib.contextmanager
def _steps_on_terminal(quiet: bool):
    """Show training's step lines (treeoflife.train.steps) on stderr, above the progress bar."""
    steps = logging.getLogger(STEP_LOG.name)
    if quiet:
        yield
        return
    level, propagate = steps.level, steps.propagate
    steps.setLevel(logging.INFO)
    steps.propagate = False  # not a second time through the root handler
    try:
        with logging_redirect_tqdm(loggers=[steps]):
            yield
    finally:
        steps.setLevel(level)
        steps.propagate = propagate


@app.command()
def train(
    config: ConfigOpt = Path("configs/sample.yaml"),
    data_root: DataRootOpt = None,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="no progress bar or step lines")
    ] = False,
    no_wait: NoWaitOpt = False,
) -> None:
    """Train a CLIP model on the built shards with stock open_clip_train; open_clip's steps
    (loss, samples/s, time left) stream to the terminal and to the run's train.log."""
    cfg = _load(config, data_root)
    progress = TqdmProgress(disable=quiet)
    try:
        with _one_build(cfg, no_wait), _steps_on_terminal(quiet):
            result = _run(run_train, cfg, "run", progress)
    finally:
        progress.finish()
    typer.echo(json.dumps(result, indent=1, default=str))


@app.command()
def evaluate(
    config: ConfigOpt = Path("configs/sample.yaml"),
    data_root: DataRootOpt = None,
    checkpoint: Annotated[str | None, typer.Option(help="checkpoint (default: latest)")] = None,
    model: Annotated[
        str | None,
        typer.Option(help="open_clip model: name, local-dir:DIR or hf-hub:ORG/REPO"),
    ] = None,
    label: Annotated[str | None, typer.Option(help="row name in the results table")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bars")] = False,
) -> None:
    """Zero-shot and few-shot top-1 of a model on every packaged evaluation set (a progress
    bar per set)."""
    from treeoflife.evaluation.stage import run_evaluate  # torch and open_clip

    cfg = _load(config, data_root)
    progress = TqdmProgress(disable=quiet)
    try:
        result = _run(
            lambda: run_evaluate(cfg, checkpoint, model=model, label=label, progress=progress)
        )
    finally:
        progress.finish()
    typer.echo(result["markdown"])


if __name__ == "__main__":
    app()
