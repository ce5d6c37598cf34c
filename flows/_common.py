"""What every flow shares: loading the config inside a run, and progress as log lines."""

from __future__ import annotations

import logging

from prefect import get_run_logger

from treeoflife.config import BuildConfig, load_config


def load(config_path: str, data_root: str | None) -> BuildConfig:
    return load_config(config_path, data_root=data_root)


class LogProgress:
    """treeoflife Progress reported as Prefect log lines (every 10% or so)."""

    def __init__(self) -> None:
        try:
            self.log = get_run_logger()
        except Exception:  # outside a run context
            self.log = logging.getLogger("treeoflife.flows")
        self.stage, self.total, self.done, self.next_pct = "", None, 0, 10

    def start(self, stage: str, total: int | None) -> None:
        self.stage, self.total, self.done, self.next_pct = stage, total, 0, 10
        self.log.info("%s: started (%s items)", stage, total if total is not None else "?")

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.total:
            pct = 100 * self.done // self.total
            if pct >= self.next_pct:
                self.log.info("%s: %d/%d (%d%%)", self.stage, self.done, self.total, pct)
                self.next_pct = pct - pct % 10 + 10

    def finish(self) -> None:
        if self.stage:
            self.log.info("%s: finished (%d items)", self.stage, self.done)
        self.stage = ""
