"""The scale rehearsal's tables and its cost model (bench/scale.py writes them; `--report`
rewrites them from saved scale.json files)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import psutil

STAGES = ("ingest", "taxonomy", "hashes", "dedup", "release")


def parse_size(text: str) -> int:
    text = text.strip().lower()
    mult = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * mult)


def label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


# ------------------------------------------------------------------------------ the cost model


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed, per image) of a line through the smallest and largest measured sizes."""
    (n1, y1), (n2, y2) = points[0], points[-1]
    if n1 == n2:
        return 0.0, y1 / n1
    per = (y2 - y1) / (n2 - n1)
    return y1 - per * n1, per


def cost_model(results: list[dict], basis: list[int] | None = None) -> dict:
    """Per stage, lines fitted through the measured sizes in `basis` (default: the two
    smallest): total CPU, the driver's own CPU (the serial part), the driver's peak RSS."""
    basis = basis or sorted(r["images"] for r in results)[:2]
    chosen = [r for r in sorted(results, key=lambda r: r["images"]) if r["images"] in basis]
    model = {}
    for i, stage in enumerate(STAGES):
        pts = lambda k, i=i: [(r["images"], r["stages"][i].get(k, 0.0)) for r in chosen]  # noqa: E731
        model[stage] = {
            "cpu": _fit(pts("cpu_s")),
            "driver_cpu": _fit(pts("driver_cpu_s")),
            "driver_rss": _fit(pts("driver_peak_rss")),
        }
    return {"basis": basis, "stages": model}


def predict(model: dict, n: int, workers: int) -> dict:
    """CPU s, serial s, wall s on `workers` dedicated cores, driver RSS bytes, per stage.

    wall = serial + (cpu - serial) / workers: the driver's own CPU does not spread; the rest
    (parts, shards, hashing processes) does, perfectly (an optimistic bound: no I/O wait)."""
    out = {}
    for stage, m in model["stages"].items():
        cpu = max(0.0, m["cpu"][0] + m["cpu"][1] * n)
        serial = min(cpu, max(0.0, m["driver_cpu"][0] + m["driver_cpu"][1] * n))
        out[stage] = {
            "cpu_s": cpu,
            "serial_s": serial,
            "wall_s": serial + (cpu - serial) / workers,
            "driver_rss": m["driver_rss"][0] + m["driver_rss"][1] * n,
        }
    return out


