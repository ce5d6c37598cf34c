"""Configurable precedence per rank between an authority's label and the source's own label.

Each taxa row holds, per rank, one value with its provenance (an authority such as
gbif-backbone, itis, gbif-api, or the source), and the source's own label (the verbatim rank,
or the epithet of the verbatim name for species). A precedence list per rank, e.g.
`{"species": ["source", "gbif-backbone"]}`, says which of the two wins when both are given and
differ: the earlier name in the list. `"source"` stands for whichever source the row came from;
an authority absent from the list keeps its value. No list for a rank (the default) keeps
today's behaviour: the authority wins, the source only fills what the authority left empty.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from treeoflife.config import check_precedence  # noqa: F401 - re-exported
from treeoflife.schemas import TAXA
from treeoflife.taxonomy.kingdoms import canonical_kingdom
from treeoflife.taxonomy.merge import scientific_name
from treeoflife.taxonomy.names import normalize_name

log = logging.getLogger(__name__)

SOURCE = "source"
FLAG = "source_precedence"


def _source_label(row: dict, rank: str) -> str | None:
    if rank == "species":
        return normalize_name(row.get("verbatim_scientific_name")).epithet
    value = (row.get(f"verbatim_{rank}") or "").strip()
    if not value:
        return None
    if rank == "kingdom":
        return canonical_kingdom(value)
    return value


def _source_first(order: list[str], authority: str) -> bool:
    return SOURCE in order and authority in order and order.index(SOURCE) < order.index(authority)


def apply_rank_precedence(
    taxa: pa.Table, sources: dict[str, str], precedence: dict[str, list[str]]
) -> tuple[pa.Table, int]:
    """Apply `precedence` to every row; returns the table (same rows, same order) and the
    number of ranks switched to the source's label (each such row gets flag `source_precedence`).
    """
    check_precedence(precedence)
    if not precedence:
        return taxa, 0
    rows = taxa.to_pylist()
    switched = 0
    for row in rows:
        source = sources.get(row["query_id"])
        changed = False
        for rank, order in precedence.items():
            current, prov = row[rank], row[f"{rank}_provenance"]
            if current is None or prov is None or prov == source:
                continue  # empty ranks are filled by the resolver already
            label = _source_label(row, rank)
            if label is None or label.lower() == current.lower():
                continue
            if _source_first(order, prov):
                row[rank], row[f"{rank}_provenance"] = label, source
                changed = True
                switched += 1
        if changed:
            row["scientific_name"] = scientific_name(row, row["scientific_name"])
            row["flags"] = sorted({*(row["flags"] or []), FLAG})
    if switched:
        log.info("taxonomy: %d ranks took the source's label by precedence", switched)
    return pa.Table.from_pylist(rows, schema=TAXA), switched
