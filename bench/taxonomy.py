"""Taxonomy benchmark: a GBIF-sized synthetic backbone, 500k names resolved locally vs through
the species-match API client (loopback server, 20 ms per request) and a pygbif-style peer.

    .venv/bin/python bench/taxonomy.py                 # full size: 7.6M rows, 500k names
    .venv/bin/python bench/taxonomy.py --rows 760000 --names 50000   # a quick look

The synthetic backbone has the dump's 23 Taxon.tsv columns and shape: ~45% synonyms carrying
the accepted classification, ~4% infraspecific names, ~3% doubtful, 300k genera x ~11 species,
authorship strings, rows in hashed (not name) order. Queries: 90% exact names (half with
authorship, 60% with kingdom/family context), 5% synonyms, 3% misspelt epithets, 2% absent.
Each step runs in its own process, so peak RSS is that step's alone. Generated files live in
--workdir (default: $TMPDIR/treeoflife-bench-taxonomy) and are reused when the size matches.
"""

# ruff: noqa: E501 - long lines are SQL text
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL_ROWS = 7_600_000
SYLLABLES = [
    "ba", "ca", "da", "fe", "ge", "hi", "ja", "ko", "la", "me", "no", "pe", "qui", "ra", "si",
    "ta", "ul", "ve", "xa", "zo", "bri", "cro", "dra", "fla", "glo", "pra", "stri", "tho",
    "ar", "en", "il", "or", "um", "ex", "an", "ri", "mo", "lu", "ne", "so",
]  # fmt: skip
KINGDOMS = [
    "Animalia",
    "Plantae",
    "Fungi",
    "Chromista",
    "Protozoa",
    "Bacteria",
    "Archaea",
    "Viruses",
]


def _word(expr: str, n: int, suffix: str, cap: bool) -> str:
    """SQL: a word of n base-40 syllable digits of `expr` (unique per value below 40**n)."""
    parts = [f"s[((({expr}) // {40**i}) % 40 + 1)::BIGINT]" for i in range(n)]
    w = " || ".join(parts) + f" || '{suffix}'"
    return f"(upper(({w})[1]) || ({w})[2:])" if cap else f"({w})"


