"""The table of hostile and broken inputs, each run through the real reader it targets.

Each case builds its input under a folder, runs the real reader (EOL manifest ingest, BIOSCAN
TSV + zips, iNat21 archives, the taxonomy backbone + resolver, the config loader through the
CLI) and returns what happened; `expect` says what must happen: every row counted with its
recorded reason (`Recorded`), or one clear error naming the thing (`Refused`). The test suite
runs the table (tests/reliability/test_bad_inputs.py); bench/reliability.py runs it too and
counts the cases and rows.
"""

from __future__ import annotations

import json
import stat
import struct
import subprocess
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from tests.sources.builders import (
    BIOSCAN_HEADER,
    EOL_HEADER,
    HTML,
    PAGES_HEADER,
    add_member,
    bioscan_line,
    jpeg,
    make_inat,
    write_csv,
    write_tsv,
)
from treeoflife.config import config_from_dict
from treeoflife.errors import TreeOfLifeError
from treeoflife.sources import ingest_bioscan, ingest_eol, ingest_inat21
from treeoflife.sources.download import DownloadSettings

EOL_PREFIX = "https://content.eol.org/data/media/"
FAST = DownloadSettings(retries=0, timeout_s=10.0)

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="4" height="4"/>'
SQL_NAME = "Robert'); DROP TABLE taxon; --"
SHELL_NAME = '$(touch /tmp/treeoflife-pwned) `id`; rm -rf / | "x"'
LONG_ID = "P" + "9" * 119  # a processid over 100 characters
BIG = 120_000_000  # over the 50 MB download cap and the 100 MB archive member cap


