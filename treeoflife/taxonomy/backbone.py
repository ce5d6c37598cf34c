"""Load the GBIF backbone (a Darwin Core Archive) into a DuckDB file for local name lookups.

DuckDB streams the TSVs (no pandas, no Python loop over rows), so the full ~7.6M-row dump loads
in one pass. The database is built under a temporary name and renamed, and a fingerprint of
the inputs in table `meta` makes a second load with the same inputs a no-op.

Tables:
- `taxon`: the core columns as TEXT plus lookup columns `name_key` (lower-case canonical name),
  `genus_key` / `epithet_key` (lower-case genericName / specificEpithet, for fuzzy matching
  blocked by genus), `rank` (lower-case taxonRank) and `is_synonym`; sorted by `name_key` so
  DuckDB's zone maps prune point lookups, with indexes on `name_key` and `taxonID`.
- `vernacular`: taxonID, vernacularName, language ... as TEXT.
- `meta`: key/value pairs (fingerprint, loader version, counts).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass
from pathlib import Path

import duckdb

from treeoflife.errors import InputError
from treeoflife.io import atomic_path, duckdb_writable, writer_alive
from treeoflife.progress import Progress, or_null

log = logging.getLogger(__name__)

LOADER_VERSION = "1"
"""Bump when the database layout changes: a stored fingerprint with another version reloads."""

AUTHORITY = "gbif-backbone"

_DWC_NS = "{http://rs.tdwg.org/dwc/text/}"
_TAXON_ROWTYPE = "http://rs.tdwg.org/dwc/terms/Taxon"
_VERNACULAR_ROWTYPE = "http://rs.gbif.org/terms/1.0/VernacularName"

# Core columns the resolver reads; a file that lacks one gets it as NULL.
TAXON_COLUMNS = (
    "taxonID",
    "parentNameUsageID",
    "acceptedNameUsageID",
    "scientificName",
    "scientificNameAuthorship",
    "canonicalName",
    "genericName",
    "specificEpithet",
    "infraspecificEpithet",
    "taxonRank",
    "taxonomicStatus",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "genus",
)
VERNACULAR_COLUMNS = ("taxonID", "vernacularName", "language", "country", "countryCode", "source")


@dataclass(frozen=True)
class _TableFile:
    """One TSV of the archive: where it is and what its columns are called."""

    path: Path
    columns: tuple[str, ...]
    header_lines: int


def _term_name(term: str) -> str:
    return term.rstrip("/").rsplit("/", 1)[-1]


def _meta_files(meta_xml: Path | None) -> dict[str, tuple[str, dict[int, str], int]]:
    """rowType -> (location, {index: column name}, header lines) from a DwC-A meta.xml."""
    if meta_xml is None or not meta_xml.exists():
        return {}
    try:
        root = ET.parse(meta_xml).getroot()
    except ET.ParseError as exc:
        raise InputError(f"{meta_xml}: not valid XML ({exc})") from exc
    out = {}
    for el in root:
        row_type = el.get("rowType")
        location = el.findtext(f"{_DWC_NS}files/{_DWC_NS}location")
        if not row_type or not location:
            continue
        names: dict[int, str] = {}
        for key in ("id", "coreid"):
            id_el = el.find(f"{_DWC_NS}{key}")
            if id_el is not None and id_el.get("index") is not None:
                names[int(id_el.get("index"))] = "taxonID"
        for field in el.findall(f"{_DWC_NS}field"):
            if field.get("index") is not None and field.get("term"):
                names[int(field.get("index"))] = _term_name(field.get("term"))
        out[row_type] = (location, names, int(el.get("ignoreHeaderLines") or 0))
    return out


def _describe(path: Path, names: dict[int, str] | None, header_lines: int) -> _TableFile:
    """Column names by position: meta.xml first, the header line for the rest."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
    if names is None:  # no meta.xml: the first line is the header
        names, header_lines = dict(enumerate(header)), 1
    width = max(len(header), max(names, default=-1) + 1)
    columns, seen = [], set()
    for i in range(width):
        name = names.get(i) or (header[i] if header_lines and i < len(header) else f"column{i}")
        if name in seen:  # never two columns of one name
            name = f"{name}_{i}"
        seen.add(name)
        columns.append(name)
    return _TableFile(path, tuple(columns), header_lines)


