"""What an evaluation image is labelled: the query its ranks make, its label, its class name.

A row (treeoflife.evalsets.layouts) is resolved by the taxonomy stage like any training row,
under the source `evalset/<name>`. Its label is the resolved taxon when the resolution reached
a kingdom, else the set's own ranks; the class name is the caption text the training shards
carry for that label minus the "a photo of" template, so zero-shot evaluation with the
template "a photo of {c}." asks exactly the question the model was trained on.

BioCLIP compares class names given as scientific names, common names, the taxonomic string and
the taxonomic string plus common name; `rename_classes` gives a packaged set's classes in
another of these text types from the same labels.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

from treeoflife import records
from treeoflife.errors import ConfigError, InputError
from treeoflife.shards.text import TEXT_TYPES, caption_members

_PREFIX, _SUFFIX = "a photo of ", "."

# BioCLIP's names for the text types it compares, as caption kinds of our shards.
TEXT_TYPE_ALIASES = {
    "scientific": "sci",
    "common": "com",
    "taxonomic": "taxon",
    "combined": "taxon_com",
    "scientific_common": "sci_com",
}
# The label columns of the hashes table (treeoflife.schemas.EVAL_HASHES) -> row columns.
LABEL_COLUMNS = {
    "label": "class",  # the set's own label
    "kingdom": "kingdom",
    "phylum": "phylum",
    "class": "cls",
    "order": "order",
    "family": "family",
    "genus": "genus",
    "species": "species",
    "common_name": "common_name",
}


def evalset_source(name: str) -> str:
    """The `source` of an evaluation set's taxonomy queries."""
    return f"evalset/{name}"


def verbatim_ranks(row: Mapping) -> dict:
    """The verbatim ranks and name of a row, as the taxonomy stage's query columns."""
    genus = (row.get("genus") or "").strip()
    species = (row.get("species") or "").strip()
    if species and " " in species:  # a binomial in the species column
        name = species
    else:
        name = " ".join(x for x in (genus, species) if x)
    return {
        "verbatim_kingdom": row.get("kingdom") or None,
        "verbatim_phylum": row.get("phylum") or None,
        "verbatim_class": row.get("cls") or row.get("class") or None,
        "verbatim_order": row.get("order") or None,
        "verbatim_family": row.get("family") or None,
        "verbatim_genus": genus or None,
        "verbatim_scientific_name": name or None,
        "verbatim_common_name": row.get("common_name") or None,
    }


def row_query_id(name: str, row: Mapping) -> str:
    """The taxonomy query id of a row of the set `name` (its row in taxa.parquet)."""
    return records.query_id(evalset_source(name), verbatim_ranks(row))


def _blank_to_none(value: str | None) -> str | None:
    value = (value or "").strip()
    return value or None


def label_columns(row: Mapping) -> dict:
    """The set's own label, ranks and common name of a row, as the hashes table's columns."""
    return {out: _blank_to_none(row.get(src)) for out, src in LABEL_COLUMNS.items()}


def source_label(row: Mapping) -> dict:
    """The set's own label of a row. With no class rank, the set's label stands in for it, so
    a class that is no taxon (`Corn Gray leaf spot`) still has a caption."""
    return {
        "kingdom": row.get("kingdom"),
        "phylum": row.get("phylum"),
        "class": row.get("cls") or row.get("class"),
        "order": row.get("order"),
        "family": row.get("family"),
        "genus": row.get("genus"),
        "species": row.get("species"),
        "common_name": row.get("common_name"),
    }


def row_label(row: Mapping, resolved: Mapping | None) -> dict:
    """The label of a row: its resolved taxon if that reached a kingdom, else the set's own;
    the set's common name when the label has none."""
    label = dict(resolved) if resolved and resolved.get("kingdom") else source_label(row)
    if not label.get("common_name"):
        label["common_name"] = row.get("common_name")
    return label


def labeller(name: str, taxa: Mapping[str, Mapping]) -> Callable[[Mapping], dict]:
    """row -> label for the set `name`, given the taxa table's rows by query id."""
    return lambda row: row_label(row, taxa.get(row_query_id(name, row)))


def class_name(label: Mapping, text_type: str) -> str:
    """The class text of a label for a caption kind (sci, com, taxon, taxon_com ...)."""
    caption = caption_members(label)[f"{text_type}.txt"]
    return caption.removeprefix(_PREFIX).removesuffix(_SUFFIX)


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