def generate(folder: Path, rows: int) -> dict:
    """Write Taxon.tsv + VernacularName.tsv + meta-free headers; returns the composition."""
    import duckdb

    scale = rows / FULL_ROWS
    n_genus = int(300_000 * scale)
    n_species = int(3_400_000 * scale)
    n_syn = int(3_400_000 * scale)
    n_infra = int(300_000 * scale)
    n_doubt = int(200_000 * scale)
    folder.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order = false")
    syl = "[" + ", ".join(f"'{s}'" for s in SYLLABLES) + "]"
    kings = "[" + ", ".join(f"'{k}'" for k in KINGDOMS) + "]"
    fam, order, cls, phy = "g // 30", "g // 210", "g // 840", "g // 3360"
    # genera with their classification (kingdom..genus names are pure functions of g)
    con.execute(
        f"""
        CREATE TABLE genus AS
        SELECT g,
               {kings}[((g // 40320) % 8 + 1)::BIGINT] AS kingdom,
               {_word(phy, 3, "phyta", True)} AS phylum,
               {_word(cls, 3, "opsida", True)} AS class,
               {_word(order, 3, "ales", True)} AS "order",
               {_word(fam, 3, "idae", True)} AS family,
               {_word("g", 4, "us", True)} AS genus
        FROM (SELECT range AS g FROM range({n_genus})), (SELECT {syl} AS s)
        """
    )
    con.execute(
        f"""
        CREATE TABLE species AS
        SELECT j, j % {n_genus} AS g,
               {_word("(hash(j) % 2560000)::BIGINT", 4, "a", False)} AS epithet
        FROM (SELECT range AS j FROM range({n_species})), (SELECT {syl} AS s)
        """
    )
    author = (
        "CASE WHEN hash(id) % 2 = 0 THEN 'L.' "
        "ELSE '(' || upper(e[1]) || e[2:] || 'son, ' || (1753 + (hash(id) % 270)::BIGINT)::VARCHAR || ')' END"
    )
    cols = (
        "taxonID, datasetID, parentNameUsageID, acceptedNameUsageID, originalNameUsageID, "
        "scientificName, scientificNameAuthorship, canonicalName, genericName, specificEpithet, "
        "infraspecificEpithet, taxonRank, nameAccordingTo, namePublishedIn, taxonomicStatus, "
        'nomenclaturalStatus, taxonRemarks, kingdom, phylum, class, "order", family, genus'
    )
    base_sp = 10_000_000
    base_syn = 20_000_000
    base_inf = 30_000_000
    base_dbt = 40_000_000
    con.execute(
        f"""
        CREATE VIEW taxon AS
        -- genera
        SELECT (1000000 + g)::VARCHAR AS taxonID, 'd7dddbf4-2cf0-4f39-9b2a-bb099caae36c' AS datasetID,
               NULL AS parentNameUsageID, NULL AS acceptedNameUsageID, NULL AS originalNameUsageID,
               genus || ' Smith, 1900' AS scientificName, 'Smith, 1900' AS scientificNameAuthorship,
               genus AS canonicalName, genus AS genericName, NULL AS specificEpithet,
               NULL AS infraspecificEpithet, 'genus' AS taxonRank, NULL AS nameAccordingTo,
               NULL AS namePublishedIn, 'accepted' AS taxonomicStatus, NULL AS nomenclaturalStatus,
               NULL AS taxonRemarks, kingdom, phylum, class, "order", family, genus
        FROM genus
        UNION ALL
        -- families (one row per family)
        SELECT (5000000 + g // 30)::VARCHAR, 'd7dddbf4-2cf0-4f39-9b2a-bb099caae36c', NULL, NULL, NULL,
               family, NULL, family, NULL, NULL, NULL, 'family', NULL, NULL, 'accepted', NULL, NULL,
               kingdom, phylum, class, "order", family, NULL
        FROM genus WHERE g % 30 = 0
        UNION ALL
        -- accepted species
        SELECT ({base_sp} + j)::VARCHAR, 'd7dddbf4-2cf0-4f39-9b2a-bb099caae36c',
               (1000000 + sp.g)::VARCHAR, NULL, NULL,
               genus || ' ' || epithet || ' ' || {author.replace("id)", "j)").replace("e[", "epithet[")},
               NULL, genus || ' ' || epithet, genus, epithet, NULL, 'species', NULL,
               CASE WHEN j % 3 = 0 THEN 'Journal of Synthetic Taxonomy ' || (j % 97)::VARCHAR || ': ' || (j % 500)::VARCHAR END,
               'accepted', NULL, NULL, kingdom, phylum, class, "order", family, genus
        FROM species sp JOIN genus USING (g)
        UNION ALL
        -- synonyms: the accepted epithet in another genus, with the accepted classification
        SELECT ({base_syn} + k)::VARCHAR, 'd7dddbf4-2cf0-4f39-9b2a-bb099caae36c', NULL,
               ({base_sp} + sp.j)::VARCHAR, NULL,
               sg.genus || ' ' || sp.epithet || 'is (Auct., 1850)', '(Auct., 1850)',
               sg.genus || ' ' || sp.epithet || 'is', sg.genus, sp.epithet || 'is', NULL, 'species',
               NULL, NULL, CASE WHEN k % 2 = 0 THEN 'synonym' WHEN k % 4 = 1 THEN 'homotypic synonym'
               ELSE 'heterotypic synonym' END, NULL, NULL,
               ag.kingdom, ag.phylum, ag.class, ag."order", ag.family, ag.genus
        FROM (SELECT range AS k FROM range({n_syn})) syn
        JOIN species sp ON sp.j = syn.k % {n_species}
        JOIN genus ag ON ag.g = sp.g
        JOIN genus sg ON sg.g = (hash(syn.k) % {n_genus})::BIGINT
        UNION ALL
        -- subspecies of accepted species
        SELECT ({base_inf} + i)::VARCHAR, 'd7dddbf4-2cf0-4f39-9b2a-bb099caae36c', ({base_sp} + sp.j)::VARCHAR,
               NULL, NULL, genus || ' ' || epithet || ' ' || epithet || 'oides', NULL,
               genus || ' ' || epithet || ' ' || epithet || 'oides', genus, epithet, epithet || 'oides',
               'subspecies', NULL, NULL, 'accepted', NULL, NULL, kingdom, phylum, class, "order", family, genus
        FROM (SELECT range AS i FROM range({n_infra})) inf
        JOIN species sp ON sp.j = (inf.i * 7) % {n_species} JOIN genus USING (g)
        UNION ALL
        -- doubtful species
        SELECT ({base_dbt} + d)::VARCHAR, 'd7dddbf4-2cf0-4f39-9b2a-bb099caae36c', NULL, NULL, NULL,
               genus || ' dubia' || d::VARCHAR, NULL, genus || ' dubia' || d::VARCHAR, genus,
               'dubia' || d::VARCHAR, NULL, 'species', NULL, NULL, 'doubtful', NULL, NULL,
               kingdom, phylum, class, "order", family, genus
        FROM (SELECT range AS d FROM range({n_doubt})) db JOIN genus ON genus.g = db.d % {n_genus}
        """
    )
    tmp = folder / ".Taxon.tsv.tmp"
    con.execute(
        f"COPY (SELECT {cols} FROM taxon ORDER BY hash(taxonID)) TO '{tmp}' "
        "(FORMAT csv, DELIMITER '\t', HEADER true, QUOTE '\x01', ESCAPE '\x01')"
    )
    os.replace(tmp, folder / "Taxon.tsv")
    tmp = folder / ".VernacularName.tsv.tmp"
    con.execute(
        f"""COPY (SELECT ({base_sp} + j)::VARCHAR AS taxonID,
                  'common ' || epithet AS vernacularName, 'en' AS language
                  FROM species WHERE j % 10 = 0)
            TO '{tmp}' (FORMAT csv, DELIMITER '\t', HEADER true, QUOTE '\x01', ESCAPE '\x01')"""
    )
    os.replace(tmp, folder / "VernacularName.tsv")
    (total,) = con.execute("SELECT count(*) FROM taxon").fetchone()
    comp = {
        "rows": total,
        "genera": n_genus,
        "species": n_species,
        "synonyms": n_syn,
        "infraspecific": n_infra,
        "doubtful": n_doubt,
    }
    (folder / "composition.json").write_text(json.dumps(comp))
    return comp


