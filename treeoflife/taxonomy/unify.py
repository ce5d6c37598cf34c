"""One label for one species across sources: rows whose genus + epithet agree take the ranks of
the member an authority vouches for most (`unify_species_labels`)."""

from __future__ import annotations

from treeoflife.schemas import RANKS
from treeoflife.taxonomy.merge import AUTHORITIES, HIGHER_RANKS, rank_key
from treeoflife.taxonomy.names import match_key


def _authority_ranks(row: dict) -> int:
    return sum(1 for r in RANKS if row[r] and row[f"{r}_provenance"] in AUTHORITIES)


def _labels(row: dict) -> tuple:
    return tuple(row[r] for r in RANKS)


def unify_species_labels(rows: list[dict]) -> int:
    """Give one species one label across sources: rows whose genus + epithet agree (and whose
    labelled higher ranks do not differ) take the ranks of the member an authority vouches for
    most (then highest confidence, then smallest query_id), when that member is better backed
    than they are. Ranks the donor lacks keep the row's own value. Flag
    `unified_across_sources`.
    Rows are changed in place; returns how many changed.
    """
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        if row["species"] and row["genus"]:
            key = (match_key(row["genus"]), match_key(row["species"]))
            groups.setdefault(key, []).append(row)
    changed = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        kingdoms = {rank_key("kingdom", m["kingdom"]) for m in members} - {None}
        if len(kingdoms) > 1:  # a cross-kingdom homonym, not one species
            continue
        donor = min(members, key=lambda m: (-_authority_ranks(m), -m["confidence"], m["query_id"]))
        backing = _authority_ranks(donor)
        for m in members:
            if m is donor or _labels(m) == _labels(donor) or _authority_ranks(m) >= backing:
                continue
            if any(
                m[r] and donor[r] and rank_key(r, m[r]) != rank_key(r, donor[r])
                for r in HIGHER_RANKS
            ):  # the row's own ranks say it is another taxon with the same name
                continue
            for r in RANKS:
                if donor[r]:
                    m[r], m[f"{r}_provenance"] = donor[r], donor[f"{r}_provenance"]
            m["scientific_name"] = donor["scientific_name"]
            m["taxon_id"] = m["taxon_id"] or donor["taxon_id"]
            m["common_name"] = m["common_name"] or donor["common_name"]
            m["flags"] = sorted(set(m["flags"]) | {"unified_across_sources"})
            if m["reason"] is not None and m["kingdom"]:
                m["reason"] = None
            changed += 1
    return changed
