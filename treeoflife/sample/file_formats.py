"""Deterministic archive and table bytes: fixed gzip/tar/zip metadata and sorted member
orders, so the same members always give the same file."""

from __future__ import annotations

import csv
import gzip
import io
import stat
import tarfile
import zipfile

from treeoflife.io import tar_member_info

DATE_TIME_1980 = (1980, 1, 1, 0, 0, 0)


def csv_bytes(header, rows) -> bytes:
    """CSV with a header row, LF line ends, UTF-8: the same rows always give the same bytes."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def tsv_bytes(header, rows) -> bytes:
    """Unquoted TSV (header optional); a tab or newline in a field is refused, not escaped."""
    lines = [] if header is None else ["\t".join(header)]
    for r in rows:
        if any("\t" in c or "\n" in c for c in r):
            raise ValueError(f"tab or newline in a TSV field: {r}")
        lines.append("\t".join(r))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def _folders(names) -> list[str]:
    out = set()
    for n in names:
        parts = n.split("/")[:-1]
        out.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    return sorted(out)


def targz_bytes(members: dict[str, bytes]) -> bytes:
    """A .tar.gz of `members` and their folders, sorted, with zeroed times and owners."""
    raw = io.BytesIO()
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        entries = [(d, None) for d in _folders(members)] + sorted(members.items())
        for name, data in sorted(entries, key=lambda e: e[0]):
            if data is None:
                info = tar_member_info(name, 0)
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                tar.addfile(tar_member_info(name, len(data)), io.BytesIO(data))
    return raw.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    """A stored (uncompressed) zip of `members` and their folders, sorted, dated 1980."""
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_STORED) as zf:
        for d in _folders(members):
            info = zipfile.ZipInfo(d + "/", date_time=DATE_TIME_1980)
            info.create_system, info.external_attr = 3, ((stat.S_IFDIR | 0o755) << 16) | 0x10
            zf.writestr(info, b"")
        for name in sorted(members):
            info = zipfile.ZipInfo(name, date_time=DATE_TIME_1980)
            info.create_system, info.external_attr = 3, (stat.S_IFREG | 0o644) << 16
            info.compress_type = zipfile.ZIP_STORED
            zf.writestr(info, members[name])
    return raw.getvalue()