def make_queries(folder: Path, n: int, seed: int = 0):
    """500k-style query table: 90% exact, 5% synonyms, 3% misspelt, 2% absent (+ expectations)."""
    import duckdb
    import pyarrow as pa

    from treeoflife.records import query_id

    con = duckdb.connect()
    taxon = folder / "Taxon.tsv"
    rc = (
        f"read_csv('{taxon}', delim='\t', header=true, quote='', escape='', all_varchar=true, "
        "auto_detect=true)"
    )
    n_exact, n_syn, n_typo = int(n * 0.90), int(n * 0.05), int(n * 0.03)
    n_absent = n - n_exact - n_syn - n_typo
    acc = con.execute(
        f"""SELECT taxonID, scientificName, canonicalName, genericName, specificEpithet,
                   kingdom, family FROM {rc}
            WHERE taxonRank = 'species' AND taxonomicStatus = 'accepted'
            ORDER BY hash(taxonID || '{seed}') LIMIT {n_exact + n_typo + n_absent}"""
    ).fetchall()
    syn = con.execute(
        f"""SELECT acceptedNameUsageID, scientificName, kingdom FROM {rc}
            WHERE taxonomicStatus LIKE '%synonym%' ORDER BY hash(taxonID || '{seed}') LIMIT {n_syn}"""
    ).fetchall()
    rows, expect = [], []

    def add(name, kingdom=None, family=None, expected=None, kind=""):
        q = {
            "source": "eol" if kingdom is None else "inat21",
            "verbatim_kingdom": kingdom,
            "verbatim_phylum": None,
            "verbatim_class": None,
            "verbatim_order": None,
            "verbatim_family": family,
            "verbatim_genus": None,
            "verbatim_scientific_name": name,
            "verbatim_common_name": None,
        }
        q["query_id"] = query_id(q["source"], q)
        rows.append(q)
        expect.append((q["query_id"], kind, expected))

    for i, (tid, sci, canon, _g, _e, kingdom, family) in enumerate(acc[:n_exact]):
        ctx = i % 5 < 3
        add(
            sci if i % 2 else canon, kingdom if ctx else None, family if ctx else None, tid, "exact"
        )
    for tid, sci, kingdom in syn:
        add(sci, kingdom, None, tid, "synonym")
    for tid, _sci, _canon, g, e, kingdom, _f in acc[n_exact : n_exact + n_typo]:
        k = len(e) // 2
        typo = e[:k] + ("z" if e[k] != "z" else "y") + e[k + 1 :]
        add(f"{g} {typo}", kingdom, None, tid, "misspelt")
    for i, (_tid, _sci, _canon, g, _e, kingdom, _f) in enumerate(acc[n_exact + n_typo :]):
        name = f"{g} nonexistensis" if i % 2 else f"Zzyzx{i} qwertyi"
        add(name, kingdom, None, None, "absent")
    schema = pa.schema([(c, pa.string()) for c in rows[0]])
    table = pa.Table.from_pylist(rows, schema=schema)
    exp = pa.table(
        {
            "query_id": [e[0] for e in expect],
            "kind": [e[1] for e in expect],
            "expected": [e[2] for e in expect],
        }
    )
    return table, exp


