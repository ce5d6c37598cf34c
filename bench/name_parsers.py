"""Name parsers compared on real names: our hand-written `normalize_name` against GBIF's own
parser (`gbif-name-parser`, the Rust port of org.gbif.nameparser, imported as `nameparser`).

Corpora (all in tests/fixtures/real, see SOURCES.md):
- gbif-backbone-archaea/Taxon.tsv: every row's `scientificName` (with authorship, as the GBIF
  backbone prints it) against its `canonicalName` (838 names);
- gbif-name-parser/names.tsv: names from GBIF name-parser's own test suite (authors with
  particles and `ex`, `[sic]`, diacritics, invisible characters, infraspecific ranks) with the
  genus, epithet and infraspecific epithet those tests expect.

Three columns: our hand-written reader alone, GBIF's parser alone, and what `normalize_name`
now does (the plain fast path, then GBIF's parser for the parts and our reader for the flags,
with the Latin-epithet rule on top). A name agrees when genus (or uninomial), epithet and
infraspecific epithet all equal the expected ones. Prints agreement per corpus and parse speed
(names/s, one core, CPU time) for each.

    .venv/bin/python bench/name_parsers.py
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from treeoflife.taxonomy.names import _plain_name, _read_tokens, normalize_name  # noqa: E402

REAL = ROOT / "tests" / "fixtures" / "real"


def archaea_corpus() -> list[tuple[str, tuple]]:
    out = []
    with open(REAL / "gbif-backbone-archaea" / "Taxon.tsv", encoding="utf-8") as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            name, canonical = row["scientificName"], row["canonicalName"]
            if not name or not canonical:
                continue
            parts = canonical.split()
            out.append((name, tuple(parts + [""] * (3 - len(parts)))[:3]))
    return out


def gbif_parser_corpus() -> list[tuple[str, tuple]]:
    with open(REAL / "gbif-name-parser" / "names.tsv", encoding="utf-8") as fh:
        rows = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [(r["name"], (r["genus"], r["epithet"], r["infraspecific"])) for r in rows]


def _parts(p) -> tuple:
    if p.canonical is None:
        return ("", "", "")
    if p.epithet is None:
        return (p.genus or p.canonical, "", "")
    return (p.genus, p.epithet, p.infraspecific or "")


def hand_written(name: str) -> tuple:
    """Our own reader alone (the fast path, then the token reader), as before the adoption."""
    return _parts(_plain_name(name) or _read_tokens(name))


def adopted(name: str) -> tuple:
    return _parts(normalize_name.__wrapped__(name))  # no cache: every name parsed


def gbif(name: str) -> tuple:
    import nameparser

    try:
        p = nameparser.parse(name)
    except nameparser.UnparsableNameError:
        return ("", "", "")
    if isinstance(p, nameparser.Informal):
        return (p.taxon, "", "")
    return (
        p.genus or p.uninomial or "",
        p.specific_epithet or "",
        p.infraspecific_epithet or "",
    )


def evaluate(parse, corpus) -> tuple[int, list]:
    misses = []
    for name, want in corpus:
        got = parse(name)
        if tuple(x.lower() for x in got) != tuple(x.lower() for x in want):
            misses.append((name, want, got))
    return len(corpus) - len(misses), misses


def speed(parse, names: list[str], repeat: int = 5) -> float:
    t0 = time.process_time()
    for _ in range(repeat):
        for n in names:
            parse(n)
    return repeat * len(names) / (time.process_time() - t0)


def main() -> None:
    corpora = {"gbif-backbone-archaea": archaea_corpus(), "gbif-name-parser": gbif_parser_corpus()}
    parsers = {
        "hand-written": hand_written,
        "gbif-name-parser": gbif,
        "adopted (normalize_name)": adopted,
    }
    print("| corpus | names | " + " | ".join(parsers) + " |")
    print("|---|---|" + "---|" * len(parsers))
    misses = {}
    for cname, corpus in corpora.items():
        cells = []
        for pname, parse in parsers.items():
            ok, miss = evaluate(parse, corpus)
            misses[(cname, pname)] = miss
            cells.append(f"{ok}/{len(corpus)} ({ok / len(corpus):.1%})")
        print(f"| {cname} | {len(corpus)} | " + " | ".join(cells) + " |")
    names = [n for c in corpora.values() for n, _ in c]
    print(
        "\nnames/s (one core, CPU time): "
        + ", ".join(f"{p}: {speed(f, names):,.0f}" for p, f in parsers.items())
    )
    for (cname, pname), miss in misses.items():
        print(f"\n{pname} on {cname}: {len(miss)} disagreements")
        for name, want, got in miss[:15]:
            print(f"  {name!r}: want {want} got {got}")


if __name__ == "__main__":
    main()
