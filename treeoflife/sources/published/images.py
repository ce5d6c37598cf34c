"""Where a published row's image comes from: EOL URLs, EOL image sets, the user's iNat21
archives and BIOSCAN-1M zips. Each returns bytes (or a reason) per plan row; the ingest
(`ingest.py`) checks md5s, decodes and writes parts.
"""

from __future__ import annotations

import asyncio
import logging
import tarfile
from collections.abc import Iterator
from pathlib import Path

from treeoflife.config import BuildConfig
from treeoflife.errors import InputError
from treeoflife.io import md5_hex
from treeoflife.sources.bioscan import index_zips, zip_paths
from treeoflife.sources.download import Downloader, is_transient
from treeoflife.sources.eol import rewrite_url
from treeoflife.sources.inat21_annotations import open_input
from treeoflife.sources.ingest import member_is_unsafe, normal_member_name, tar_member_is_special
from treeoflife.vocabulary import Reason

log = logging.getLogger(__name__)


def stem(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    dot = base.rfind(".")
    return base[:dot] if dot > 0 else base


def md5_problem(data: bytes, expected: str | None, check: bool) -> str | None:
    """Reason.MD5_MISMATCH when the check is on and the published md5 differs."""
    if not check or not expected:
        return None
    return None if md5_hex(data) == expected.lower() else Reason.MD5_MISMATCH.value


# ----------------------------------------------------------------------------- EOL by URL


async def fetch_eol(
    downloader: Downloader, row: dict, cfg: BuildConfig
) -> tuple[bytes | None, str | None, str | None]:
    """(bytes, reason, URL that served) of one EOL row: the full-size copy first, then the
    medium's source URL when the copy is gone (a transient failure is not a reason to switch:
    the next run fetches the row again)."""
    mirror = cfg.sources.eol.mirror
    urls = [u for u in (row["eol_full_size_copy_url"], row["medium_source_url"]) if u]
    if not urls:
        return None, Reason.NO_URL.value, None
    reason = None
    for i, url in enumerate(dict.fromkeys(urls)):
        async with downloader.fetching(rewrite_url(url, mirror, cfg)) as result:
            if result.data is not None:
                return result.data, None, url
            if i == 0:
                reason = result.reason
            if is_transient(result.reason):
                return None, result.reason, None
    return None, reason, None


def fetch_part(downloader: Downloader, rows: list[dict], cfg: BuildConfig) -> list[tuple]:
    async def run():
        return await asyncio.gather(*(fetch_eol(downloader, r, cfg) for r in rows))

    return asyncio.run(run())


# ----------------------------------------------------------------------------- streamed tars


def iter_tar_images(path_or_spec: str, cfg: BuildConfig, what: str) -> Iterator[tuple[str, bytes]]:
    """(member name, bytes) of every regular file of a (gzipped) tar, streamed in order.
    Unsafe and special members are skipped; a damaged archive ends with InputError."""
    fh = open_input(path_or_spec, cfg, what)
    try:
        with tarfile.open(fileobj=fh, mode="r|*") as tar:
            for member in tar:
                name = normal_member_name(member.name)
                if member.isdir() or tar_member_is_special(member) or member_is_unsafe(name):
                    continue
                data = tar.extractfile(member)
                if data is not None:
                    yield name, data.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InputError(f"{what} {path_or_spec}: unreadable archive ({exc})") from exc
    finally:
        fh.close()


# ----------------------------------------------------------------------------- BIOSCAN zips


class BioscanZips:
    """The user's BIOSCAN-1M zips, indexed by `part<chunk>/<file>` (sources.bioscan's index)."""

    def __init__(self, cfg: BuildConfig, zips: list[str]):
        self.ignored: dict[str, int] = {}
        paths: list[Path] = zip_paths(cfg, zips) if zips else []
        self.opened, self.index = index_zips(cfg, paths, self.ignored)

    def read(self, part: str | None, filename: str | None) -> bytes | None:
        if not part or not filename:
            return None
        part = part if part.startswith("part") else f"part{part}"
        hit = self.index.get(f"{part}/{filename}")
        if hit is None:
            return None
        zip_no, info = hit
        return self.opened[zip_no].read(info)

    def close(self) -> None:
        for zf in self.opened:
            zf.close()
