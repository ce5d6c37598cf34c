"""Reliability figures: the EOL fault soak at scale, SIGKILLs survived, the bad-input table.

In one run, on a seeded EOL world (tests/reliability/eol_world.py: ~18% of requests faulted
with 5xx, 429 + Retry-After, resets, truncation, slow drips, plus permanent 404/403/410,
never-ending 503, HTML/PDF/SVG/empty bodies) served over loopback by
tests.support.mirror_server.MirrorServer:

- ours: `ingest_eol` (retries 3, backoff with jitter, Retry-After honoured): requests made and
  faulted, transiently faulted rows recovered, permanent failures by reason, rows lost, and
  whether the catalog + image store equal a run with only the permanent faults;
- the peer, img2dataset 1.47 (its own venv, see bench/download.py) with `--retries 3` on the
  same URLs and the same faults: rows recovered, by fault kind;
- SIGKILLs: the ingest child killed at seeded random moments, rerun until done, outputs
  compared with the uninterrupted run;
- the bad-input table (tests/reliability/bad_inputs.py): cases tried, rows tried, rows lost;
- the hostile-fetch table (tests/reliability/hostile_fetch.py): hostile URLs tried, local or
  private files published (must be 0), requests that reached the secret server.
- the settings table (tests/test_config_settings.py): bad settings tried, refused as expected;
  and issue 15's bad settings given to `treeoflife build` at once (tests/test_config_issue15.py);
- concurrent builds (tests/reliability/concurrent_builds.py): trials of two `treeoflife build`
  started together on one fresh data root, and how many ended with both builds done, nothing
  opaque, no temporaries and a release equal to a single build's.
- drift matrix (tests/incremental/test_drift_matrix.py, run by pytest): kinds of input change
  tried, and how many incremental builds equalled a fresh build of the changed inputs.

    .venv/bin/python bench/reliability.py [--urls 5000] [--kills 5] [--skip-img2dataset]
        [--concurrent 20] [--drift-only]

Writes bench/results/reliability.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pyarrow.parquet as pq  # noqa: E402

from tests.reliability import concurrent_builds  # noqa: E402
from tests.reliability.bad_inputs import CASES, check, rows_lost  # noqa: E402
from tests.reliability.eol_world import (  # noqa: E402
    EOL_PREFIX,
    PERMANENT,
    TRANSIENT,
    build_world,
    config_dict,
)
from tests.reliability.hostile_fetch import CASES as HOSTILE  # noqa: E402
from tests.reliability.hostile_fetch import check as check_hostile  # noqa: E402
from tests.reliability.hostile_fetch import run_case  # noqa: E402
from tests.soak.test_kill_resume import KILLS as CLI_KILLS  # noqa: E402
from tests.support.mirror_server import MirrorServer  # noqa: E402
from tests.test_config_issue15 import ISSUE_15, LINES  # noqa: E402
from tests.test_config_settings import SETTINGS  # noqa: E402
from treeoflife.config import config_from_dict  # noqa: E402

SEED = 20261124
ROWS_PER_PART = 1000  # 6 parts: kills land between and inside parts


def path_kinds(world) -> dict[str, str]:
    """Server path -> planned fate, for every fetched manifest row (first occurrence)."""
    kinds: dict[str, str] = {}
    with open(world.manifest, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            fields = line.rstrip("\n").split(",")
            if len(fields) == 6 and fields[3].startswith(EOL_PREFIX):
                path = "/" + fields[3][len(EOL_PREFIX) :]
                kinds.setdefault(path, world.expected[f"eol/{fields[0]}_{fields[1]}"].kind)
    return kinds


def permanent_hits(server, kinds: dict[str, str]) -> int:
    """Requests spent on URLs that fail for good (a 404 asked again is impolite and wasted)."""
    return sum(server.hits[p] for p, k in kinds.items() if k in PERMANENT)


def outputs(root: Path) -> dict[str, bytes]:
    """Catalog parts, _stats.json and image tars (status tables hold timings: left out)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for sub in ("catalog/eol", "images/eol")
        for p in sorted((root / sub).rglob("*"))
        if p.is_file() and not p.name.endswith(".status.parquet")
    }