def _rss_mb() -> float:
    """This process's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss across exec, so a
    step started by a driver that generated the data in memory would report the driver's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- steps (children)


def step_load(work: Path) -> dict:
    from treeoflife.taxonomy import load_backbone

    db = work / "backbone.duckdb"
    db.unlink(missing_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    counts = load_backbone(work / "dwca", db)
    return {
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "peak_rss_mb": _rss_mb(),
        **counts,
    }


def step_resolve(work: Path, names: int) -> dict:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from treeoflife.taxonomy import resolve_taxa

    queries = pq.read_table(work / f"queries-{names}.parquet")
    expect = pq.read_table(work / f"expect-{names}.parquet")
    t0, c0 = time.perf_counter(), time.process_time()
    taxa = resolve_taxa(queries, work / "backbone.duckdb")
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    got = dict(zip(taxa.column("query_id").to_pylist(), taxa.to_pylist(), strict=True))
    right: dict[str, list[int]] = {}
    for qid, kind, expected in zip(
        *(expect.column(c).to_pylist() for c in expect.column_names), strict=True
    ):
        row = got[qid]
        if kind == "absent":  # never a backbone species: a genus, the source's labels, or none
            ok = row["match_type"] in ("higherrank", "source", "none")
        else:
            ok = row["taxon_id"] == expected
        right.setdefault(kind, [0, 0])[0] += ok
        right[kind][1] += 1
    counts = pc.value_counts(taxa.column("match_type")).to_pylist()
    return {
        "names": taxa.num_rows,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "names_per_s": taxa.num_rows / seconds,
        "peak_rss_mb": _rss_mb(),
        "match_types": {c["values"]: c["counts"] for c in counts},
        "correct": {k: f"{a}/{b}" for k, (a, b) in sorted(right.items())},
    }


def _answer(path, params):
    name = params.get("name") or params.get("scientificName") or ""
    parts = name.split()
    return 200, {
        "usageKey": abs(hash(name)) % 10_000_000,
        "canonicalName": name,
        "rank": "SPECIES",
        "matchType": "EXACT",
        "confidence": 98,
        "kingdom": params.get("kingdom") or "Animalia",
        "genus": parts[0] if parts else None,
        "species": name,
        "synonym": False,
    }


def step_api(work: Path, n: int, latency: float, concurrency: int, peer_n: int) -> dict:
    import requests

    from tests.support.api_replay import ApiReplayServer
    from treeoflife.taxonomy.api_client import ApiSettings
    from treeoflife.taxonomy.gbif_api import match_names, match_request

    queries = [{"verbatim_scientific_name": f"Benchus name{i}a"} for i in range(n)]
    cache = work / "api-cache.duckdb"
    cache.unlink(missing_ok=True)
    out = {}
    with ApiReplayServer(handler=_answer, latency_s=latency) as server:
        settings = ApiSettings(server.url, concurrency=concurrency, rate_per_s=0)
        t0 = time.perf_counter()
        match_names(queries, settings, cache)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        match_names(queries, settings, cache)
        warm = time.perf_counter() - t0
        # The peer: pygbif's name_backbone does one requests.get per name, in sequence.
        t0 = time.perf_counter()
        for q in queries[:peer_n]:
            path, params = match_request(q)
            requests.get(server.url + path, params=params, timeout=30).json()
        peer = time.perf_counter() - t0
        out["requests_served"] = len(server.requests)
    out.update(
        names=n,
        cold_s=cold,
        cold_names_per_s=n / cold,
        warm_s=warm,
        warm_names_per_s=n / warm,
        peer_names=peer_n,
        peer_names_per_s=peer_n / peer,
        peak_rss_mb=_rss_mb(),
    )
    return out


# --------------------------------------------------------------------------- driver


def _child(opts: argparse.Namespace, *args: str) -> dict:
    cmd = [sys.executable, __file__, "--workdir", str(opts.workdir), "--rows", str(opts.rows)]
    cmd += ["--step", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.stderr.write(res.stderr)
        raise SystemExit(f"step {args[0]} failed")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=FULL_ROWS)
    ap.add_argument("--names", type=int, default=500_000)
    ap.add_argument("--api-names", type=int, default=2000)
    ap.add_argument("--peer-names", type=int, default=200)
    ap.add_argument("--latency", type=float, default=0.020)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "treeoflife-bench-taxonomy"
    )
    ap.add_argument("--step", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = args.workdir / f"rows-{args.rows}"
    if args.step:
        kind, *rest = args.step
        if kind == "load":
            result = step_load(work)
        elif kind == "resolve":
            result = step_resolve(work, int(rest[0]))
        else:
            result = step_api(work, int(rest[0]), float(rest[1]), int(rest[2]), int(rest[3]))
        print(json.dumps(result))
        return
    import pyarrow.parquet as pq

    print(
        f"taxonomy benchmark: {args.rows:,} backbone rows, {args.names:,} names "
        f"(load average {os.getloadavg()[0]:.2f})"
    )
    dwca = work / "dwca"
    if not (dwca / "composition.json").exists():
        t0 = time.perf_counter()
        comp = generate(dwca, args.rows)
        print(f"  generated synthetic backbone in {time.perf_counter() - t0:.1f}s: {comp}")
    else:
        comp = json.loads((dwca / "composition.json").read_text())
        print(f"  reusing synthetic backbone {dwca}: {comp}")
    size_mb = (dwca / "Taxon.tsv").stat().st_size / 1e6
    qpath = work / f"queries-{args.names}.parquet"
    if not qpath.exists():
        queries, expect = make_queries(dwca, args.names)
        pq.write_table(expect, work / f"expect-{args.names}.parquet")
        pq.write_table(queries, qpath)
    load = _child(args, "load")
    print(
        f"  backbone load ({size_mb:,.0f} MB Taxon.tsv): {load['seconds']:.1f}s "
        f"(CPU {load['cpu_seconds']:.1f}s), "
        f"peak RSS {load['peak_rss_mb']:,.0f} MB, {load['taxa']:,} taxa "
        f"({load['synonyms']:,} synonyms), {load['rejected_lines']} rejected lines "
        f"[goal < 300 s]"
    )
    res = _child(args, "resolve", str(args.names))
    print(
        f"  local resolution: {res['names']:,} names in {res['seconds']:.1f}s = "
        f"{res['names_per_s']:,.0f} names/s (CPU {res['cpu_seconds']:.1f}s), peak RSS {res['peak_rss_mb']:,.0f} MB "
        f"[goal < 60 s, < 4096 MB]"
    )
    print(f"    match types: {res['match_types']}")
    print(f"    correct (taxon as generated; absent = no backbone species): {res['correct']}")
    api = _child(
        args,
        "api",
        str(args.api_names),
        str(args.latency),
        str(args.concurrency),
        str(args.peer_names),
    )
    print(
        f"  API client, loopback server with {args.latency * 1000:.0f} ms per request, "
        f"{args.concurrency} in flight: cold cache {api['cold_names_per_s']:,.0f} names/s "
        f"({api['names']:,} names in {api['cold_s']:.1f}s), warm cache "
        f"{api['warm_names_per_s']:,.0f} names/s; server saw {api['requests_served']:,} requests"
    )
    print(
        f"  peer (pygbif-style sequential requests.get, one per name): "
        f"{api['peer_names_per_s']:,.0f} names/s over {api['peer_names']} names"
    )
    print(
        "  ratios: local / API cold = "
        f"{res['names_per_s'] / api['cold_names_per_s']:,.0f}x; API cold / peer = "
        f"{api['cold_names_per_s'] / api['peer_names_per_s']:.1f}x; "
        f"500k names through the API cold would take "
        f"{500_000 / api['cold_names_per_s'] / 60:,.0f} min here"
    )
    print(f"  load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
