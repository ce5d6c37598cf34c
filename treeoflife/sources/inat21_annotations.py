"""iNat21 annotations: the COCO JSON read as published, and the readers the archive shares.

The annotations are read as published (`train.json.tar.gz`, a gzipped tar holding
`train.json`), gzipped, or plain; the format is sniffed from the bytes, not the name. Images and
annotations are kept as small tuples while parsing (2.7M of them in train.json). Both inputs
(annotations and image archive) are opened by `open_input` (a local file, or an http(s) URL
resumed with Range after a drop) and md5-checked while read through `HashingReader`.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import sys
import tarfile
import zlib
from pathlib import PurePosixPath
from typing import NamedTuple

from treeoflife.config import BuildConfig
from treeoflife.errors import InputError
from treeoflife.sources.ingest import member_is_unsafe, normal_member_name
from treeoflife.sources.remote import RangeReader, RemoteReadError, is_url

_GZIP_MAGIC = b"\x1f\x8b"


def open_input(spec: str, cfg: BuildConfig, what: str):
    """Open a configured input (local path, or http(s) URL streamed with Range resume)."""
    if is_url(spec):
        try:
            return RangeReader(spec)
        except (OSError, http.client.HTTPException) as exc:
            raise InputError(f"iNat21 {what} {spec}: {exc}") from exc
    path = cfg.path(spec)
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except OSError as exc:
        raise InputError(f"iNat21 {what} {path}: {exc.strerror or exc}") from exc


def input_location(spec: str, cfg: BuildConfig) -> str:
    """How messages name an input: its URL, or the local path it resolves to."""
    return spec if is_url(spec) else str(cfg.path(spec))


class CocoImage(NamedTuple):
    """One entry of the JSON's `images`, kept compact (2.7M of them in train.json)."""

    id: object
    file_name: object
    license: object
    rights_holder: object
    category_id: object


class CocoAnnotation(NamedTuple):
    image_id: object
    category_id: object


def _compact(obj: dict):
    """json object_hook: images and annotations become small tuples as they are parsed, so the
    2.7M dicts of train.json never all exist at once (~1 KB each as dicts)."""
    if "file_name" in obj:
        holder = obj.get("rights_holder")
        return CocoImage(
            obj.get("id"),
            obj.get("file_name"),
            obj.get("license"),
            sys.intern(holder) if isinstance(holder, str) else holder,
            obj.get("category_id"),
        )
    if "image_id" in obj and "category_id" in obj:
        return CocoAnnotation(obj["image_id"], obj["category_id"])
    return obj


class _Peekable:
    """A forward-only reader that can look at its next bytes before handing them on."""

    def __init__(self, raw):
        self._raw = raw
        self._buf = b""

    def peek(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self._raw.read(n - len(self._buf))
            if not chunk:
                break
            self._buf += chunk
        return self._buf[:n]

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            data, self._buf = self._buf + self._raw.read(), b""
            return data
        if self._buf:
            data, self._buf = self._buf[:n], self._buf[n:]
            return data
        return self._raw.read(n)


def _is_tar_header(block: bytes) -> bool:
    return len(block) >= 262 and block[257:262] == b"ustar"


def parse_annotations(stream) -> object:
    """The COCO JSON in `stream`: plain, gzipped, or the first .json file of a (gzipped) tar."""
    head = _Peekable(stream)
    if head.peek(2) == _GZIP_MAGIC:
        head = _Peekable(gzip.GzipFile(fileobj=head, mode="rb"))
    if _is_tar_header(head.peek(512)):
        with tarfile.open(fileobj=head, mode="r|") as tar:
            for member in tar:
                name = normal_member_name(member.name)
                base = PurePosixPath(name).name
                if (
                    member.isfile()
                    and not member_is_unsafe(name)
                    and base.endswith(".json")
                    and not base.startswith("._")  # AppleDouble files of macOS-made tars
                ):
                    extracted = tar.extractfile(member)
                    return json.loads(extracted.read(), object_hook=_compact)
        raise ValueError("the tar holds no .json file")
    return json.loads(head.read(), object_hook=_compact)


def load_annotations(spec: str, cfg: BuildConfig, md5: str | None = None) -> dict:
    """Read and check one annotations file (path or URL; .json, .json.gz or .json.tar.gz)."""
    return read_annotations(spec, cfg, md5)[0]


def read_annotations(spec: str, cfg: BuildConfig, md5: str | None = None) -> tuple[dict, str]:
    """The parsed annotations and the md5 of the file's bytes (checked against `md5`)."""
    where = input_location(spec, cfg)
    with open_input(spec, cfg, "annotations") as fh:
        reader = HashingReader(fh, enabled=True)  # ~1 s for train.json.tar.gz
        try:
            data = parse_annotations(reader)
            reader.drain()
        except RemoteReadError as exc:
            raise InputError(f"iNat21 annotations {where}: {exc}") from exc
        except (tarfile.TarError, zlib.error, EOFError, gzip.BadGzipFile) as exc:
            raise InputError(f"iNat21 annotations {where}: unreadable archive ({exc})") from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"iNat21 annotations {where}: not valid JSON ({exc})") from exc
    if md5 and reader.hexdigest() != md5.lower():
        raise InputError(
            f"iNat21 annotations {where}: md5 {reader.hexdigest()} does not match the "
            f"configured {md5}"
        )
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise InputError(f"iNat21 annotations {where}: no 'images' list (not a COCO JSON?)")
    return data, reader.hexdigest()


class HashingReader:
    """A file wrapper that md5s every byte read through it (tarfile's stream mode reads here)."""

    def __init__(self, fh, enabled: bool):
        self._fh = fh
        self._md5 = hashlib.md5(usedforsecurity=False) if enabled else None

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        if self._md5 is not None:
            self._md5.update(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass

    def hexdigest(self) -> str | None:
        return self._md5.hexdigest() if self._md5 is not None else None
