"""EOL manifests: their data lines as catalog rows (names joined from pages.csv) and fetch URLs.

Streamed, in manifest order: memory holds a compact set of the keys seen (for duplicates),
never the manifest. A malformed line spoils its own row only, never the rows after it.
"""

from __future__ import annotations

import csv
import functools
import logging
from collections.abc import Iterator

from treeoflife.config import BuildConfig
from treeoflife.errors import InputError
from treeoflife.records import eol_key
from treeoflife.sources.fetch_policy import public_url
from treeoflife.sources.ingest import clean, fail, fields_are_utf8, new_row
from treeoflife.sources.seen import SeenKeys
from treeoflife.vocabulary import Reason

log = logging.getLogger(__name__)

SOURCE = "eol"

COL_CONTENT = "EOL content ID"
COL_PAGE = "EOL page ID"
COL_SOURCE_URL = "Medium Source URL"
COL_COPY_URL = "EOL Full-Size Copy URL"
COL_LICENSE = "License Name"
COL_OWNER = "Copyright Owner"
REQUIRED_COLUMNS = (COL_CONTENT, COL_PAGE, COL_COPY_URL)

PAGE_FIELDS = (
    "scientific_name",
    "kingdom",
    "phylum",
    "class",
    "order",
    "family",
    "genus",
    "common_name",
)


csv.field_size_limit(1 << 24)


def rewrite_url(url: str, mirror: dict[str, str], cfg: BuildConfig) -> str:
    """Apply the longest matching mirror prefix.

    A replacement that is an http(s):// or file:// URL replaces the prefix; any other value is a
    local folder (relative to the data root) and becomes a file:// URL.
    """
    for prefix in sorted(mirror, key=lambda p: (-len(p), p)):
        if url.startswith(prefix):
            target = mirror[prefix]
            rest = url[len(prefix) :]
            if target.startswith(("http://", "https://", "file://")):
                return target + rest
            folder = cfg.path(target).resolve().as_uri()
            if not folder.endswith("/") and not rest.startswith("/"):
                folder += "/"
            return folder + rest
    return url


def load_pages(cfg: BuildConfig) -> dict[int, tuple[str | None, ...]]:
    """page id -> (scientific_name, kingdom, ..., genus, common_name)."""
    spec = cfg.sources.eol.pages
    if spec is None:
        return {}
    path = cfg.path(spec)
    pages: dict[int, tuple[str | None, ...]] = {}
    bad = 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            if reader.fieldnames is None or "page_id" not in reader.fieldnames:
                raise InputError(f"EOL pages {path}: no page_id column")
            for rec in reader:
                try:
                    page_id = int(str(rec.get("page_id")).strip())
                except ValueError:
                    bad += 1
                    continue
                pages[page_id] = tuple(clean(rec.get(f)) for f in PAGE_FIELDS)
    except OSError as exc:
        raise InputError(f"EOL pages {path}: {exc.strerror or exc}") from exc
    except (csv.Error, UnicodeDecodeError) as exc:
        raise InputError(f"EOL pages {path}: unreadable ({exc})") from exc
    if bad:
        log.warning("EOL pages %s: %d line(s) without an integer page_id ignored", path, bad)
    return pages


