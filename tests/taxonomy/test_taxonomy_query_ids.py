"""Column-wise query ids: the same ids and queries as the per-row definition."""

from __future__ import annotations

import random
from collections import Counter

import pyarrow as pa

from treeoflife.records import VERBATIM_QUERY_FIELDS, query_id, query_id_column
from treeoflife.sources.catalogs import add_query_ids
from treeoflife.taxonomy.queries import taxonomy_queries


def _rows(n: int, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    values = [None, "", "Animalia", "Vulpes", "Vulpes vulpes", "Ärgerlich"]
    rows = []
    for _ in range(n):
        row = {"source": rng.choice(["inat21", "bioscan", "eol"])}
        row.update({f: rng.choice(values) for f in VERBATIM_QUERY_FIELDS})
        row["verbatim_common_name"] = rng.choice([None, "", "red fox", "fox", "éclair"])
        rows.append(row)
    return rows


def test_query_id_column_matches_the_per_row_definition():
    rows = _rows(3000)
    table = pa.Table.from_pylist(rows)
    assert query_id_column(table).to_pylist() == [query_id(r["source"], r) for r in rows]
    assert add_query_ids(table).column_names[-1] == "query_id"
    assert query_id_column(table.slice(0, 0)).to_pylist() == []


def test_taxonomy_queries_group_column_wise_like_row_by_row():
    rows = _rows(3000)
    extra = [{"source": "evalset/x", "verbatim_genus": "Vulpes", "verbatim_common_name": "a"}]
    images: Counter = Counter()
    queries = taxonomy_queries(pa.Table.from_pylist(rows), extra, images)
    # the definition: per query id the first row's fields, the smallest non-empty common name
    expect: dict[str, dict] = {}
    counts: Counter = Counter()
    for row in [*rows, *extra]:
        qid = query_id(row["source"], row)
        counts[qid] += 1
        name = row.get("verbatim_common_name") or None
        if qid not in expect:
            expect[qid] = {"query_id": qid, "source": row["source"]}
            expect[qid].update({f: row.get(f) for f in VERBATIM_QUERY_FIELDS})
            expect[qid]["verbatim_common_name"] = name
        elif name and (expect[qid]["verbatim_common_name"] or "\uffff") > name:
            expect[qid]["verbatim_common_name"] = name
    assert queries.to_pylist() == [expect[k] for k in sorted(expect)]
    assert images == counts
    assert len(queries) < len(rows)  # rows share queries: the grouping is exercised