def png_bomb(side: int = 60_000) -> bytes:
    """A ~100-byte PNG that claims side x side pixels (3.6 gigapixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (side + 1) * 2)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# ------------------------------------------------------------------------- outcomes


@dataclass
class Result:
    rows: list[dict] = field(default_factory=list)  # catalog rows, in order
    ignored: dict[str, int] = field(default_factory=dict)  # archive members that are not rows
    error: str | None = None  # the one-line message the user gets
    rows_in: int = 0  # data rows the input holds


@dataclass(frozen=True)
class Recorded:
    """Every input row is in the catalog once; the named keys failed with these reasons and
    every other row is ok."""

    failed: dict[str, str]
    ignored: dict[str, int] = field(default_factory=dict)  # at least these members ignored
    fields: dict[str, dict] = field(default_factory=dict)  # key -> catalog values to check


@dataclass(frozen=True)
class Refused:
    """Nothing is ingested; the user gets one clear error holding all these words."""

    words: tuple[str, ...]


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Path], Result]
    expect: Recorded | Refused


def check(case: Case, result: Result) -> None:
    """Assert the outcome the case expects (also counts rows lost for the benchmark)."""
    if isinstance(case.expect, Refused):
        assert result.error is not None, f"{case.name}: expected an error, got {result.rows}"
        assert "\n" not in result.error.strip() and "Traceback" not in result.error
        for word in case.expect.words:
            assert word in result.error, (case.name, word, result.error)
        return
    assert result.error is None, f"{case.name}: {result.error}"
    keys = [r["key"] for r in result.rows]
    assert len(keys) == len(set(keys)), f"{case.name}: a key twice"
    assert len(keys) == result.rows_in, f"{case.name}: {result.rows_in} rows in, {len(keys)} out"
    got = {r["key"]: r["reason"] for r in result.rows if r["status"] != "ok"}
    assert got == case.expect.failed, case.name
    for name, n in case.expect.ignored.items():
        assert result.ignored.get(name, 0) >= n, (case.name, result.ignored)
    by_key = {r["key"]: r for r in result.rows}
    for key, values in case.expect.fields.items():
        assert {k: by_key[key][k] for k in values} == values, (case.name, key)


def rows_lost(result: Result) -> int:
    """Rows in minus distinct rows out; a refused input (one clear error, nothing ingested)
    loses none: the user is told and reruns with a fixed input."""
    if result.error is not None:
        return 0
    return max(0, result.rows_in - len({r["key"] for r in result.rows}))


def _catalog(root: Path, source: str) -> list[dict]:
    parts = sorted((root / "catalog" / source).glob("part-?????.parquet"))
    return [r for p in parts for r in pq.read_table(p).to_pylist()]


def _ingest(folder: Path, sources: dict, source: str, run, rows_in: int) -> Result:
    root = folder / "data"
    cfg = config_from_dict({"data_root": str(root), "sources": sources})
    try:
        stats = run(cfg)
    except TreeOfLifeError as exc:  # what the CLI prints in one line
        return Result(error=f"error: {exc}", rows_in=rows_in)
    return Result(_catalog(root, source), dict(stats.ignored), rows_in=rows_in)


# ------------------------------------------------------------------------- EOL manifests


def eol_line(i: int, url: str | None = None, owner: str = "o") -> bytes:
    url = EOL_PREFIX + f"{i}.jpg" if url is None else url
    return f"{1000 + i},7,,{url},cc-by,{owner}\n".encode()


EOL_HEADER_LINE = (",".join(EOL_HEADER) + "\n").encode()


def eol(
    lines: list[bytes] | Callable[[], list[bytes]],
    files: dict[str, bytes] | None = None,
    header: bytes = EOL_HEADER_LINE,
    prefix: bytes = b"",
    pages: list[list] | None = None,
    sparse: dict[str, int] | None = None,
) -> Callable[[Path], Result]:
    """An EOL manifest of `lines` (row i fetches mirror file `i.jpg`, a JPEG unless `files`
    gives other bytes), ingested from a local mirror folder."""

    def run(folder: Path) -> Result:
        body = lines() if callable(lines) else lines
        mirror = folder / "data" / "mirror"
        mirror.mkdir(parents=True)
        for i in range(len(body) + 2):
            (mirror / f"{i}.jpg").write_bytes(jpeg(i, 8, 8))
        for name, data in (files or {}).items():
            (mirror / name).write_bytes(data)
        for name, size in (sparse or {}).items():
            with open(mirror / name, "wb") as fh:
                fh.truncate(size)  # sparse: costs no disk
        manifest = folder / "media_manifest.csv"
        manifest.write_bytes(prefix + header + b"".join(body))
        section = {"manifests": [str(manifest)], "mirror": {EOL_PREFIX: "mirror/"}}
        if pages is not None:
            write_csv(folder / "pages.csv", PAGES_HEADER, pages)
            section["pages"] = str(folder / "pages.csv")
        return _ingest(
            folder,
            {"eol": section},
            "eol",
            lambda cfg: ingest_eol(cfg, settings=FAST, decode_workers=0),
            sum(1 for line in body if line.strip()),
        )

    return run


def eol_rows(n: int, bad: dict[int, bytes]) -> list[bytes]:
    return [bad.get(i, eol_line(i)) for i in range(n)]


def malformed(line: int) -> str:
    return f"eol/malformed/0:{line}"


def key(i: int) -> str:
    return f"eol/{1000 + i}_7"


# ------------------------------------------------------------------------- BIOSCAN


def bioscan(
    lines: list[str] | None = None,
    members: dict[str, bytes] | None = None,
    special: dict[str, int] | None = None,
    raw: bytes | None = None,
    n: int = 4,
) -> Callable[[Path], Result]:
    """A BIOSCAN TSV of `n` rows (row i: processid P<i>, image part1/P<i>.jpg) plus `lines`
    (raw TSV lines), or the whole file as `raw` bytes; a zip of JPEGs for every row, `members`
    overriding or adding, `special` adding members with that Unix file type."""

    def run(folder: Path) -> Result:
        folder.mkdir(parents=True, exist_ok=True)
        tsv = folder / "metadata.tsv"
        rows = [bioscan_line(f"P{i}", 1, {"family": "Cecidomyiidae"}) for i in range(n)]
        if raw is None:
            write_tsv(tsv, BIOSCAN_HEADER, rows)
            with open(tsv, "a", encoding="utf-8", newline="") as fh:
                fh.writelines(line + "\n" for line in lines or [])
        else:
            tsv.write_bytes(raw)
        data = {f"part1/P{i}.jpg": jpeg(100 + i, 8, 8) for i in range(n)}
        data.update(members or {})
        zpath = folder / "images.zip"
        with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, payload in data.items():
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (stat.S_IFREG | 0o644) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                zf.writestr(info, payload)
            for name, kind in (special or {}).items():
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (kind | 0o644) << 16
                zf.writestr(info, "/etc/passwd" if kind == stat.S_IFLNK else "")
        n_in = sum(1 for line in tsv.read_bytes().splitlines()[1:] if line.strip())
        section = {"metadata": str(tsv), "zips": [str(zpath)]}
        return _ingest(folder, {"bioscan": section}, "bioscan", ingest_bioscan, n_in)

    return run


def bline(processid: str, image_file: str | None = None, **ranks) -> str:
    return "\t".join(bioscan_line(processid, 1, ranks or {"family": "Cecidomyiidae"}, image_file))


# ------------------------------------------------------------------------- iNat21


def inat(
    members: Callable[[list[str], dict[str, bytes]], list[tarfile.TarInfo | tuple]],
    annotations: bytes | None = None,
    n: int = 4,
    cut: int | None = None,
) -> Callable[[Path], Result]:
    """An iNat21 archive of `n` listed images whose tar members `members(names, payloads)`
    gives (TarInfo for special members, (name, bytes) for files); `annotations` replaces the
    JSON; `cut` truncates the .tar.gz to that many bytes."""

    def run(folder: Path) -> Result:
        spec, payloads = make_inat(folder, "train", n, extras=False)
        names = sorted(payloads)
        with tarfile.open(spec["images"], "w:gz") as tar:
            for item in members(names, payloads):
                if isinstance(item, tarfile.TarInfo):
                    tar.addfile(item)
                else:
                    add_member(tar, item[0], item[1])
        if cut is not None:
            data = Path(spec["images"]).read_bytes()
            Path(spec["images"]).write_bytes(data[:cut])
        if annotations is not None:
            Path(spec["annotations"]).write_bytes(annotations)
        section = {"archives": [spec]}
        return _ingest(folder, {"inat21": section}, "inat21", ingest_inat21, n)

    return run


def inat_long_file_name(folder: Path) -> Result:
    """An iNat21 image whose file name makes a key too long for an image-store name."""
    spec, payloads = make_inat(folder, "train", 4, extras=False)
    names = sorted(payloads)
    long_name = names[0].rsplit("/", 1)[0] + "/" + "a" * 120 + ".jpg"
    data = json.loads(Path(spec["annotations"]).read_text())
    for image in data["images"]:
        if image["file_name"] == names[0]:
            image["file_name"] = long_name
    Path(spec["annotations"]).write_text(json.dumps(data))
    with tarfile.open(spec["images"], "w:gz") as tar:
        add_member(tar, long_name, payloads[names[0]])
        for name in names[1:]:
            add_member(tar, name, payloads[name])
    return _ingest(folder, {"inat21": {"archives": [spec]}}, "inat21", ingest_inat21, 4)


def special_member(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def inat_key(names: list[str], i: int) -> str:
    return "inat21/" + Path(names[i]).stem


def _inat_names(n: int = 4) -> list[str]:
    from tests.sources.builders import inat_file_name

    return sorted(inat_file_name("train", i) for i in range(n))


def _big_zeros() -> bytes:
    return b"\0" * 101_000_000


# ------------------------------------------------------------------------- taxonomy


def taxonomy_names(folder: Path) -> Result:
    """Names with SQL and shell metacharacters through the backbone loader and the resolver:
    they are data, never SQL (the DuckDB queries take them as parameters or registered tables)."""
    from tests.taxonomy.conftest import HOMONYM_TAXA, TAXON_HEADER, make_queries, write_dwca
    from treeoflife.taxonomy import load_backbone, resolve_taxa

    odd = ("99", "", SQL_NAME, SQL_NAME, "Robert'); DROP", "x", "species", "accepted",
           "Animalia", "", "", "", "", "Robert'); DROP")  # fmt: skip
    header = (*TAXON_HEADER, 'remarks" VARCHAR, "x')  # a column name that closes its quotes
    taxa = [(*row, "") for row in [*HOMONYM_TAXA, odd]]
    backbone = write_dwca(folder / "backbone", taxa, header=header)
    db = folder / "backbone.duckdb"
    try:
        load_backbone(backbone, db)
        names = [SQL_NAME, SHELL_NAME, "Prunella modularis", "'; SELECT 1; --", "%_\\"]
        queries = make_queries(
            *({"verbatim_scientific_name": n, "verbatim_kingdom": "Animalia"} for n in names)
        )
        table = resolve_taxa(queries, db)
    except TreeOfLifeError as exc:
        return Result(error=f"error: {exc}", rows_in=len(names))
    rows = table.to_pylist()
    by_name = dict(zip(queries.column("query_id").to_pylist(), names, strict=True))
    out = []
    for row in rows:
        resolved = row.get("scientific_name") or row.get("species")
        out.append(
            {"key": by_name[row["query_id"]], "status": "ok", "reason": None, "name": resolved}
        )
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        (n_taxa,) = con.execute("SELECT count(*) FROM taxon").fetchone()
    assert n_taxa == len(taxa), "the backbone lost rows"
    return Result(out, rows_in=len(names))


# ------------------------------------------------------------------------- config via the CLI


def config(text: str) -> Callable[[Path], Result]:
    """`treeoflife build --config` on this YAML: exit 2, one line naming the key, nothing
    written (the data root is not even created)."""

    def run(folder: Path) -> Result:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "build.yaml"
        path.write_text(text.replace("ROOT", str(folder / "data")))
        done = subprocess.run(
            [sys.executable, "-m", "treeoflife.cli", "build", "--config", str(path), "--quiet"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, (done.returncode, done.stderr)
        assert not (folder / "data").exists(), "work started before the config was checked"
        return Result(error=done.stderr, rows_in=0)

    return run


# ------------------------------------------------------------------------- the table

N = 40  # rows of the EOL manifests (several 8 KiB read chunks are not needed: bugs show at 40)


def _stray_quote() -> list[bytes]:
    body = eol_rows(N, {})
    body[5] = f'{1005},7,,"{EOL_PREFIX}5.jpg,cc-by,o\n'.encode()
    return body


def _enormous() -> list[bytes]:
    body = eol_rows(N, {})
    body[3] = eol_line(3, owner="x" * 17_000_000)  # over the 16 MiB field limit
    body[4] = eol_line(4, owner="y" * 1_000_000)  # big but within it: kept
    return body


CASES: list[Case] = [
    # --- EOL media manifest (CSV)
    Case(
        "eol_ragged_rows",
        eol(eol_rows(N, {3: b"1003,7,,x\n", 7: b"1007,7,,a,b,c,d,e,f,g\n", 9: b"1009\n"})),
        Recorded(
            {
                malformed(5): "malformed_row",
                malformed(9): "malformed_row",
                malformed(11): "malformed_row",
            }
        ),
    ),  # fmt: skip
    Case(
        "eol_semicolon_delimiter",
        eol(
            [line.replace(b",", b";") for line in eol_rows(3, {})],
            header=EOL_HEADER_LINE.replace(b",", b";"),
        ),
        Refused(("media_manifest.csv", "missing column", "EOL content ID")),
    ),  # fmt: skip
    Case(
        "eol_tab_delimiter",
        eol(
            [line.replace(b",", b"\t") for line in eol_rows(3, {})],
            header=EOL_HEADER_LINE.replace(b",", b"\t"),
        ),
        Refused(("media_manifest.csv", "missing column")),
    ),  # fmt: skip
    Case("eol_utf8_bom", eol(eol_rows(N, {}), prefix=b"\xef\xbb\xbf"), Recorded({})),
    Case(
        "eol_invalid_utf8_row",
        eol(eol_rows(N, {20: b"1020,7,,x,cc-by,\xff\xfe owner\n"})),
        Recorded({malformed(22): "malformed_row"}),
    ),
    Case(
        "eol_invalid_utf8_header",
        eol(eol_rows(3, {}), header=EOL_HEADER_LINE.replace(b"Owner", b"Own\xffer")),
        Refused(("media_manifest.csv", "UTF-8")),
    ),
    Case("eol_nul_byte_in_field", eol(eol_rows(N, {4: eol_line(4, owner="a\0b")})), Recorded({})),
    Case("eol_enormous_fields", eol(_enormous), Recorded({malformed(5): "malformed_row"})),
    Case("eol_stray_quote", eol(_stray_quote), Recorded({malformed(7): "malformed_row"})),
    Case(
        "eol_ids_out_of_range",
        eol(eol_rows(N, {1: b"99999999999999999999999,7,,u,l,o\n", 2: b"-4,7,,u,l,o\n"})),
        Recorded({malformed(3): "malformed_row", malformed(4): "malformed_row"}),
    ),
    Case(
        "eol_other_url_schemes",
        eol(
            eol_rows(
                N,
                {
                    1: eol_line(1, "ftp://ftp.example.org/1.jpg"),
                    2: eol_line(2, '"data:image/png;base64,iVBORw0KGgo="'),
                    3: eol_line(3, "javascript:alert(1)"),
                    4: eol_line(4, "gopher://example.org/1"),
                    5: eol_line(5, "http://"),
                    6: eol_line(6, "not a url"),
                },
            )
        ),
        Recorded(
            {
                key(1): "unsupported_scheme",
                key(2): "unsupported_scheme",
                key(3): "unsupported_scheme",
                key(4): "unsupported_scheme",
                key(5): "invalid_url",
                key(6): "unsupported_scheme",
            }
        ),
    ),  # fmt: skip
    Case(
        "eol_images_that_are_html_svg_pdf",
        eol(eol_rows(N, {}), files={"1.jpg": HTML, "2.jpg": SVG, "3.jpg": PDF}),
        Recorded({key(1): "not_an_image", key(2): "not_an_image", key(3): "not_an_image"}),
    ),
    Case(
        "eol_zero_byte_and_120mb_files",
        eol(eol_rows(N, {}), files={"1.jpg": b""}, sparse={"2.jpg": BIG}),
        Recorded({key(1): "empty_file", key(2): "too_large"}),
    ),
    Case(
        "eol_decompression_bomb",
        eol(eol_rows(N, {}), files={"1.jpg": png_bomb()}),
        Recorded({key(1): "image_too_large"}),
    ),
    Case(
        "eol_sql_and_shell_names",
        eol(eol_rows(N, {}), pages=[[7, SQL_NAME, "Animalia", "", "", "", "", "", SHELL_NAME]]),
        Recorded(
            {},
            fields={
                key(1): {"verbatim_scientific_name": SQL_NAME, "verbatim_common_name": SHELL_NAME}
            },
        ),
    ),  # fmt: skip
    Case(
        "eol_missing_manifest",
        lambda folder: _ingest(
            folder,
            {"eol": {"manifests": [str(folder / "nowhere.csv")]}},
            "eol",
            lambda cfg: ingest_eol(cfg, settings=FAST, decode_workers=0),
            0,
        ),
        Refused(("nowhere.csv", "No such file")),
    ),
    # --- BIOSCAN-1M metadata TSV + image zips
    Case(
        "bioscan_ragged_rows",
        bioscan(["P90\tonly\tthree", bline("P91") + "\textra"]),
        Recorded(
            {"bioscan/malformed/line6": "malformed_row", "bioscan/malformed/line7": "malformed_row"}
        ),
    ),
    Case(
        "bioscan_comma_delimiter",
        bioscan(raw=(",".join(BIOSCAN_HEADER) + "\n" + bline("P1").replace("\t", ",")).encode()),
        Refused(("metadata.tsv", "missing column")),
    ),
    Case(
        "bioscan_utf8_bom",
        bioscan(raw=("\ufeff" + "\t".join(BIOSCAN_HEADER) + "\n" + bline("P0") + "\n").encode()),
        Recorded({}),
    ),
    Case(
        "bioscan_invalid_utf8_row",
        bioscan(
            raw=("\t".join(BIOSCAN_HEADER) + "\n").encode()
            + b"\n".join(bline(f"P{i}").encode() for i in range(3))
            + b"\n"
            + bline("P3").encode().replace(b"Cecidomyiidae", b"Ceci\xffdae")
            + b"\n"
        ),
        Recorded({"bioscan/malformed/line5": "malformed_row"}),
    ),  # fmt: skip
    Case(
        "bioscan_zip_members_escaping_or_special",
        bioscan(
            members={"../part1/P0.jpg": jpeg(1, 8, 8), "/abs/part1/P9.jpg": jpeg(2, 8, 8)},
            special={
                "part1/L.jpg": stat.S_IFLNK,
                "part1/D.jpg": stat.S_IFCHR,
                "part1/F.jpg": stat.S_IFIFO,
            },
            lines=[bline("P7", "L.jpg"), bline("P8", "D.jpg"), bline("P9", "F.jpg")],
        ),
        Recorded(
            {
                "bioscan/P7": "missing_in_archive",
                "bioscan/P8": "missing_in_archive",
                "bioscan/P9": "missing_in_archive",
            },
            ignored={"unsafe_member": 2},
        ),
    ),  # fmt: skip
    Case(
        "bioscan_zip_bomb_zero_byte_and_not_images",
        bioscan(
            members={
                "part1/P0.jpg": _big_zeros(),
                "part1/P1.jpg": b"",
                "part1/P2.jpg": HTML,
                "part1/P3.jpg": PDF,
            },
            n=5,
        ),
        Recorded(
            {
                "bioscan/P0": "member_too_large",
                "bioscan/P1": "empty_file",
                "bioscan/P2": "not_an_image",
                "bioscan/P3": "not_an_image",
            }
        ),
    ),  # fmt: skip
    Case(
        "bioscan_processid_too_long_for_a_store_name",  # a crash on the tar name limit before
        bioscan([bline(LONG_ID)], members={f"part1/{LONG_ID}.jpg": jpeg(9, 8, 8)}),
        Recorded({"bioscan/malformed/line6": "malformed_row"}),
    ),
    Case(
        "bioscan_sql_and_shell_names",
        bioscan([bline("P9", "P0.jpg", genus=SQL_NAME, species=SHELL_NAME)]),
        Recorded(
            {},
            fields={
                "bioscan/P9": {"verbatim_genus": SQL_NAME, "verbatim_scientific_name": SHELL_NAME}
            },
        ),
    ),  # fmt: skip
    # --- iNat21 archives (.tar.gz + COCO JSON)
    Case(
        "inat21_members_escaping_links_devices",
        inat(
            lambda names, p: [
                ("../" + names[0], p[names[0]]),
                ("/" + names[1], p[names[1]]),
                special_member(names[2], tarfile.SYMTYPE, "/etc/passwd"),
                special_member(names[3], tarfile.CHRTYPE),
                special_member("train/fifo.jpg", tarfile.FIFOTYPE),
                special_member("train/hard.jpg", tarfile.LNKTYPE, names[0]),
            ]
        ),
        Recorded(
            {inat_key(_inat_names(), i): "missing_in_archive" for i in range(4)},
            ignored={"unsafe_member": 2},
        ),
    ),  # fmt: skip
    Case(
        "inat21_bomb_zero_byte_and_not_images",
        inat(
            lambda names, p: [
                (names[0], _big_zeros()),
                (names[1], b""),
                (names[2], SVG),
                (names[3], p[names[3]]),
            ]
        ),
        Recorded(
            {
                inat_key(_inat_names(), 0): "member_too_large",
                inat_key(_inat_names(), 1): "empty_file",
                inat_key(_inat_names(), 2): "not_an_image",
            }
        ),
    ),  # fmt: skip
    Case(
        "inat21_file_name_too_long_for_a_store_name",
        inat_long_file_name,
        Recorded({"inat21/malformed/0:0": "malformed_row"}),
    ),
    Case(
        "inat21_annotations_not_json",
        inat(lambda names, p: [(n, p[n]) for n in names], annotations=b'{"images": [1, 2'),
        Refused(("train.json",)),
    ),
    Case(
        "inat21_archive_cut_short",
        inat(lambda names, p: [(n, p[n]) for n in names], cut=300),
        Refused(("train.tar.gz",)),
    ),
    # --- taxonomy: names are data, never SQL
    Case("taxonomy_sql_and_shell_names", taxonomy_names, Recorded({})),
    # --- build config: rejected with the key named before any work starts
    Case(
        "config_unknown_key",
        config("data_root: ROOT\ncolour: blue\n"),
        Refused(("unknown key", "colour")),
    ),
    Case(
        "config_unknown_nested_key",
        config("data_root: ROOT\nsources:\n  eol:\n    concurrancy: 4\n"),
        Refused(("sources.eol", "concurrancy")),
    ),
    Case(
        "config_wrong_type",
        config("data_root: ROOT\nsources:\n  eol:\n    rows_per_part: many\n"),
        Refused(("sources.eol.rows_per_part", "expected int")),
    ),
    Case(
        "config_bool_for_int",
        config("data_root: ROOT\nsources:\n  eol:\n    retries: true\n"),
        Refused(("sources.eol.retries",)),
    ),
    Case(
        "config_string_for_list",
        config("data_root: ROOT\nsources:\n  eol:\n    manifests: a.csv\n"),
        Refused(("sources.eol.manifests", "expected a list")),
    ),
    Case("config_not_a_mapping", config("- a\n- b\n"), Refused(("top level must be a mapping",))),
    Case("config_bad_yaml", config("data_root: [ROOT\n"), Refused(("cannot read config",))),
]
