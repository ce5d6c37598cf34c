"""Entry point that runs stock open_clip_train with our model configs registered.

    python -m treeoflife.train.launch <open_clip_train arguments>
    torchrun --standalone --nproc_per_node N -m treeoflife.train.launch <arguments>

open_clip only knows the model configs bundled with it; this module adds ours
(`treeoflife.train.model_configs_dir()`, e.g. `treeoflife-tiny`) and hands the arguments to
`open_clip_train.main.main` unchanged, so every open_clip_train flag works as documented there.
"""

from __future__ import annotations

import sys

from treeoflife.train.paths import model_configs_dir


def main(argv: list[str] | None = None) -> int:
    """Register our model configs, run open_clip_train; return a process exit code."""
    import open_clip
    from open_clip_train.main import main as open_clip_train_main

    open_clip.add_model_config(model_configs_dir())
    result = open_clip_train_main(list(sys.argv[1:] if argv is None else argv))
    # open_clip_train returns -1 (after printing why) when it refuses to run, None otherwise.
    return 2 if isinstance(result, int) and result != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