def status_rows(root: Path) -> list[dict]:
    parts = sorted((root / "catalog" / "eol").glob("part-?????.status.parquet"))
    return [r for p in parts for r in pq.read_table(p).to_pylist()]


def leftovers(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob("*") if ".tmp" in p.name)


def child(root: Path, world, server) -> list[str]:
    """The command line of the ingest child (its own process, like the peer's)."""
    cfg_file = root.parent / f"{root.name}.json"
    cfg_file.write_text(json.dumps(config_dict(root, world, server.url, ROWS_PER_PART)))
    return [sys.executable, "-m", "tests.reliability.eol_world", str(cfg_file)]


def run_ours(root: Path, world, server) -> float:
    t0 = time.perf_counter()
    subprocess.run(child(root, world, server), cwd=ROOT, check=True, capture_output=True)
    return time.perf_counter() - t0


def soak(base: Path, world) -> dict:
    with MirrorServer(world.mirror, faults=world.faults) as server:
        wall = run_ours(base / "faulted", world, server)
        hits, faulted = sum(server.hits.values()), sum(server.faulted.values())
        on_permanent = permanent_hits(server, path_kinds(world))
    with MirrorServer(world.mirror, faults=world.permanent_faults) as server:
        run_ours(base / "reference", world, server)
    rows = status_rows(base / "faulted")
    keys = [r["key"] for r in rows]
    by_key = {r["key"]: r for r in rows}
    transient = [k for k, e in world.expected.items() if e.kind in TRANSIENT]
    permanent = [k for k, e in world.expected.items() if e.kind in PERMANENT]
    wrong = [
        k
        for k, e in world.expected.items()
        if (by_key.get(k, {}).get("status"), by_key.get(k, {}).get("reason"))
        != (e.status, e.reason)
    ]
    return {
        "wall_s": wall,
        "rows_in": world.rows,
        "requests": hits,
        "requests_faulted": faulted,
        "requests_to_permanent_failures": on_permanent,
        "by_status": dict(collections.Counter(r["status"] for r in rows)),
        "transient_rows": len(transient),
        "transient_recovered": sum(1 for k in transient if by_key[k]["status"] == "ok"),
        "retried_rows": sum(1 for r in rows if r["attempts"] > 1),
        "permanent_rows": len(permanent),
        "permanent_reasons": dict(
            sorted(collections.Counter(by_key[k]["reason"] for k in permanent).items())
        ),
        "skipped_or_unfetched": dict(
            sorted(
                collections.Counter(
                    r["reason"] for r in rows if r["attempts"] == 0 and r["reason"]
                ).items()
            )
        ),
        "rows_lost": world.rows - len(set(keys)),
        "rows_twice": len(keys) - len(set(keys)),
        "unexpected_outcomes": len(wrong),
        "equals_fault_free": outputs(base / "faulted") == outputs(base / "reference"),
        "leftovers": len(leftovers(base / "faulted")),
    }


def kills(base: Path, world, n_kills: int) -> dict:
    """Kill the ingest child at seeded random moments; a run that ends before its kill is a
    finished build: its outputs are checked against the uninterrupted run and the next build
    starts from nothing. The last build runs to the end after the last kill."""
    root = base / "killed"
    rng = random.Random(SEED)
    killed = 0
    builds: list[bool] = []  # each finished build: equal to the uninterrupted run, no leftovers
    reference = outputs(base / "reference")

    def finished() -> None:
        builds.append(outputs(root) == reference and not leftovers(root))
        shutil.rmtree(root)

    with MirrorServer(world.mirror, faults=world.faults) as server:
        argv = child(root, world, server)
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
        full = time.perf_counter() - t0
        finished()
        while killed < n_kills:
            proc = subprocess.Popen(argv, cwd=ROOT, start_new_session=True, stderr=subprocess.PIPE)
            deadline = time.monotonic() + rng.uniform(0.3, 0.8 * full)
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if proc.poll() is not None:
                _, err = proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(err.decode(errors="replace")[-2000:])
                finished()
                continue
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            killed += 1
        subprocess.run(argv, cwd=ROOT, check=True, capture_output=True)
        finished()
    return {
        "kills": killed,
        "builds": len(builds) - 1,  # the first, uninterrupted one is not counted
        "uninterrupted_s": full,
        "all_equal_and_clean": all(builds),
    }