def _archive_tables(folder: Path) -> tuple[_TableFile, _TableFile | None]:
    meta = _meta_files(folder / "meta.xml")
    core = meta.get(_TAXON_ROWTYPE)
    taxon_path = folder / (core[0] if core else "Taxon.tsv")
    if not taxon_path.exists():
        raise InputError(f"GBIF backbone: no {taxon_path.name} in {folder}")
    taxon = _describe(taxon_path, core[1] if core else None, core[2] if core else 1)
    ext = meta.get(_VERNACULAR_ROWTYPE)
    vern_path = folder / (ext[0] if ext else "VernacularName.tsv")
    vernacular = None
    if vern_path.exists():
        vernacular = _describe(vern_path, ext[1] if ext else None, ext[2] if ext else 1)
    return taxon, vernacular


def _input_files(backbone: Path) -> list[Path]:
    if backbone.is_dir():  # every file: meta.xml may name other locations than Taxon.tsv
        return sorted(p for p in backbone.iterdir() if p.is_file())
    return [backbone]


def backbone_fingerprint(backbone: Path) -> str:
    """Names, sizes and mtimes of the inputs plus the loader version (cheap on a 1 GB zip)."""
    backbone = Path(backbone)
    if not backbone.exists():
        raise InputError(f"GBIF backbone not found: {backbone}")
    parts = [f"loader={LOADER_VERSION}"]
    for p in _input_files(backbone):
        st = p.stat()
        parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


def _stored_meta(db_path: Path) -> dict[str, str] | None:
    if not db_path.exists():
        return None
    try:
        with duckdb.connect(str(db_path), read_only=True) as con:
            return dict(con.execute("SELECT key, value FROM meta").fetchall())
    except duckdb.Error as exc:
        log.warning("taxonomy db %s unreadable (%s): rebuilding", db_path, exc)
        return None


def _counts(meta: dict[str, str], skipped: bool) -> dict:
    return {
        "taxa": int(meta["taxa"]),
        "synonyms": int(meta["synonyms"]),
        "vernaculars": int(meta["vernaculars"]),
        "rejected_lines": int(meta.get("rejected_lines", 0)),
        "skipped": skipped,
    }


@contextlib.contextmanager
def _extracted(backbone: Path, scratch_parent: Path):
    """Yield a folder holding the archive's files (a zip is streamed out to scratch space)."""
    if backbone.is_dir() or is_simple_dump(backbone):
        yield backbone
        return
    if not zipfile.is_zipfile(backbone):
        raise InputError(f"GBIF backbone {backbone}: neither a folder nor a zip archive")
    scratch = Path(
        tempfile.mkdtemp(prefix=f".backbone-{os.getpid()}-", suffix=".extract", dir=scratch_parent)
    )
    try:
        with zipfile.ZipFile(backbone) as zf:
            by_name = {Path(i.filename).name: i for i in zf.infolist() if not i.is_dir()}
            meta = None
            if "meta.xml" in by_name:
                (scratch / "meta.xml").write_bytes(zf.read(by_name["meta.xml"]))
                meta = _meta_files(scratch / "meta.xml")
            wanted = {"Taxon.tsv", "VernacularName.tsv"}
            for row_type in (_TAXON_ROWTYPE, _VERNACULAR_ROWTYPE):
                if meta and row_type in meta:
                    wanted.add(meta[row_type][0])
            for name in sorted(wanted):
                if name in by_name:
                    with zf.open(by_name[name]) as src, open(scratch / name, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _read_csv(table: _TableFile) -> str:
    """A read_csv call with every column TEXT: GBIF TSV is unquoted, so quoting is off."""
    cols = "{" + ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in table.columns) + "}"
    return (
        f"read_csv({_sql_str(str(table.path))}, delim='\t', quote='', escape='', "
        f"header={'true' if table.header_lines else 'false'}, "
        f"skip={max(table.header_lines - 1, 0)}, auto_detect=false, columns={cols}, "
        "null_padding=true, ignore_errors=true, store_rejects=true, "
        "max_line_size=16777216, encoding='utf-8')"
    )


def _sql_ident(name: str) -> str:
    """A quoted SQL identifier (column names come from the input files' headers)."""
    return '"' + name.replace('"', '""') + '"'


def _select(table: _TableFile, wanted: tuple[str, ...]) -> str:
    return ", ".join(
        _sql_ident(c) if c in table.columns else f"CAST(NULL AS VARCHAR) AS {_sql_ident(c)}"
        for c in wanted
    )


def _rejected(con: duckdb.DuckDBPyConnection) -> int:
    try:
        sql = "SELECT count(DISTINCT (scan_id, file_id, line)) FROM reject_errors"
        return con.execute(sql).fetchone()[0]
    except duckdb.Error:
        return 0


