"""Zero-shot class names in another text type than the one an evaluation set was packaged with.

BioCLIP compares class names given as scientific names, common names, the taxonomic string and
the taxonomic string plus common name. A packaged set names its classes in one text type; the
same labels (taxon + common name per image) give every other one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from treeoflife.errors import ConfigError, InputError
from treeoflife.evalsets import class_name
from treeoflife.shards.text import TEXT_TYPES

# BioCLIP's names for the text types it compares, as caption kinds of our shards.
TEXT_TYPE_ALIASES = {
    "scientific": "sci",
    "common": "com",
    "taxonomic": "taxon",
    "combined": "taxon_com",
    "scientific_common": "sci_com",
}


def caption_kind(text_type: str) -> str:
    """The caption kind (`sci`, `com`, `taxon`, `taxon_com`, ...) of a text type name."""
    kind = TEXT_TYPE_ALIASES.get(text_type, text_type)
    if kind not in TEXT_TYPES:
        expected = sorted({*TEXT_TYPE_ALIASES, *TEXT_TYPES})
        raise ConfigError(f"unknown text type {text_type!r}; expected one of {expected}")
    return kind


def rename_classes(
    classnames: Sequence[str], labels: Iterable[Mapping], packaged_type: str, text_type: str
) -> list[str]:
    """`classnames` (in `packaged_type`) rewritten in `text_type`, same order.

    `labels` are the per-image labels the set was packaged from (kingdom .. species,
    common_name); every packaged class must be named by at least one of them. Two labels of one
    class that disagree in the new text type keep the first in sorted order, so the result does
    not depend on row order.
    """
    packaged_kind, kind = caption_kind(packaged_type), caption_kind(text_type)
    wanted = set(classnames)
    candidates: dict[str, set[str]] = {}
    for label in labels:
        old = class_name(label, packaged_kind)
        if old in wanted:
            candidates.setdefault(old, set()).add(class_name(label, kind))
    missing = [c for c in classnames if c not in candidates]
    if missing:
        raise InputError(
            f"{len(missing)} class(es) have no label to rename them from, e.g. {missing[:3]}"
        )
    return [sorted(candidates[c])[0] for c in classnames]
