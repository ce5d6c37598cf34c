"""Shard benchmark: tar writing vs webdataset.ShardWriter and a raw write; the full shard stage
vs the JPEG codec bound. All in one run, same samples, same machine.

    .venv/bin/python bench/shards.py               # 1200 images (~30 s)
    .venv/bin/python bench/shards.py --images 5000

Corpus: real photos (scikit-image's bundled ones, via bench._photos; synthetic
gradients+noise if scikit-image is absent), cut into varied crops with the longer side up to
500 px like iNat21, JPEG q90, stored in an image-store tar as ingest leaves them.

1. Tar writing, MB/s of shard bytes, the same pre-encoded samples (224 px JPEG + 10 BioCLIP
   captions + txt + json) in shards of `--per-shard` samples:
   - ours: treeoflife.shards.shard_file.write_shards (temporary name, sha256, fsync, rename; a
     shard's fsync+rename overlaps the next shard's writing);
   - webdataset.ShardWriter (its TarWriter, no fsync, no hash: it does less);
   - raw: the very bytes of our shards written with 1 MiB writes + fsync per file (Python),
     and `dd bs=1M conv=fsync` of the same total size;
   - the SHA-256 floor: hashlib.sha256 of the same bytes in memory, one thread. A writer that
     puts a sha256 per shard in its manifest hashes each shard as one stream: where this is
     slower than the raw write, no such writer reaches the raw write's rate;
   - ours with nothing to pack: the finished shard bytes through the same shard files
     (TarStream, overlapped atomic closes), the bound for any faster way of packing samples;
   - the plain way to the same verified files: the raw write, then sha256 of the bytes (times
     added), as a release that checksums after writing (dd, then sha256sum);
   - ours' ceiling: its bytes per CPU second (all threads, with the kernel's work for them)
     times the cores, the rate it would reach with every core busy all the time;
   - ours / raw as best-of-reps of each and as the median of interleaved (raw, ours) pairs:
     raw is disk-bound and varies run to run on a VM's shared disk, ours is CPU-bound and
     steady, so the best-of ratio sets ours against raw's luckiest run. Every writer's output
     of the previous rep is removed before its timer starts (~8 ms per 40 MiB here).
2. The full stage, one process, CPU seconds: write_split_shards from the image store (read,
   draft decode, resize to 224, JPEG encode, captions, tar, index, fsync) in images/s per core,
   next to the codec bound measured on the same images (read + resize_for_shard only).
   BioCLIP's make_wds.py: ~15 images/s per worker.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from treeoflife.io import ImageStoreWriter, read_image_bytes, store_member_name  # noqa: E402
from treeoflife.records import treeoflife_id  # noqa: E402
from treeoflife.schemas import CATALOG  # noqa: E402
from treeoflife.shards.parts import packed_size, sample_parts  # noqa: E402
from treeoflife.shards.resize import resize_for_shard  # noqa: E402
from treeoflife.shards.sample_json import sample_json  # noqa: E402
from treeoflife.shards.settings import ShardSettings  # noqa: E402
from treeoflife.shards.shard_file import ShardCloser, ShardFile, write_shards  # noqa: E402
from treeoflife.shards.text import caption_members, text_for  # noqa: E402
from treeoflife.shards.writer import write_split_shards  # noqa: E402

SPECIES = [
    ("Animalia", "Chordata", "Aves", "Passeriformes", "Corvidae", "Corvus", "corax", "raven"),
    ("Plantae", "Tracheophyta", "Magnoliopsida", "Rosales", "Rosaceae", "Rosa", "canina", None),
    ("Fungi", "Basidiomycota", "Agaricomycetes", "Agaricales", "Amanitaceae", "Amanita",
     "muscaria", "fly agaric"),
]  # fmt: skip


def photos() -> list[Image.Image]:
    try:
        from bench._photos import photo_corpus

        return list(photo_corpus(max_side=800).values())
    except Exception:  # noqa: BLE001 - scikit-image absent: synthetic photos-like images
        rng = np.random.default_rng(0)
        out = []
        for i in range(8):
            arr = rng.normal(128, 40, (600, 800, 3)).clip(0, 255).astype(np.uint8)
            arr[..., i % 3] = np.linspace(0, 255, 800, dtype=np.uint8)[None, :]
            out.append(Image.fromarray(arr))
        return out


def corpus(n: int) -> list[bytes]:
    """n JPEGs, longer side 300..500 px, varied crops of real photos."""
    rng = np.random.default_rng(1)
    base = photos()
    out = []
    for i in range(n):
        img = base[i % len(base)]
        w, h = img.size
        cw, ch = int(w * rng.uniform(0.5, 1.0)), int(h * rng.uniform(0.5, 1.0))
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img.crop((x, y, x + cw, y + ch))
        side = int(rng.integers(300, 501))
        crop.thumbnail((side, side))
        buf = io.BytesIO()
        crop.convert("RGB").save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def make_rows(data_root: Path, jpegs: list[bytes]) -> list[dict]:
    rows = []
    store = "images/bench/part-00000.tar"
    with ImageStoreWriter(data_root / store) as writer:
        for i, data in enumerate(jpegs):
            key = f"inat21/bench-{i:07d}"
            k, p, c, o, f, g, s, common = SPECIES[i % len(SPECIES)]
            offset, size = writer.add(store_member_name(key), data)
            row = dict.fromkeys(CATALOG.names)
            row.update(
                key=key, treeoflife_id=treeoflife_id(key), source="inat21", kingdom=k, phylum=p,
                order=o, family=f, genus=g, species=s, scientific_name=f"{g} {s}",
                common_name=common, md5=f"{i:032x}", status="kept", split="train",
                image_file=store, image_offset=offset, image_size=size,
            )  # fmt: skip
            row["class"] = c
            rows.append(row)
    return rows


def cpu_and_wall(fn):
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - w0


def best_of(fn, reps: int, clear: Path | None = None):
    """(result, best wall seconds, best CPU seconds of this process) over reps (the least
    disturbed by other load).

    Before each rep, untimed: `clear` (the previous rep's output) is removed, which costs ~8 ms
    per 40 MiB here and is no part of writing, and `os.sync()` leaves no dirty pages, so a
    writer is not charged for flushing its predecessor's data.
    """
    best = best_cpu = float("inf")
    result = None
    for _ in range(reps):
        if clear is not None:
            shutil.rmtree(clear, ignore_errors=True)
            clear.mkdir(parents=True)
        os.sync()
        result, cpu, wall = cpu_and_wall(fn)
        best, best_cpu = min(best, wall), min(best_cpu, cpu)
    return result, best, best_cpu


def bench_tar(rows, data_root: Path, work: Path, per_shard: int, reps: int) -> dict:
    samples = []
    for row in rows:
        data = read_image_bytes(
            data_root, row["image_file"], row["image_offset"], row["image_size"]
        )
        samples.append(
            {
                "__key__": row["treeoflife_id"],
                "jpg": resize_for_shard(data, 224, 95),
                **caption_members(row),
                "txt": text_for(row, "taxon_com", row["key"], 0),
                "json": sample_json(row),
            }
        )
    chunks = [samples[i : i + per_shard] for i in range(0, len(samples), per_shard)]
    # Imported here, before any timer (its import took seconds under load, which made the
    # first ShardWriter rep print 0 MB/s), and not at the top: the stage's spawned encode
    # workers import this module again and would pay for it inside the stage's timer.
    import webdataset as wds

    def ours():
        out = work / "ours"
        infos = write_shards([(out / f"shard-{i:06d}.tar", c) for i, c in enumerate(chunks)])
        return sum(info.bytes for info in infos)

    def shardwriter():
        out = work / "wds"
        with wds.ShardWriter(str(out / "shard-%06d.tar"), maxcount=per_shard, verbose=0) as sink:
            for s in samples:
                sink.write(s)
        return sum(p.stat().st_size for p in out.glob("*.tar"))

    our_files = None

    def raw():
        out = work / "raw"
        total = 0
        for i, blob in enumerate(our_files):
            with open(out / f"f{i}", "wb") as fh:
                view = memoryview(blob)
                for start in range(0, len(blob), 1 << 20):
                    fh.write(view[start : start + (1 << 20)])
                fh.flush()
                os.fsync(fh.fileno())
            total += len(blob)
        return total

    # CPU: of all our threads, with the kernel's work done for them
    ours_bytes, ours_s, ours_cpu = best_of(ours, reps, clear=work / "ours")
    our_files = [p.read_bytes() for p in sorted((work / "ours").glob("*.tar"))]
    raw_bytes, raw_s, _ = best_of(raw, reps, clear=work / "raw")
    wds_bytes, wds_s, _ = best_of(shardwriter, reps, clear=work / "wds")
    mib = ours_bytes / 2**20

    def dd():
        subprocess.run(
            ["dd", "if=/dev/zero", f"of={work / 'dd' / 'dd.bin'}", "bs=1M", f"count={int(mib) + 1}",
             "conv=fsync", "status=none"],
            check=True,
        )  # fmt: skip

    _, dd_s, _ = best_of(dd, reps, clear=work / "dd")

    def sha256():
        for blob in our_files:
            hashlib.sha256(blob).digest()

    _, sha_s, _ = best_of(sha256, reps)

    bodies = [sum(packed_size(sample_parts(x)) for x in chunk) for chunk in chunks]

    def prepacked():
        """Our shards' bytes through the same shard files (TarStream: 1 MiB writes, hashing
        thread, writeback hints; closes overlapped with the next shard, end-of-archive added)
        with no samples to pack: what ours would reach if packing cost nothing."""
        out = work / "prepacked"
        with ShardCloser() as closer:
            for i, (blob, body) in enumerate(zip(our_files, bodies, strict=True)):
                shard = ShardFile(out / f"shard-{i:06d}.tar")
                view = memoryview(blob)
                for start in range(0, body, 1 << 20):
                    shard.stream.write(view[start : min(body, start + (1 << 20))])
                closer.close(shard, lambda info: info)
            closer.wait()

    _, prepacked_s, _ = best_of(prepacked, reps, clear=work / "prepacked")
    pair_ratios = []
    for _ in range(max(reps, 9)):
        _, raw_pair, _ = best_of(raw, 1, clear=work / "raw")
        _, ours_pair, _ = best_of(ours, 1, clear=work / "ours")
        pair_ratios.append(raw_pair / ours_pair)
    return {
        "samples": len(samples),
        "shards": len(chunks),
        "bytes": ours_bytes,
        "ours": ours_bytes / 2**20 / ours_s,
        "ours_cpu": ours_bytes / 2**20 / ours_cpu,
        "shardwriter": wds_bytes / 2**20 / wds_s,
        "shardwriter_bytes": wds_bytes,
        "raw": raw_bytes / 2**20 / raw_s,
        "dd": (int(mib) + 1) / dd_s,
        "sha256": ours_bytes / 2**20 / sha_s,
        "prepacked": ours_bytes / 2**20 / prepacked_s,
        "pairs": len(pair_ratios),
        "pair_ratio": statistics.median(pair_ratios),
    }


def bench_stage(rows, data_root: Path, work: Path, per_shard: int, reps: int) -> dict:
    def codec():
        for row in rows:
            data = read_image_bytes(
                data_root, row["image_file"], row["image_offset"], row["image_size"]
            )
            resize_for_shard(data, 224, 95)

    def stage(workers=1):
        out = work / f"stage{workers}" / "train"
        shutil.rmtree(out.parent, ignore_errors=True)
        settings = ShardSettings(
            image_size=224, jpeg_quality=95, text_type="taxon_com", seed=0,
            samples_per_shard=per_shard, workers=workers,
        )  # fmt: skip
        return write_split_shards(rows, out, settings, data_root=data_root)

    codec()  # warm the page cache and the codec
    # interleaved, best of `reps` each: the CPU seconds of a process vary by ~10% between runs
    # on a shared VM, and a single pair can land on either side of a 0.8 ratio
    codec_cpu = codec_wall = stage_cpu = stage_wall = float("inf")
    for _ in range(reps):
        _, cpu, wall = cpu_and_wall(codec)
        codec_cpu, codec_wall = min(codec_cpu, cpu), min(codec_wall, wall)
        _, cpu, wall = cpu_and_wall(stage)
        stage_cpu, stage_wall = min(stage_cpu, cpu), min(stage_wall, wall)
    _, _, stage2_wall = cpu_and_wall(lambda: stage(2))
    n = len(rows)
    return {
        "codec_per_core": n / codec_cpu,
        "codec_wall": n / codec_wall,
        "stage_per_core": n / stage_cpu,
        "stage_wall": n / stage_wall,
        "stage2_wall": n / stage2_wall,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=1200)
    parser.add_argument("--per-shard", type=int, default=300)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: tmp)")
    args = parser.parse_args(argv)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        data_root = work / "data"
        rows = make_rows(data_root, corpus(args.images))
        tar = bench_tar(rows, data_root, work, args.per_shard, args.reps)
        stage = bench_stage(rows, data_root, work, args.per_shard, args.reps)
    load1 = os.getloadavg()
    print(f"# shards benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{os.cpu_count()} cores")  # fmt: skip
    print(f"corpus: {args.images} JPEGs (real-photo crops, longer side 300-500 px, q90)")
    print()
    mib = tar["bytes"] / 2**20
    print(f"1. tar writing: {tar['samples']} samples (224 px JPEG + 12 text/json members) in "
          f"{tar['shards']} shards, {mib:.1f} MiB; best of {args.reps}")  # fmt: skip
    print("| writer | MB/s |")
    print("|---|---|")
    print(f"| ours (write_shards: tmp name, sha256, fsync, rename) | {tar['ours']:.0f} |")
    print(f"| ours per CPU second of our process (what it costs without other load) "
          f"| {tar['ours_cpu']:.0f} |")  # fmt: skip
    print(f"| ours' ceiling on {os.cpu_count()} cores (its CPU seconds spread over all, no wait) "
          f"| {tar['ours_cpu'] * os.cpu_count():.0f} |")  # fmt: skip
    print(f"| webdataset.ShardWriter (no fsync, no hash) | {tar['shardwriter']:.0f} |")
    print(f"| raw write of the same bytes (1 MiB writes + fsync) | {tar['raw']:.0f} |")
    print(f"| dd bs=1M conv=fsync, same size | {tar['dd']:.0f} |")
    print(f"| SHA-256 floor: hashlib.sha256 of the same bytes, in memory, one thread "
          f"| {tar['sha256']:.0f} |")  # fmt: skip
    print(f"| ours with nothing to pack (the shard bytes through the same shard files) "
          f"| {tar['prepacked']:.0f} |")  # fmt: skip
    print(f"ours / ShardWriter: {tar['ours'] / tar['shardwriter']:.2f}x; "
          f"ours / dd: {tar['ours'] / tar['dd']:.2f}")  # fmt: skip
    print(f"ours / raw write (goal >= 0.90): best of {args.reps} each "
          f"{tar['ours'] / tar['raw']:.2f}; median of {tar['pairs']} interleaved pairs "
          f"{tar['pair_ratio']:.2f}")  # fmt: skip
    print(f"what bounds ours here: its ceiling on {os.cpu_count()} cores / raw write "
          f"{tar['ours_cpu'] * os.cpu_count() / tar['raw']:.2f}; the SHA-256 floor / raw write "
          f"{tar['sha256'] / tar['raw']:.2f} (one sha256 stream per shard); nothing to pack / "
          f"raw write {tar['prepacked'] / tar['raw']:.2f}, ours / nothing to pack "
          f"{tar['ours'] / tar['prepacked']:.2f} (the cost of packing samples)")  # fmt: skip
    raw_then_hash = 1 / (1 / tar["raw"] + 1 / tar["sha256"])
    print(f"the same verified files the plain way (raw write, then sha256 of them: "
          f"{raw_then_hash:.0f} MB/s): ours / that {tar['ours'] / raw_then_hash:.2f}")  # fmt: skip
    print()
    print("2. full shard stage from stored images (read, draft decode, resize 224, encode, "
          f"captions, tar, index, fsync); best of {args.reps}, interleaved")  # fmt: skip
    print("| measure | images/s |")
    print("|---|---|")
    print(f"| codec bound per core (read + decode/resize/encode only, CPU s) "
          f"| {stage['codec_per_core']:.0f} |")  # fmt: skip
    print(f"| full stage per core (write_split_shards, 1 process, CPU s) "
          f"| {stage['stage_per_core']:.0f} |")  # fmt: skip
    print(f"| full stage wall, 1 worker | {stage['stage_wall']:.0f} |")
    print(f"| full stage wall, 2 workers (shared 2-core machine) | {stage['stage2_wall']:.0f} |")
    print("| BioCLIP make_wds.py, per worker (reported) | ~15 |")
    ratio = stage["stage_per_core"] / stage["codec_per_core"]
    print(f"full stage / codec bound, per core: {ratio:.2f} (goal >= 0.80)")
    print(f"load average before / after: {' '.join(f'{x:.2f}' for x in load0)} / "
          f"{' '.join(f'{x:.2f}' for x in load1)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