# The `simple.txt.gz` dump: headerless PostgreSQL COPY text of checklistbank's backbone table
# (gbif/checklistbank backbone-ddl.sql); nulls are \N, ranks and statuses upper-case enums.
SIMPLE_COLUMNS = (
    "id", "parent_key", "basionym_key", "is_synonym", "status", "rank", "nom_status",
    "constituent_key", "origin", "source_taxon_key", "kingdom_key", "phylum_key", "class_key",
    "order_key", "family_key", "genus_key", "species_key", "name_id", "scientific_name",
    "canonical_name", "genus_or_above", "specific_epithet", "infra_specific_epithet",
    "notho_type", "authorship", "year", "bracket_authorship", "bracket_year",
    "name_published_in", "issues",
)  # fmt: skip


def is_simple_dump(path: Path) -> bool:
    return path.is_file() and path.name.endswith((".txt.gz", ".txt")) and "simple" in path.name


def _simple_select(path: Path) -> str:
    """The simple dump as the Darwin Core columns the resolver reads (ranks named by joining
    the classification keys back to their usages)."""
    cols = "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in SIMPLE_COLUMNS) + "}"
    src = (
        f"read_csv({_sql_str(str(path))}, delim='\t', quote='', escape='', header=false, "
        f"auto_detect=false, columns={cols}, nullstr='\\N', null_padding=true, "
        "ignore_errors=true, store_rejects=true, max_line_size=16777216)"
    )
    joins = "".join(
        f" LEFT JOIN names {r[0]} ON {r[0]}.id = s.{r}_key"
        for r in ("kingdom", "phylum", "class", "order", "family", "genus")
    )
    return f"""
        WITH s AS (SELECT * FROM {src}),
        names AS (SELECT id, canonical_name FROM s WHERE rank IN
                  ('KINGDOM', 'PHYLUM', 'CLASS', 'ORDER', 'FAMILY', 'GENUS'))
        SELECT s.id AS taxonID,
               CASE WHEN s.is_synonym = 't' THEN NULL ELSE s.parent_key END AS parentNameUsageID,
               CASE WHEN s.is_synonym = 't' THEN s.parent_key END AS acceptedNameUsageID,
               s.scientific_name AS scientificName,
               s.authorship AS scientificNameAuthorship,
               s.canonical_name AS canonicalName,
               s.genus_or_above AS genericName,
               s.specific_epithet AS specificEpithet,
               s.infra_specific_epithet AS infraspecificEpithet,
               lower(s.rank) AS taxonRank,
               lower(replace(s.status, '_', ' ')) AS taxonomicStatus,
               k.canonical_name AS kingdom, p.canonical_name AS phylum,
               c.canonical_name AS class, o.canonical_name AS "order",
               f.canonical_name AS family, g.canonical_name AS genus
        FROM s{joins}
    """


def _build(
    con: duckdb.DuckDBPyConnection,
    taxon: _TableFile | None,
    vern: _TableFile | None,
    simple: Path | None = None,
) -> dict:
    if simple is not None:
        source = f"({_simple_select(simple)})"
    else:
        extra = tuple(
            c for c in taxon.columns if c not in TAXON_COLUMNS and not c.startswith("column")
        )
        source = f"(SELECT {_select(taxon, TAXON_COLUMNS + extra)} FROM {_read_csv(taxon)})"
    con.execute(
        f"""
        CREATE TABLE taxon AS
        SELECT *,
               lower(canonicalName) AS name_key,
               lower(genericName) AS genus_key,
               lower(specificEpithet) AS epithet_key,
               lower(taxonRank) AS rank,
               coalesce(contains(lower(taxonomicStatus), 'synonym'), false) AS is_synonym
        FROM {source}
        WHERE taxonID IS NOT NULL
        ORDER BY name_key NULLS LAST, taxonID
        """
    )
    con.execute("CREATE INDEX taxon_name_key ON taxon (name_key)")
    con.execute("CREATE INDEX taxon_id ON taxon (taxonID)")
    if vern is not None:
        con.execute(
            f"""
            CREATE TABLE vernacular AS
            SELECT {_select(vern, VERNACULAR_COLUMNS)} FROM {_read_csv(vern)}
            WHERE taxonID IS NOT NULL AND vernacularName IS NOT NULL
            ORDER BY taxonID, language, vernacularName
            """
        )
    else:
        cols = ", ".join(f'"{c}" VARCHAR' for c in VERNACULAR_COLUMNS)
        con.execute(f"CREATE TABLE vernacular ({cols})")
    con.execute("CREATE INDEX vernacular_id ON vernacular (taxonID)")
    rejected = _rejected(con)  # one reject table per connection, every scan in it
    taxa, synonyms = con.execute(
        "SELECT count(*), count(*) FILTER (is_synonym) FROM taxon"
    ).fetchone()
    (vernaculars,) = con.execute("SELECT count(*) FROM vernacular").fetchone()
    return {"taxa": taxa, "synonyms": synonyms, "vernaculars": vernaculars, "rejected": rejected}


