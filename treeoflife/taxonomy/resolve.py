"""Resolve verbatim taxonomy queries against the local GBIF backbone, with per-rank provenance.

Order per query (first that succeeds wins):
1. exact canonical name (case-insensitive) among accepted/doubtful taxa;
2. synonym -> its accepted taxon;
3. fuzzy epithet within the exact genus (blocked: only species of that genus are compared);
4. the most specific verbatim rank (genus, family, ... kingdom) found in the backbone;
5. the source's own rank labels;
6. unresolved, with a reason.

Name lookups run in DuckDB over the distinct keys of a batch (hash joins against the whole
backbone, one pass per step); Python only picks among the few candidates of each query.
A candidate whose kingdom contradicts the query's kingdom is never taken, and a name that stays
ambiguous across kingdoms/phyla is left unresolved rather than guessed.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from treeoflife.progress import Progress, or_null
from treeoflife.schemas import TAXA
from treeoflife.taxonomy.backbone import open_backbone
from treeoflife.taxonomy.backbone_lookup import (
    allowed_distance,
    lookup_fuzzy,
    lookup_names,
    lookup_vernaculars,
)
from treeoflife.taxonomy.candidates import (
    CONFIDENCE_EXACT,
    CONFIDENCE_HIGHER_RANK,
    CONFIDENCE_INFRASPECIFIC_DROPPED,
    HIGHER_RANKS,
    Choice,
    Match,
    Query,
    choose,
    fuzzy_confidence,
    rank_key,
)
from treeoflife.taxonomy.kingdoms import canonical_kingdom, is_unknown_kingdom
from treeoflife.taxonomy.names import clean_text, match_key, normalize_name, normalize_rank_value
from treeoflife.taxonomy.provenance import with_rank_match_types
from treeoflife.taxonomy.queries import prepare_queries
from treeoflife.taxonomy.taxon_rows import source_row, taxon_row, unresolved_row
from treeoflife.taxonomy.unify import unify_species_labels

log = logging.getLogger(__name__)

FLAG_UNKNOWN_KINGDOM = "unknown_kingdom"
BATCH_SIZE = 200_000  # one DuckDB pass per batch: fewer, larger batches scan the table fewer times


def _parse_queries(rows: list[dict]) -> list[Query]:
    out = []
    for raw in rows:
        ranks = {r: normalize_rank_value(raw.get(f"verbatim_{r}")) for r in HIGHER_RANKS}
        # The kingdom as GBIF spells it ("animals" -> Animalia); a value that names no kingdom
        # is never compared nor kept as a label, and the row says so.
        flags = frozenset({FLAG_UNKNOWN_KINGDOM} if is_unknown_kingdom(ranks["kingdom"]) else ())
        ranks["kingdom"] = canonical_kingdom(ranks["kingdom"])
        out.append(
            Query(
                query_id=raw["query_id"],
                source=raw.get("source") or "unknown",
                raw=raw,
                ranks=ranks,
                name=normalize_name(raw.get("verbatim_scientific_name")),
                common_name=clean_text(raw.get("verbatim_common_name")),
                flags=flags,
            )
        )
    return out


def _resolve_batch(
    con, queries: list[Query], fuzzy_max_distance: int, source_below_match: bool = True
) -> list[dict]:
    name_keys = [q.name_keys for q in queries]  # computed once: the loop below reads them again
    keys = {(k, None) for nk in name_keys for k, _ in nk}
    keys |= {(rank_key(r, v), r) for q in queries for r, v in q.fallback_ranks}
    found = lookup_names(
        con, sorted((k for k in keys if k[0] is not None), key=lambda k: (k[0], k[1] or ""))
    )

    rows: dict[str, Match] = {}
    pending: dict[str, Choice] = {}
    fuzzy_pairs: set[tuple[str, str, int]] = set()
    contradicted: set[str] = set()  # queries whose own name the backbone holds only elsewhere
    for q, nk in zip(queries, name_keys, strict=True):
        flags: set[str] = set()
        for key, dropped in nk:
            cands = found.get((key, None), [])
            choice = choose(cands, q, q.name.rank_hint)
            flags |= choice.flags
            if cands and choice.taxon is None and not choice.ambiguous:
                contradicted.add(q.query_id)
            if choice.taxon is not None:
                c = choice.taxon
                match_type = "synonym" if c.via_synonym else "exact"
                extra = {"synonym"} if c.via_synonym else set()
                if dropped:
                    extra.add("infraspecific_dropped")
                conf = CONFIDENCE_INFRASPECIFIC_DROPPED if dropped else CONFIDENCE_EXACT
                rows[q.query_id] = Match(c, match_type, conf, flags | extra)
                break
            if choice.ambiguous:
                pending[q.query_id] = Choice(flags=flags, ambiguous=True, agreeing=choice.agreeing)
                break
        if q.query_id in rows or q.query_id in pending:
            continue
        pending[q.query_id] = Choice(flags=flags)
        if q.name.genus and q.name.epithet and fuzzy_max_distance > 0:
            d = allowed_distance(q.name.epithet, fuzzy_max_distance)
            fuzzy_pairs.add((match_key(q.name.genus), match_key(q.name.epithet), d))

    fuzzy = lookup_fuzzy(con, sorted(fuzzy_pairs))
    for q in queries:
        if q.query_id in rows:
            continue
        prior = pending[q.query_id]
        if q.name.genus and q.name.epithet and not prior.ambiguous:
            key = (match_key(q.name.genus), match_key(q.name.epithet))
            choice = choose(fuzzy.get(key, []), q, "species")
            if choice.taxon is not None:
                c = choice.taxon
                flags = prior.flags | choice.flags | {"fuzzy"}
                if c.via_synonym:
                    flags.add("synonym")
                rows[q.query_id] = Match(c, "fuzzy", fuzzy_confidence(c.distance), flags)
                continue
        flags = set(prior.flags)
        for rank, value in q.fallback_ranks:
            choice = choose(found.get((rank_key(rank, value), rank), []), q, rank)
            flags |= choice.flags
            if choice.taxon is not None:
                c = choice.taxon
                flags |= {"higher_rank_only"}
                if c.via_synonym:
                    flags.add("synonym")
                conf = CONFIDENCE_HIGHER_RANK[rank]
                rows[q.query_id] = Match(
                    c, "higherrank", conf, flags, rank, q.query_id in contradicted
                )
                break
            if choice.ambiguous and not prior.agreeing:
                prior.agreeing = choice.agreeing
        else:
            pending[q.query_id] = Choice(flags=flags, agreeing=prior.agreeing)

    vernaculars = lookup_vernaculars(con, [m.taxon.taxon_id for m in rows.values()])
    out = []
    for q in queries:
        if q.query_id in rows:
            m = rows[q.query_id]
            out.append(
                taxon_row(
                    q,
                    m.taxon,
                    m.match_type,
                    m.confidence,
                    m.flags,
                    vernaculars,
                    m.max_rank,
                    source_below=source_below_match,
                    species_ok=not m.name_contradicted,
                )
            )
            continue
        prior = pending[q.query_id]
        source = source_row(q, prior.flags)
        if source is not None:
            out.append(source)
        else:
            out.append(unresolved_row(q, prior.flags, prior.agreeing))
    return out


def resolve_taxa(
    queries: pa.Table,
    db_path: Path,
    fuzzy_max_distance: int = 2,
    progress: Progress | None = None,
    source_below_match: bool = True,
) -> pa.Table:
    """Resolve every query against the backbone in `db_path`; one TAXA row per query_id.

    Rows come sorted by query_id. Duplicate query_ids are resolved once (logged).
    `source_below_match`: below a higher-rank match, keep the source's own lower ranks when
    its higher ranks confirm the match (flag `source_below_match`, provenance = the source).
    """
    progress = or_null(progress)
    table = prepare_queries(queries)
    progress.start("taxonomy.resolve", table.num_rows)
    out: list[dict] = []
    with open_backbone(Path(db_path)) as con:
        for start in range(0, table.num_rows, BATCH_SIZE):
            batch = table.slice(start, BATCH_SIZE).to_pylist()
            out.extend(
                _resolve_batch(con, _parse_queries(batch), fuzzy_max_distance, source_below_match)
            )
            progress.advance(len(batch))
    progress.finish()
    unified = unify_species_labels(out)
    if unified:
        log.info("taxonomy: %d queries took the label of the same species from another", unified)
    result = with_rank_match_types(pa.Table.from_pylist(out, schema=TAXA))
    counts = pc.value_counts(result.column("match_type")).to_pylist() if out else []
    log.info(
        "taxonomy: %d queries resolved: %s",
        result.num_rows,
        ", ".join(
            f"{c['values']}={c['counts']}" for c in sorted(counts, key=lambda c: c["values"])
        ),
    )
    return result
