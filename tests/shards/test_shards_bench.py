"""bench/shards.py runs end to end on a tiny corpus: it uses the shard package's building
blocks (the shard files, the closer), so a rename there must not leave it broken. Speeds are
not asserted (they live in the benchmark's own output)."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_shards_bench_prints_every_row(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "shards.py"), "--images", "40",
         "--per-shard", "15", "--reps", "1", "--work", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=True,
    ).stdout  # fmt: skip
    rows = dict(re.findall(r"^\| (.+?) \| ([\d.~]+) \|$", out, flags=re.M))
    for label in ("ours (write_shards", "webdataset.ShardWriter", "raw write", "SHA-256 floor",
                  "ours with nothing to pack", "ours' ceiling", "codec bound per core",
                  "full stage per core"):  # fmt: skip
        value = next(v for k, v in rows.items() if k.startswith(label))
        assert float(value) > 0, (label, out)
    assert "3 shards" in out  # 40 samples, 15 per shard
    assert re.search(r"median of 9 interleaved pairs \d\.\d\d", out)
    assert re.search(r"ours / that \d+\.\d\d", out)
    assert not list(tmp_path.iterdir())  # its scratch folder is gone