def load_backbone(
    backbone: Path,
    db_path: Path,
    progress: Progress | None = None,
    memory_limit: str = "3GB",
) -> dict:
    """Load a GBIF DwC-A (folder with Taxon.tsv [+ VernacularName.tsv], or backbone.zip), or
    the `simple.txt.gz` dump (no vernacular names in it).

    Returns {"taxa", "synonyms", "vernaculars", "rejected_lines", "skipped"}; `skipped` is true
    when `db_path` already holds this exact input (same fingerprint) and nothing was done.
    Malformed lines (too many columns) are skipped by DuckDB and counted in `rejected_lines`.
    """
    backbone, db_path = Path(backbone), Path(db_path)
    progress = or_null(progress)
    fingerprint = backbone_fingerprint(backbone)
    stored = _stored_meta(db_path)
    if stored and stored.get("fingerprint") == fingerprint:
        log.info("taxonomy db %s is up to date: load skipped", db_path)
        return _counts(stored, skipped=True)
    progress.start("taxonomy.load_backbone", None)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    simple = backbone if is_simple_dump(backbone) else None
    with _extracted(backbone, db_path.parent) as folder, atomic_path(db_path) as tmp:
        taxon, vern = (None, None) if simple else _archive_tables(folder)
        tmp.unlink(missing_ok=True)
        with contextlib.ExitStack() as stack:
            writable = stack.enter_context(duckdb_writable(tmp))  # a `?` in the data root
            spill = Path(f"{writable}.spill")
            stack.callback(shutil.rmtree, spill, ignore_errors=True)
            con = stack.enter_context(duckdb.connect(writable))
            # Bounded memory: DuckDB spills the sort to disk beside the database instead.
            con.execute(f"SET memory_limit = {_sql_str(memory_limit)}")
            con.execute(f"SET temp_directory = {_sql_str(str(spill))}")
            counts = _build(con, taxon, vern, simple)
            meta = {
                "fingerprint": fingerprint,
                "loader_version": LOADER_VERSION,
                "source": backbone.name,
                "taxa": str(counts["taxa"]),
                "synonyms": str(counts["synonyms"]),
                "vernaculars": str(counts["vernaculars"]),
                "rejected_lines": str(counts["rejected"]),
                "taxon_columns": json.dumps(list(taxon.columns if taxon else SIMPLE_COLUMNS)),
            }
            con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
            con.executemany("INSERT INTO meta VALUES (?, ?)", sorted(meta.items()))
            con.execute("CHECKPOINT")
        wal = Path(f"{tmp}.wal")
        if wal.exists():  # a clean close checkpoints; never rename a DB that still needs its WAL
            raise RuntimeError(f"DuckDB left a WAL next to {tmp}")
    if counts["rejected"]:
        log.warning("GBIF backbone %s: %d malformed lines skipped", backbone, counts["rejected"])
    log.info(
        "taxonomy db %s: %d taxa (%d synonyms), %d vernacular names",
        db_path,
        counts["taxa"],
        counts["synonyms"],
        counts["vernaculars"],
    )
    progress.advance(counts["taxa"])
    progress.finish()
    return _counts(meta, skipped=False)


def open_backbone(db_path: Path, memory_limit: str = "2GB") -> duckdb.DuckDBPyConnection:
    """A read-only connection to a loaded backbone (several readers may share the file).

    The memory limit caps DuckDB's buffer pool, which otherwise caches the scanned table up to
    80% of the machine's memory.
    """
    db_path = Path(db_path)
    if not db_path.exists():
        raise InputError(f"taxonomy db not found: {db_path} (run load_backbone first)")
    return duckdb.connect(str(db_path), read_only=True, config={"memory_limit": memory_limit})


def _scratch_writer(name: str) -> int | None:
    """The pid in an extraction folder's name (`.backbone-<pid>-XXXX.extract`), else None."""
    pid = name.removeprefix(".backbone-").split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def remove_stale_scratch(folder: Path) -> int:
    """Delete extraction folders a killed zip load left in `folder` (never a live loader's:
    the name carries its pid); returns how many."""
    paths = sorted(
        p
        for p in Path(folder).glob(".backbone-*.extract")
        if p.is_dir() and not writer_alive(_scratch_writer(p.name))
    )
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)
    return len(paths)


__all__ = [
    "AUTHORITY",
    "LOADER_VERSION",
    "backbone_fingerprint",
    "load_backbone",
    "open_backbone",
    "remove_stale_scratch",
]
