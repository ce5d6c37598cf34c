"""What became of an evaluation set's images: counted, listed, and an error when none is usable.

A set none of whose images could be hashed would make dedup against it silently void, so it
stops the build (before the dedup stage) naming the set and the first paths; a set with some
images missing or refused is a warning, and the dedup report lists them.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pyarrow as pa

from treeoflife.errors import InputError
from treeoflife.vocabulary import IngestStatus, Reason

log = logging.getLogger(__name__)

LISTED_PATHS = 20  # paths listed per problem in the report and the error


def image_report(hashes: pa.Table) -> dict:
    """Per set: rows listed, images hashed, and the missing and outside-the-set rows (count +
    first paths), from its hashes table (schema EVAL_HASHES)."""
    rows = hashes.select(["eval_key", "phash", "status", "reason"]).to_pylist()
    missing = [r["eval_key"] for r in rows if r["reason"] == Reason.MISSING_FILE]
    outside = [r["eval_key"] for r in rows if r["reason"] == Reason.OUTSIDE_SET]
    failed = Counter(r["reason"] or "failed" for r in rows if r["status"] != IngestStatus.OK)
    return {
        "listed": len(rows),
        "hashed": sum(r["phash"] is not None for r in rows),
        "failed": dict(sorted(failed.items())),
        "missing": len(missing),
        "missing_paths": missing[:LISTED_PATHS],
        "outside_set": len(outside),
        "outside_set_paths": outside[:LISTED_PATHS],
    }


def check_images(
    name: str, root: Path, outcomes: list[tuple[str, str | None]], warn: bool = True
) -> None:
    """InputError when no image of the set is usable; with `warn`, a warning when some are not.

    `outcomes`: (filepath, reason) per listed row, reason None for a usable image.
    """
    failed = Counter(reason for _, reason in outcomes if reason is not None)
    if len(outcomes) == sum(failed.values()):
        first = ", ".join(f"{path!r} ({reason})" for path, reason in outcomes[:LISTED_PATHS])
        raise InputError(
            f"evaluation set {name}: none of its {len(outcomes)} images is usable under "
            f"{root} ({_counts(failed) or 'it lists no images'})"
            + (f"; first: {first}" if first else "")
            + ": fix the set's metadata/root, or remove the set from the config"
        )
    if failed and warn:
        missing = [path for path, reason in outcomes if reason == Reason.MISSING_FILE]
        log.warning(
            "evaluation set %s: %d of %d images not usable (%s); first missing: %s",
            name,
            sum(failed.values()),
            len(outcomes),
            _counts(failed),
            ", ".join(missing[:5]) or "none",
        )


def _counts(counts: Counter) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items()))
