"""Benchmark helpers: a JPEG corpus made from real photos, and process-tree measurements.

The photos are the ones scikit-image ships inside its wheel (astronaut, coffee, chelsea, rocket,
...). The wheel is fetched once with pip from PyPI (`pip download --no-deps`; nothing is
installed) and the PNG/JPEG files are read straight out of it, so the corpus is reproducible on
any machine from the project's own files. Not a benchmark itself (`make bench` runs it as a
no-op).
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

SKIMAGE_VERSION = "0.26.0"
# Real photographs in the scikit-image wheel (greyscale ones are converted to RGB).
PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
    "camera.png",
    "coins.png",
    "moon.png",
    "grass.png",
    "gravel.png",
    "brick.png",
)
CACHE = Path(__file__).resolve().parent / ".cache"


def skimage_wheel() -> Path:
    folder = CACHE / "wheels"
    found = sorted(folder.glob(f"scikit_image-{SKIMAGE_VERSION}-*.whl"))
    if found:
        return found[0]
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "-d", str(folder), f"scikit-image=={SKIMAGE_VERSION}"],
        check=True,
    )  # fmt: skip
    return sorted(folder.glob(f"scikit_image-{SKIMAGE_VERSION}-*.whl"))[0]


def load_photos() -> list[Image.Image]:
    with zipfile.ZipFile(skimage_wheel()) as zf:
        names = set(zf.namelist())
        photos = []
        for name in PHOTOS:
            member = f"skimage/data/{name}"
            if member in names:
                img = Image.open(io.BytesIO(zf.read(member)))
                photos.append(img.convert("RGB"))
    if not photos:
        raise RuntimeError("no photos found in the scikit-image wheel")
    return photos


def build_corpus(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """`n` JPEGs: random crops of the photos, ~70% at max side 500 (iNat21-like), ~30% at max
    side 800-1600 (EOL full-size copies). Reused when already built with the same settings."""
    folder = Path(folder)
    stamp = folder / "corpus.json"
    spec = {"n": n, "seed": seed, "skimage": SKIMAGE_VERSION, "photos": PHOTOS}
    files = [folder / "img" / f"{i:05d}.jpg" for i in range(n)]
    if stamp.exists() and json.loads(stamp.read_text()) == json.loads(json.dumps(spec)):
        return files
    photos = load_photos()
    rng = random.Random(seed)
    (folder / "img").mkdir(parents=True, exist_ok=True)
    for path in files:
        photo = photos[rng.randrange(len(photos))]
        w, h = photo.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = rng.randrange(w - cw + 1), rng.randrange(h - ch + 1)
        crop = photo.crop((x, y, x + cw, y + ch))
        side = 500 if rng.random() < 0.7 else rng.randrange(800, 1601)
        scale = side / max(cw, ch)
        img = crop.resize((max(1, round(cw * scale)), max(1, round(ch * scale))), Image.LANCZOS)
        tmp = path.with_suffix(".tmp")
        img.save(tmp, format="JPEG", quality=rng.choice((85, 90, 95)))
        os.replace(tmp, path)
    stamp.write_text(json.dumps(spec))
    return files


def _descendants(pid: int) -> list[int]:
    """The process and its descendants, via /proc/<pid>/task/<tid>/children (no full scan)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
            except OSError:
                continue
    return out


def tree_usage(pid: int) -> tuple[int, dict[int, float]]:
    """(RSS bytes, {pid: CPU seconds so far}) of a process and all its descendants, from /proc."""
    page = os.sysconf("SC_PAGE_SIZE")
    tick = os.sysconf("SC_CLK_TCK")
    rss_total = 0
    cpu: dict[int, float] = {}
    for p in _descendants(pid):
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        rss_total += int(fields[21]) * page
        cpu[p] = (int(fields[11]) + int(fields[12])) / tick
    return rss_total, cpu


@dataclass
class RunResult:
    wall_s: float
    cpu_s: float  # user + system of the process tree (/proc samples or rusage, the larger)
    peak_rss: int  # peak of the summed RSS of the process tree, sampled every 0.2 s
    returncode: int


def run_measured(argv: list[str], env: dict | None = None, cwd: Path | None = None) -> RunResult:
    """Run a command to completion; wall time, CPU of the whole tree and its peak RSS."""
    peak = 0
    start = time.monotonic()
    proc = subprocess.Popen(argv, env=env, cwd=cwd)
    stop = threading.Event()

    cpu_seen: dict[int, float] = {}

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            rss, cpu = tree_usage(proc.pid)
            peak = max(peak, rss)
            for p, c in cpu.items():
                cpu_seen[p] = max(cpu_seen.get(p, 0.0), c)
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    stop.set()
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    # rusage misses grandchildren nobody waited for; /proc samples miss the last 0.2 s of each
    cpu = max(usage.ru_utime + usage.ru_stime, sum(cpu_seen.values()))
    return RunResult(wall, cpu, peak, proc.returncode)


def load_line(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    """The load-average footer every results file carries (shared machines skew figures)."""
    return (
        f"load average before / after: {' '.join(f'{x:.2f}' for x in before)} / "
        f"{' '.join(f'{x:.2f}' for x in after)}"
    )


def write_results(path: str | Path, title: str, script: str, report: str) -> None:
    """bench/results/<name>.md: title, date, core count, the command that ran, the report."""
    import datetime

    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = f".venv/bin/python {script} " + " ".join(
        a for a in sys.argv[1:] if not a.startswith("--results")
    )
    Path(path).write_text(
        f"# {title}\n\n{when}, {os.cpu_count()} cores.\n\n```\n{cmd.rstrip()}\n```\n\n{report}\n"
    )