def iter_manifest_rows(cfg: BuildConfig, pages: dict) -> Iterator[tuple[dict, str | None]]:
    """(catalog row, fetch URL or None) for every manifest data line, in order."""
    seen = SeenKeys()
    for manifest_no, spec in enumerate(cfg.sources.eol.manifests):
        path = cfg.path(spec)
        try:
            # utf-8-sig: a BOM is not part of the first column's name; surrogateescape: an
            # invalid byte spoils its own row only (see _manifest_row), never the rows after it
            fh = open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")  # noqa: SIM115 - closed below
        except OSError as exc:
            raise InputError(f"EOL manifest {path}: {exc.strerror or exc}") from exc
        with fh:
            lines = _RecordLines(fh)
            reader = csv.reader(lines)
            try:
                header = [h.strip() for h in next(reader)]
            except StopIteration:
                continue  # an empty manifest has no rows
            except (csv.Error, UnicodeDecodeError) as exc:
                raise InputError(f"EOL manifest {path}: unreadable header ({exc})") from exc
            if not fields_are_utf8(header):
                raise InputError(f"EOL manifest {path}: header is not valid UTF-8")
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                raise InputError(f"EOL manifest {path}: missing column(s) {', '.join(missing)}")
            col = {name: i for i, name in enumerate(header)}

            row_of = functools.partial(
                _manifest_row, header=header, col=col, manifest_no=manifest_no, pages=pages,
                seen=seen, cfg=cfg,
            )  # fmt: skip

            while True:
                line = reader.line_num + 1
                lines.record.clear()
                try:
                    fields = next(reader)
                except StopIteration:
                    break
                except (csv.Error, UnicodeDecodeError):
                    fields = None
                if fields is not None and (len(fields) == len(header) or len(lines.record) < 2):
                    if fields:
                        yield row_of(fields, line=line)
                    continue
                if len(lines.record) < 2:
                    yield _malformed(manifest_no, line), None
                    continue
                # A bad record over several lines (a stray quote runs on to a later quote, or
                # to the field size limit): read its lines one by one, so only the line with
                # the stray quote is malformed, not every row the quote swallowed.
                for k, text in enumerate(list(lines.record)):
                    try:
                        one = next(csv.reader([text]), [])
                    except csv.Error:
                        one = None
                    if one is None:
                        yield _malformed(manifest_no, line + k), None
                    elif one:
                        yield row_of(one, line=line + k)


class _RecordLines:
    """The manifest's lines for csv.reader, keeping those of the record being read."""

    def __init__(self, fh):
        self._fh = fh
        self.record: list[str] = []

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        text = next(self._fh)
        self.record.append(text)
        return text


def _malformed(manifest_no: int, line: int) -> dict:
    return fail(new_row(f"eol/malformed/{manifest_no}:{line}", SOURCE), Reason.MALFORMED_ROW)


_MAX_ID = 2**63 - 1  # ids are int64 in the catalog


def _manifest_row(fields, header, col, manifest_no, line, pages, seen, cfg):
    if len(fields) != len(header) or not fields_are_utf8(fields):
        return _malformed(manifest_no, line), None
    try:
        content_id = int(fields[col[COL_CONTENT]].strip())
        page_id = int(fields[col[COL_PAGE]].strip())
    except ValueError:
        return _malformed(manifest_no, line), None
    if not (0 <= content_id <= _MAX_ID and 0 <= page_id <= _MAX_ID):
        return _malformed(manifest_no, line), None

    def get(name: str) -> str | None:
        return clean(fields[col[name]]) if name in col else None

    row = new_row(eol_key(content_id, page_id), SOURCE)
    row["eol_content_id"] = content_id
    row["eol_page_id"] = page_id
    row["license"] = get(COL_LICENSE)
    row["rights_holder"] = get(COL_OWNER)
    row["source_url"] = public_url(get(COL_SOURCE_URL))  # never publish user:pass@
    names = pages.get(page_id)
    if names is not None:
        sci, kingdom, phylum, cls, order, family, genus, common = names
        row.update(
            verbatim_scientific_name=sci,
            verbatim_kingdom=kingdom,
            verbatim_phylum=phylum,
            verbatim_class=cls,
            verbatim_order=order,
            verbatim_family=family,
            verbatim_genus=genus,
            verbatim_common_name=common,
        )
    dup = seen.duplicate_of(row["key"])
    if dup is not None:
        row["key"] = dup
        return fail(row, Reason.DUPLICATE_KEY), None
    url = get(COL_COPY_URL)
    if url is None:
        return fail(row, Reason.NO_URL), None
    return row, rewrite_url(url, cfg.sources.eol.mirror, cfg)
