"""Match type per rank, derived from each rank's provenance and the row's match.

A row resolved by one authority can still carry ranks from elsewhere: the source's own labels
below a higher-rank match, a rank the precedence config gave to the source, or ranks another
authority filled. Each rank says how it was matched so a user can filter on it.
"""

from __future__ import annotations

import pyarrow as pa

from treeoflife.schemas import RANKS, SOURCES, TAXA

SOURCE = "source"
INHERITED = "inherited"


def _is_source(provenance: str) -> bool:
    return provenance in SOURCES or provenance == SOURCE or provenance.startswith("evalset")


def rank_match_type(value, provenance, authority, match_type) -> str | None:
    """The match type of one rank (null where the rank is null)."""
    if value is None:
        return None
    if provenance is None or provenance == authority:
        return match_type
    return SOURCE if _is_source(provenance) else INHERITED


def with_rank_match_types(taxa: pa.Table) -> pa.Table:
    """`taxa` (TAXA schema) with every `<rank>_match_type` column computed."""
    authority = taxa.column("authority").to_pylist()
    match = taxa.column("match_type").to_pylist()
    for rank in RANKS:
        values = taxa.column(rank).to_pylist()
        prov = taxa.column(f"{rank}_provenance").to_pylist()
        col = [
            rank_match_type(v, p, a, m)
            for v, p, a, m in zip(values, prov, authority, match, strict=True)
        ]
        name = f"{rank}_match_type"
        i = taxa.schema.get_field_index(name)
        taxa = taxa.set_column(i, TAXA.field(name), pa.array(col, pa.string()))
    return taxa