def img2dataset_peer(base: Path, world) -> dict:
    from download import IMG2DATASET_VERSION, ensure_img2dataset

    exe = ensure_img2dataset()
    with MirrorServer(world.mirror, faults=world.faults) as server:
        by_path = path_kinds(world)
        kinds = {server.url + p: k for p, k in by_path.items()}
        urls = list(kinds)
        (base / "urls.txt").write_text("\n".join(urls) + "\n")
        out = base / "img2dataset"
        argv = [
            str(exe), "--url_list", str(base / "urls.txt"), "--input_format", "txt",
            "--output_folder", str(out), "--thread_count", "32", "--processes_count", "2",
            "--resize_mode", "no", "--output_format", "webdataset", "--retries", "3",
            "--timeout", "3", "--enable_wandb", "False",
        ]  # fmt: skip
        env = {**os.environ, "WANDB_MODE": "disabled", "NO_ALBUMENTATIONS_UPDATE": "1"}
        t0 = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - t0
        hits, faulted = sum(server.hits.values()), sum(server.faulted.values())
        on_permanent = permanent_hits(server, by_path)
    status: dict[str, str] = {}
    for part in sorted(out.glob("*.parquet")):
        for row in pq.read_table(part, columns=["url", "status"]).to_pylist():
            status[row["url"]] = row["status"]
    transient = [u for u, k in kinds.items() if k in TRANSIENT]
    by_kind = collections.defaultdict(lambda: [0, 0])
    for u in transient:
        by_kind[kinds[u]][1] += 1
        by_kind[kinds[u]][0] += status.get(u) == "success"
    return {
        "version": IMG2DATASET_VERSION,
        "wall_s": wall,
        "urls": len(urls),
        "requests": hits,
        "requests_faulted": faulted,
        "requests_to_permanent_failures": on_permanent,
        "transient_rows": len(transient),
        "transient_recovered": sum(1 for u in transient if status.get(u) == "success"),
        "by_kind": {k: f"{v[0]}/{v[1]}" for k, v in sorted(by_kind.items())},
        "ok": sum(1 for s in status.values() if s == "success"),
        "permanent_ok": sum(
            1 for u, k in kinds.items() if k in PERMANENT and status.get(u) == "success"
        ),
    }


def bad_inputs(base: Path) -> dict:
    tried = lost = failed = 0
    failures = []
    for i, case in enumerate(CASES):
        result = case.run(base / f"case{i}")
        tried += result.rows_in
        lost += rows_lost(result)
        try:
            check(case, result)
        except AssertionError as exc:
            failed += 1
            failures.append(f"{case.name}: {exc}")
    return {
        "cases": len(CASES),
        "rows_tried": tried,
        "rows_lost": lost,
        "cases_failed": failed,
        "failures": failures,
    }


def hostile(base: Path) -> dict:
    """Each hostile URL through the real ingest; what got out of bounds."""
    published = reached = failed = 0
    failures = []
    for i, case in enumerate(HOSTILE):
        out = run_case(case, base / f"hostile{i}")
        hostile_row = next((r for r in out.rows if r["key"] == "eol/1_7"), None)
        escaped = (
            case.reason is not None and hostile_row is not None and hostile_row["status"] == "ok"
        )
        published += out.secret_published + escaped
        reached += out.secret_hits
        try:
            check_hostile(case, out)
        except AssertionError as exc:
            failed += 1
            failures.append(f"{case.name}: {exc}")
    return {
        "hostile_urls": len(HOSTILE),
        "local_or_private_published": published,
        "requests_to_secret_server": reached,
        "cases_failed": failed,
        "failures": failures,
    }


def settings_table() -> dict:
    """Every bad setting of the table: refused with exactly its one line?"""
    refused = 0
    for _name, fragment, line in SETTINGS:
        try:
            config_from_dict(fragment)
        except Exception as exc:  # a traceback-type error counts as not refused
            refused += getattr(exc, "problems", None) == [line]
    return {
        "tried": len(SETTINGS),
        "refused_as_expected": refused,
        "issue15_at_once": issue15_at_once(),
    }


