"""A minimal progress protocol: library stages report, the CLI and flows display.

Library code never prints; it calls `progress.start(stage, total)` and `progress.advance(n)`.
"""

from __future__ import annotations

from typing import Protocol


class Progress(Protocol):
    def start(self, stage: str, total: int | None) -> None: ...

    def advance(self, n: int = 1) -> None: ...

    def finish(self) -> None: ...


class NullProgress:
    """Progress that goes nowhere (tests, notebooks)."""

    def start(self, stage: str, total: int | None) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


def or_null(progress: Progress | None) -> Progress:
    return progress if progress is not None else NullProgress()
