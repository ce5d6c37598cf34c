"""One stage of a root kept by bench/scale.py --keep, measured again with bench/scale.py's meter
(the stage's own process; driver VmHWM, whole-tree CPU through a cgroup where one can be made):
what a change to one stage costs at 1M without rebuilding the other stages. Remove the stage's
outputs first (e.g. `rm -rf ROOT/release ROOT/state/release.done.json`) to measure a full run.

    .venv/bin/python bench/scale_stage.py /tmp/treeoflife-scale/config-1M.yaml release
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scale import run_stage  # noqa: E402


def main(config: str, stage: str) -> dict:
    log = Path(config).with_name(f"{Path(config).stem}-{stage}.log")  # beside the config
    m = run_stage(Path(config), stage, log)
    mib = {k: round(v / 2**20) for k, v in m.items() if "rss" in k and isinstance(v, int | float)}
    return {**m, **{f"{k}_mib": v for k, v in mib.items()}}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: bench/scale_stage.py CONFIG STAGE (a root kept by bench/scale.py --keep)")
    else:
        print(json.dumps(main(sys.argv[1], sys.argv[2]), indent=1))