def issue15_at_once() -> bool:
    """Issue 15's nine bad settings in one config: `treeoflife build` exits 2 before any work,
    with their nine lines and nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "bad.yaml"
        config.write_text(json.dumps(ISSUE_15))  # JSON is YAML
        done = subprocess.run(
            [sys.executable, "-m", "treeoflife.cli", "build", "-q", "--config", str(config)],
            capture_output=True,
            text=True,
            cwd=tmp,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            timeout=300,
        )
        untouched = sorted(p.name for p in Path(tmp).iterdir()) == ["bad.yaml"]
    said = sorted(done.stderr.splitlines())
    return done.returncode == 2 and untouched and said == sorted(f"error: {ln}" for ln in LINES)


def concurrent(base: Path, trials: int) -> dict:
    """`trials` pairs of simultaneous builds on fresh roots, against one single build."""
    reference = concurrent_builds.single_build(base / "single")
    rng = random.Random(SEED)
    results = []
    for i in range(trials):
        results.append(concurrent_builds.trial(base / f"trial-{i}", reference, rng))
        shutil.rmtree(base / f"trial-{i}", ignore_errors=True)
        print(f"concurrent build trial {i}: {results[-1]}")
    return {
        "trials": trials,
        "ok": sum(r.ok for r in results),
        "waited": sum(r.waited for r in results),
        "opaque_errors": sum(bool(r.opaque) for r in results),
        "failed_builds": sum(code != 0 for r in results for code in r.exit_codes),
        "with_temporaries": sum(bool(r.temporaries) for r in results),
        "release_differs": sum(not r.same_as_single for r in results),
        "mean_s": sum(r.seconds for r in results) / max(1, trials),
    }


DRIFT_TEST = "tests/incremental/test_drift_matrix.py::test_incremental_build_equals_fresh_build"
DRIFT_HEADING = "## Drift matrix: incremental build == fresh build"


def drift(base: Path) -> dict:
    """Every kind of input change of tests/incremental/drift.py, through the real matrix test:
    how many kinds were tried and how many incremental builds equalled the fresh build."""
    junit = base / "drift.xml"
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            DRIFT_TEST,
            f"--junitxml={junit}",
        ],  # fmt: skip
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    cases = ET.parse(junit).getroot().iter("testcase")
    outcomes = {c.get("name"): not any(c.iter("failure")) and not any(c.iter("error"))
                for c in cases}  # fmt: skip
    return {
        "kinds": len(outcomes),
        "equal_to_fresh": sum(outcomes.values()),
        "not_equal": sorted(n for n, ok in outcomes.items() if not ok),
        "kinds_tried": sorted(n.split("[", 1)[-1].rstrip("]") for n in outcomes),
        "wall_s": time.perf_counter() - started,
    }


def drift_section(drifted: dict) -> list[str]:
    return [
        DRIFT_HEADING,
        "",
        f"{drifted['kinds']} kinds of input change ({DRIFT_TEST}), each applied to a built "
        "sample and rebuilt incrementally, against a fresh build of the changed inputs; "
        "release byte-identical, `verify` passing and the summary agreeing with the catalog: "
        f"{drifted['equal_to_fresh']} / {drifted['kinds']} (kinds that differed: "
        f"{drifted['kinds'] - drifted['equal_to_fresh']}: "
        f"{', '.join(drifted['not_equal']) or 'none'}; {drifted['wall_s']:.0f} s wall, load "
        f"average {os.getloadavg()[0]:.1f} at the end).",
        "",
        "Kinds: " + ", ".join(drifted["kinds_tried"]) + ".",
        "",
    ]


def write_drift_only(drifted: dict) -> None:
    """Replace the drift section of bench/results/reliability.md, keeping the rest."""
    out = ROOT / "bench" / "results" / "reliability.md"
    text = out.read_text() if out.exists() else ""
    text = text.split(DRIFT_HEADING, 1)[0].rstrip("\n")
    out.write_text(text + "\n\n" + "\n".join(drift_section(drifted)))
    print(f"wrote {out}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--urls", type=int, default=5000)
    ap.add_argument("--kills", type=int, default=5)
    ap.add_argument("--skip-img2dataset", action="store_true")
    ap.add_argument("--concurrent", type=int, default=20, help="concurrent-build trials")
    ap.add_argument("--drift-only", action="store_true", help="only the drift matrix")
    args = ap.parse_args()
    if args.drift_only:
        with tempfile.TemporaryDirectory() as tmp:
            drifted = drift(Path(tmp))
        print("drift matrix:", json.dumps(drifted))
        write_drift_only(drifted)
        if drifted["kinds"] != drifted["equal_to_fresh"] or not drifted["kinds"]:
            sys.exit("an incremental build differs from the fresh build: see above")
        return
    logging.basicConfig(level=logging.ERROR)  # the bad inputs log warnings by design
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    base = Path(tempfile.mkdtemp(prefix="bench-reliability-"))
    try:
        world = build_world(base / "in", args.urls, SEED)
        ours = soak(base, world)
        print("ours:", json.dumps(ours))
        peer = None if args.skip_img2dataset else img2dataset_peer(base, world)
        if peer:
            print("img2dataset:", json.dumps(peer))
        killed = kills(base, world, args.kills)
        print("kills:", json.dumps(killed))
        bad = bad_inputs(base / "bad")
        print("bad inputs:", json.dumps(bad))
        hostile_urls = hostile(base / "hostile")
        print("hostile fetches:", json.dumps(hostile_urls))
        bad["settings"] = settings_table()
        print("settings:", json.dumps(bad["settings"]))
        together = concurrent(base / "concurrent", args.concurrent)
        print("concurrent builds:", json.dumps(together))
        drifted = drift(base)
        print("drift matrix:", json.dumps(drifted))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    load_after = os.getloadavg()
    write_report(
        args, started, load_before, load_after, ours, peer, killed, bad, hostile_urls, together,
        drifted,
    )  # fmt: skip
    broken = [
        ours["rows_lost"],
        ours["rows_twice"],
        ours["unexpected_outcomes"],
        not ours["equals_fault_free"],
        not killed["all_equal_and_clean"],
        bad["rows_lost"],
        bad["cases_failed"],
        hostile_urls["local_or_private_published"],
        hostile_urls["requests_to_secret_server"],
        hostile_urls["cases_failed"],
        bad["settings"]["tried"] - bad["settings"]["refused_as_expected"],
        not bad["settings"]["issue15_at_once"],
        together["trials"] - together["ok"],
        drifted["kinds"] - drifted["equal_to_fresh"],
    ]
    if any(broken):
        sys.exit("a row lost or twice, an outcome not as planned, or outputs differ: see above")


def write_report(
    args, started, load_before, load_after, ours, peer, killed, bad, hostile, together, drifted
) -> None:
    cmd = "  .venv/bin/python bench/reliability.py"
    if args.urls != 5000 or args.kills != 5:
        cmd += f" --urls {args.urls} --kills {args.kills}"
    if args.skip_img2dataset:
        cmd += " --skip-img2dataset"
    if args.concurrent != 20:
        cmd += f" --concurrent {args.concurrent}"
    pct = 100 * ours["requests_faulted"] / ours["requests"]
    lines = [
        "# reliability: fault soak, SIGKILLs, bad inputs",
        "",
        f"{started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores.",
        "",
        "```",
        cmd,
        "```",
        "",
        f"EOL fault soak: {ours['rows_in']} manifest rows, served over loopback by "
        "tests.support.mirror_server.MirrorServer (seeded faults, tests/reliability/eol_world.py; "
        "the server runs in the benchmark's process, each downloader in its own). Ours: "
        f"rows_per_part {ROWS_PER_PART}, 3 parts in flight, 48 requests in flight, decoding "
        "inline, read timeout 3 s; img2dataset: 32 threads x 2 processes, --timeout 3, no "
        "resize.",
        "",
        "| figure | ours (ingest_eol, retries 3) |"
        + (f" img2dataset {peer['version']} (--retries 3) |" if peer else ""),
        "|---|---|" + ("---|" if peer else ""),
        f"| requests made | {ours['requests']} |" + (f" {peer['requests']} |" if peer else ""),
        f"| requests faulted | {ours['requests_faulted']} ({pct:.1f}%) |"
        + (f" {peer['requests_faulted']} |" if peer else ""),
        f"| requests to URLs that fail for good | {ours['requests_to_permanent_failures']} |"
        + (f" {peer['requests_to_permanent_failures']} |" if peer else ""),
        f"| transiently faulted rows recovered | {ours['transient_recovered']} / "
        f"{ours['transient_rows']} |"
        + (f" {peer['transient_recovered']} / {peer['transient_rows']} |" if peer else ""),
        f"| wall s | {ours['wall_s']:.1f} |" + (f" {peer['wall_s']:.1f} |" if peer else ""),
        "",
        f"ours: rows by status {ours['by_status']}; rows retried {ours['retried_rows']}; "
        f"permanent failures by reason {ours['permanent_reasons']} "
        f"({ours['permanent_rows']} rows); never fetched {ours['skipped_or_unfetched']}; "
        f"rows lost {ours['rows_lost']}, rows counted twice {ours['rows_twice']}, rows not "
        f"ending as planned {ours['unexpected_outcomes']}; catalog + image store equal to a "
        f"run with only the permanent faults: {ours['equals_fault_free']}; temporaries left: "
        f"{ours['leftovers']}.",
    ]
    if peer:
        lines += [
            "",
            f"img2dataset by transient fault kind (recovered / rows): {peer['by_kind']}; "
            f"permanent-failure URLs it stored anyway: {peer['permanent_ok']}.",
        ]
    lines += [
        "",
        f"SIGKILL: the EOL ingest child killed {killed['kills']} times at seeded random "
        f"moments (uninterrupted run {killed['uninterrupted_s']:.1f} s), each build rerun "
        f"until it finished ({killed['builds']} builds): every finished build equal to the "
        f"uninterrupted run with no temporaries left: {killed['all_equal_and_clean']}. The "
        f"whole CLI build's kill soak (tests/soak/test_kill_resume.py) survives {CLI_KILLS} "
        "kills per run in the test suite.",
        "",
        f"Bad inputs (tests/reliability/bad_inputs.py): {bad['cases']} cases, "
        f"{bad['rows_tried']} rows tried, rows lost: {bad['rows_lost']}, cases not as "
        f"expected: {bad['cases_failed']}. Settings tried (tests/test_config_settings.py): "
        f"{bad['settings']['tried']}, refused with their one line before any work: "
        f"{bad['settings']['refused_as_expected']}. Issue 15's nine bad settings in one "
        "config (tests/test_config_issue15.py), given to `treeoflife build`: refused at once, "
        f"one line each, exit 2, nothing created: {bad['settings']['issue15_at_once']}.",
        "",
        f"Concurrent builds (tests/reliability/concurrent_builds.py): {together['trials']} "
        "trials of two `treeoflife build` started together (the second 0-1.5 s later) on a "
        f"fresh data root; ended with both builds done, nothing opaque on stderr, no "
        f"temporaries and the release equal to a single build's: {together['ok']} / "
        f"{together['trials']} (second build waited for the first's lock: "
        f"{together['waited']}; failed builds: {together['failed_builds']}; opaque errors: "
        f"{together['opaque_errors']}; temporaries left: {together['with_temporaries']}; "
        f"release differs: {together['release_differs']}; mean {together['mean_s']:.1f} s a "
        "trial).",
        "",
        f"Hostile fetches (tests/reliability/hostile_fetch.py): {hostile['hostile_urls']} "
        "hostile URLs tried (file:// outside the mirror in every spelling, ../ and %2e%2e out "
        "of the mirror, a symlink out, loopback / private / metadata addresses as URLs and as "
        "redirects, redirects to ftp:// and file://, credentials in URLs); local or private "
        f"files published: {hostile['local_or_private_published']}; requests that reached the "
        f"secret server: {hostile['requests_to_secret_server']}; cases not as expected: "
        f"{hostile['cases_failed']}.",
        "",
        "load average before / after: "
        + " ".join(f"{x:.2f}" for x in load_before)
        + " / "
        + " ".join(f"{x:.2f}" for x in load_after),
        "",
        *drift_section(drifted),
    ]
    out = ROOT / "bench" / "results" / "reliability.md"
    out.write_text("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