def model_lines(results: list[dict]) -> list[str]:
    """The cost model's fit and its check against every measured size outside its basis."""
    model = cost_model(results)
    lines = [
        f"Fitted through {', '.join(label(n) for n in model['basis'])} (CPU s = fixed + "
        "per image x N; serial = the driver's own CPU; wall on W cores = serial + rest / W).",
        "",
        "| stage | CPU fixed s | CPU ms/img | serial fixed s | serial ms/img | driver RSS MiB "
        "fixed | driver RSS B/img |",
        "|---|---|---|---|---|---|---|",
    ]
    for stage, m in model["stages"].items():
        lines.append(
            f"| {stage} | {m['cpu'][0]:.1f} | {1000 * m['cpu'][1]:.3f} | "
            f"{m['driver_cpu'][0]:.1f} | {1000 * m['driver_cpu'][1]:.3f} | "
            f"{m['driver_rss'][0] / 2**20:.0f} | {m['driver_rss'][1]:.0f} |"
        )
    for r in results:
        if r["images"] in model["basis"]:
            continue
        p = predict(model, r["images"], 2)
        lines += ["", f"Prediction vs measurement at {label(r['images'])} (CPU s):", "",
                  "| stage | predicted | measured | ratio |", "|---|---|---|---|"]  # fmt: skip
        for i, stage in enumerate(STAGES):
            got = r["stages"][i]["cpu_s"]
            want = p[stage]["cpu_s"]
            lines.append(f"| {stage} | {want:.1f} | {got:.1f} | {got / max(want, 1e-9):.2f} |")
    lines += ["", "| images | workers | CPU h | serial h | wall h | driver RSS GiB (max stage) |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for n in (1_000_000, 10_000_000, 200_000_000):
        for w in (1, 8, 32, 128):
            p = predict(model, n, w)
            lines.append(
                f"| {label(n)} | {w} | {sum(x['cpu_s'] for x in p.values()) / 3600:.2f} | "
                f"{sum(x['serial_s'] for x in p.values()) / 3600:.2f} | "
                f"{sum(x['wall_s'] for x in p.values()) / 3600:.2f} | "
                f"{max(x['driver_rss'] for x in p.values()) / 2**30:.1f} |"
            )
    return lines


# ------------------------------------------------------------------------------ reporting


def growth_table(results: list[dict], key: str = "cpu_s") -> list[str]:
    """Per-image cost (ms) per stage at each size, and relative to the smallest size. CPU
    seconds by default: wall time on a shared machine follows the other sessions' load."""
    sizes = [label(r["images"]) for r in results]
    what = "CPU" if key == "cpu_s" else "wall"
    lines = [
        "| stage | " + " | ".join(f"{what} ms/img {s}" for s in sizes) + " | "
        + " | ".join(f"x at {s}" for s in sizes[1:]) + " |",
        "|---" * (2 * len(sizes)) + "|",
    ]  # fmt: skip
    for i, stage in enumerate(STAGES):
        per = [1000 * r["stages"][i][key] / r["images"] for r in results]
        rel = [p / max(per[0], 1e-12) for p in per[1:]]
        lines.append(f"| {stage} | " + " | ".join(f"{p:.3f}" for p in per) + " | "
                     + " | ".join(f"{x:.2f}" for x in rel) + " |")  # fmt: skip
    tot = [sum(m[key] for m in r["stages"]) * 1000 / r["images"] for r in results]
    lines.append("| **all** | " + " | ".join(f"{p:.3f}" for p in tot) + " | "
                 + " | ".join(f"{p / tot[0]:.2f}" for p in tot[1:]) + " |")  # fmt: skip
    return lines


def stage_table(r: dict) -> list[str]:
    mib = 2**20
    lines = [
        f"### {label(r['images'])} images",
        "",
        f"World generated in {r['world_s']:.0f} s; inputs {r['inputs_bytes'] / mib:.0f} MiB; "
        f"backbone {r['world']['backbone_rows']:,} rows; "
        f"evaluation images {sum(r['world']['expected']['eval_images'].values()):,}.",
        "",
        "| stage | wall s | CPU s | ms/img | CPU ms/img | driver peak RSS MiB | worker peak RSS "
        "MiB (one / sum) | read MiB | written MiB | load before -> after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in r["stages"]:
        lines.append(
            f"| {m['stage']} | {m['wall_s']:.1f} | {m['cpu_s']:.1f} | {m['per_image_ms']:.3f} | "
            f"{m['cpu_per_image_ms']:.3f} | {m['driver_peak_rss'] / mib:.0f} | "
            f"{m['worker_peak_rss'] / mib:.0f} / {m['workers_peak_rss_sum'] / mib:.0f} | "
            f"{m['read_bytes'] / mib:.0f} | {m['write_bytes'] / mib:.0f} | "
            f"{m['load_before'][0]:.1f} -> {m['load_after'][0]:.1f} |"
        )
    wall = sum(m["wall_s"] for m in r["stages"])
    cpu = sum(m["cpu_s"] for m in r["stages"])
    lines += ["", f"Total: wall {wall:.0f} s, CPU {cpu:.0f} s; driver peak RSS "
              f"{max(m['driver_peak_rss'] for m in r['stages']) / mib:.0f} MiB.", ""]  # fmt: skip
    disk = r["disk"]
    shards = disk["release/shards"]
    total = sum(disk.values())
    lines.append(
        "Data root: "
        + ", ".join(f"{k} {v / mib:.0f} MiB" for k, v in disk.items())
        + f"; total {total / mib:.0f} MiB = {total / max(shards, 1):.2f}x the shards "
        f"(goal: <= 2.2x beside the inputs' {r['inputs_bytes'] / mib:.0f} MiB)."
    )
    diffs = r["count_diffs"]
    lines += ["", "Final statuses vs the world's plan: "
              + ("all equal." if not diffs else "; ".join(diffs))]  # fmt: skip
    for name in sorted(k for k in r if k == "kill" or k.startswith("kill_run_")):
        k = r[name]
        if "killed" not in k:
            continue
        killed = ", ".join(s for s, hit in k["killed"].items() if hit) or "none"
        missed = ", ".join(s for s, hit in k["killed"].items() if not hit)
        lines += ["", f"SIGKILL per stage ({k.get('note', 'at half the clean wall')}): killed "
                  f"mid-run: {killed}" + (f" (finished before the kill: {missed})" if missed
                  else "") + f"; every stage rerun: {k['files']} release files, differing "
                  f"from the clean build: {k['differ'] or 'none'}."]  # fmt: skip
    if "dask" in r:
        d = r["dask"]
        lines += ["", f"Prefect flow on a Dask LocalCluster: wall {d['wall_s']:.0f} s (load "
                  f"{d['load'][0]:.1f} -> {d['load'][1]:.1f}); {d['files']} release files, "
                  f"differing from the CLI build: {d['differ'] or 'none'}."]  # fmt: skip
    return lines + [""]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    mem = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} CPUs ({cpu}), {mem:.1f} GiB RAM, Python {platform.python_version()}"


def write_results(results: list[dict], path: Path) -> None:
    lines = [
        "# Scale rehearsal (bench/scale.py)",
        "",
        f"Machine: {machine()}; written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        "The box is shared: the load average beside every stage says how much of it the run had.",
        "",
    ]
    if len(results) > 1:
        lines += ["## Growth (CPU per image, relative to the smallest size)", "",
                  *growth_table(results), "", "Wall per image (follows the machine's load):",
                  "", *growth_table(results, "wall_s"), "",
                  "## Cost model (as measured: ~5 KB images)", "",
                  *model_lines(results), ""]  # fmt: skip
    lines += ["## Per stage", ""]
    for r in results:
        lines += stage_table(r)
    path.write_text("\n".join(lines))
    path.with_suffix(".json").write_text(json.dumps(results, indent=1))
