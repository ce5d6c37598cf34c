"""iNat21 annotations: the COCO JSON read as published, and the readers the archive shares.

The annotations are read as published (`train.json.tar.gz`, a gzipped tar holding
`train.json`), gzipped, or plain; the format is sniffed from the bytes, not the name. Both inputs
(annotations and image archive) are opened by `open_input` (a local file, or an http(s) URL
resumed with Range after a drop) and md5-checked while read through `HashingReader`.

The JSON is parsed as a stream of events (ijson), never held whole: train.json has 2.7M images
and as many annotations, ~1 KB each as Python dicts. What the plan needs of each image is kept
column-wise as it goes by (Arrow record batches of its text fields, arrays of its ids), so the
sections may come in any order (annotations before images, licences last) and cost ~100 bytes
an image. What it gives is what `json.loads` with the old object_hook gave the plan: the same
values for the same JSON, the last of a repeated key winning.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import tarfile
import zlib
from array import array
from pathlib import PurePosixPath
from typing import NamedTuple

import ijson
import pyarrow as pa
import pyarrow.compute as pc

from treeoflife.config import BuildConfig
from treeoflife.errors import InputError
from treeoflife.sources.ingest import clean, member_is_unsafe, normal_member_name
from treeoflife.sources.remote import RangeReader, RemoteReadError, is_url

_GZIP_MAGIC = b"\x1f\x8b"
_UTF8_BOM = b"\xef\xbb\xbf"

_POOL = pa.system_memory_pool()
"""Where the image batches live: malloc gives a big buffer's pages back when it is freed, while
Arrow's default pool keeps each batch's temporaries (~10% less peak RSS at 1M images)."""

IMAGES_PER_CHUNK = 4096
"""Images per record batch: the Python objects of one batch exist only while it is filled."""

NO_VALUE, INT64, OTHER = 0, 1, 2
"""How an id or category id was given: absent/null (or unhashable), an integer that fits int64
(in the arrays), or any other value (floats, strings: kept aside, they are rare)."""

IMAGE_COLUMNS = pa.schema(
    [
        # the file_name up to its last "/", as its number in `CocoImages.dirs` (few: the
        # category folders), null when the file_name is not a string; and the rest (for a
        # non-string, its str(); null for null)
        pa.field("file_dir", pa.int32()),
        pa.field("file_base", pa.string()),
        # "i:<n>" for an integer licence (named through `licenses` once read), "s:<text>" else
        pa.field("license", pa.dictionary(pa.int32(), pa.string())),
        pa.field("rights_holder", pa.dictionary(pa.int32(), pa.string())),
    ]
)


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
    """A JSON object with a `file_name`, as the plan has always seen one nested in a field."""

    id: object
    file_name: object
    license: object
    rights_holder: object
    category_id: object


class CocoAnnotation(NamedTuple):
    image_id: object
    category_id: object


def _compact(obj: dict):
    """What an object nested in a kept field becomes (the object_hook the JSON was once read
    with), so such fields keep their text in the catalog."""
    if "file_name" in obj:
        return CocoImage(
            obj.get("id"),
            obj.get("file_name"),
            obj.get("license"),
            obj.get("rights_holder"),
            obj.get("category_id"),
        )
    if "image_id" in obj and "category_id" in obj:
        return CocoAnnotation(obj["image_id"], obj["category_id"])
    return obj


def join_key(value) -> tuple[int, object]:
    """(kind, value) of an id as a dict key would match it: True is 1, 1.0 is 1."""
    kind = type(value)
    if kind is int or kind is bool or (kind is float and value.is_integer()):
        value = int(value)
        return (INT64, value) if -(1 << 63) <= value < (1 << 63) else (OTHER, value)
    if value is None:
        return NO_VALUE, None
    try:
        hash(value)
    except TypeError:
        return NO_VALUE, None  # a list or object never equals an id
    return OTHER, value


def category_key(value) -> tuple[int, int]:
    """(kind, value) of a category id: only integers (not booleans) can name a category."""
    if type(value) is int and -(1 << 63) <= value < (1 << 63):
        return INT64, value
    return (NO_VALUE, 0) if value is None else (OTHER, 0)


def rights_holder_text(holder) -> str | None:
    return clean(holder) if isinstance(holder, str) or holder is None else str(holder)


def license_token(value) -> str | None:
    if value is None:
        return None
    if type(value) is int:
        return f"i:{value}"
    return f"s:{value}"


class CocoImages:
    """The JSON's `images`, one row each in JSON order, column-wise.

    `chunks`: record batches of IMAGE_COLUMNS, IMAGES_PER_CHUNK rows each but the last.
    `ids` / `id_kinds`: the `id` of each image as join_key gives it (other ids in
    `other_ids`, by row). `category_rows` / `category_kinds` / `category_ids`: the images
    that have a `category_id` of their own (iNat21's have none), as category_key gives it.
    `dirs`: the distinct folders of the file names, in order of first use."""

    def __init__(self):
        self.chunks: list[pa.RecordBatch] = []
        self.dirs: list[str] = []
        self._dir_numbers: dict[str, int] = {}
        self.ids = array("q")
        self.id_kinds = array("b")
        self.other_ids: dict[int, object] = {}
        self.category_rows = array("q")
        self.category_kinds = array("b")
        self.category_ids = array("q")
        self.n = 0
        self._columns: tuple[list, list, list, list] = ([], [], [], [])
        self._license_tokens: dict[int, str] = {}
        self._holders: dict = {}  # of the chunk being filled

    def add(self, image: dict | None) -> None:
        """One entry of `images`: its fields, or None when it is not an object with a
        `file_name` (a malformed row)."""
        dirs, bases, licenses, holders = self._columns
        if image is None:
            dirs.append(None)
            bases.append(None)
            licenses.append(None)
            holders.append(None)
            self._ids(NO_VALUE, 0)
        else:
            file_name = image.get("file_name")
            if isinstance(file_name, str):
                cut = file_name.rfind("/") + 1
                folder = file_name[:cut]
                number = self._dir_numbers.get(folder)
                if number is None:
                    number = self._dir_numbers[folder] = len(self.dirs)
                    self.dirs.append(folder)
                dirs.append(number)
                bases.append(file_name[cut:])
            else:
                dirs.append(None)
                bases.append(None if file_name is None else str(file_name))
            license = image.get("license")
            token = self._license_tokens.get(license) if type(license) is int else None
            if token is None:
                token = license_token(license)
                if type(license) is int:
                    self._license_tokens[license] = token  # a few licences: one text each
            licenses.append(token)
            holder = rights_holder_text(image.get("rights_holder"))
            holders.append(self._holders.setdefault(holder, holder))  # one text per holder
            self._ids(*join_key(image.get("id")))
            kind, value = category_key(image.get("category_id"))
            if kind != NO_VALUE:
                self.category_rows.append(self.n)
                self.category_kinds.append(kind)
                self.category_ids.append(value)
        self.n += 1
        if len(dirs) == IMAGES_PER_CHUNK:
            self._flush()

    def _ids(self, kind: int, value) -> None:
        if kind == OTHER:
            self.other_ids[self.n] = value
        self.ids.append(value if kind == INT64 else 0)
        self.id_kinds.append(kind)

    def _flush(self) -> None:
        dirs, bases, licenses, holders = self._columns
        if dirs:
            arrays = [
                pa.array(dirs, pa.int32(), memory_pool=_POOL),
                pa.array(bases, pa.string(), memory_pool=_POOL),
                pc.dictionary_encode(
                    pa.array(licenses, pa.string(), memory_pool=_POOL), memory_pool=_POOL
                ),
                pc.dictionary_encode(
                    pa.array(holders, pa.string(), memory_pool=_POOL), memory_pool=_POOL
                ),
            ]
            self.chunks.append(pa.RecordBatch.from_arrays(arrays, schema=IMAGE_COLUMNS))
        self._columns = ([], [], [], [])
        self._holders = {}

    def finish(self) -> CocoImages:
        self._flush()
        self._dir_numbers = {}
        return self


class CocoAnnotations:
    """The JSON's annotations as (image id, category id) pairs in JSON order; those whose
    image id is not an int64 in `others` (image id -> first category key)."""

    def __init__(self):
        self.image_ids = array("q")
        self.category_ids = array("q")
        self.category_kinds = array("b")
        self.others: dict[object, tuple[int, int]] = {}

    def add(self, image_id, category_id) -> None:
        kind, image_id = join_key(image_id)
        category = category_key(category_id)
        if kind == INT64:
            self.image_ids.append(image_id)
            self.category_kinds.append(category[0])
            self.category_ids.append(category[1])
        elif kind == OTHER:
            self.others.setdefault(image_id, category)


class CocoJson:
    """What the plan reads of a COCO JSON. `images` is None when the JSON is no object with an
    `images` list; `categories` and `licenses` are the values as parsed."""

    def __init__(self):
        self.images: CocoImages | None = None
        self.annotations = CocoAnnotations()
        self.categories: object = None
        self.licenses: object = None


_STARTS = frozenset(("start_map", "start_array"))


def _skip(event: str, events) -> None:
    """Read past one value whose first event is `event` (iteratively: no depth limit)."""
    if event not in _STARTS:
        return
    depth = 1
    for event, _ in events:
        if event in _STARTS:
            depth += 1
        elif event == "end_map" or event == "end_array":
            depth -= 1
            if depth == 0:
                return


def _value(event: str, value, events):
    """One whole value from its first event; objects pass through _compact."""
    if event == "start_map":
        obj = {}
        for event, key in events:
            if event == "end_map":
                return _compact(obj)
            event, value = next(events)
            obj[key] = _value(event, value, events) if event in _STARTS else value
    if event == "start_array":
        items = []
        for event, value in events:
            if event == "end_array":
                return items
            items.append(_value(event, value, events) if event in _STARTS else value)
    return value


_IMAGE_FIELDS = frozenset(("id", "file_name", "license", "rights_holder", "category_id"))
_ANNOTATION_FIELDS = frozenset(("image_id", "category_id"))


def _fields(events, wanted: frozenset) -> dict:
    """The keys of one object (its start_map read), with the values of `wanted` ones."""
    fields = {}
    for event, key in events:
        if event == "end_map":
            return fields
        event, value = next(events)
        if event in _STARTS:
            if key in wanted:
                value = _value(event, value, events)
            else:
                _skip(event, events)
                value = None
        fields[key] = value
    return fields


def _read_images(events, images: CocoImages) -> None:
    for event, _ in events:
        if event == "end_array":
            return
        if event != "start_map":
            _skip(event, events)
            images.add(None)
            continue
        fields = _fields(events, _IMAGE_FIELDS)
        images.add(fields if "file_name" in fields else None)


def _read_annotations(events, annotations: CocoAnnotations) -> None:
    for event, _ in events:
        if event == "end_array":
            return
        if event != "start_map":
            _skip(event, events)
            continue
        fields = _fields(events, _ANNOTATION_FIELDS)
        if (
            "file_name" not in fields
            and "image_id" in fields
            and "category_id" in fields
            and fields["image_id"] is not None
        ):
            annotations.add(fields["image_id"], fields["category_id"])


def scan_coco(stream) -> CocoJson:
    """Read a COCO JSON from a binary stream, section by section in whatever order they come."""
    out = CocoJson()
    events = iter(ijson.basic_parse(stream, use_float=True))
    event, _ = next(events)
    if event != "start_map":
        _skip(event, events)
    else:
        keys = set()
        for event, key in events:
            if event == "end_map":
                break
            keys.add(key)
            event, value = next(events)
            if key == "images":
                out.images = None
                if event == "start_array":
                    images = CocoImages()
                    _read_images(events, images)
                    out.images = images.finish()
                else:
                    _skip(event, events)
            elif key == "annotations":  # a repeated key: the last one counts, as in json
                out.annotations = CocoAnnotations()
                if event == "start_array":
                    _read_annotations(events, out.annotations)
                else:
                    _skip(event, events)  # not a list: no annotation, as before
            elif key in ("categories", "licenses"):
                parsed = _value(event, value, events) if event in _STARTS else value
                setattr(out, key, parsed)
            else:
                _skip(event, events)
        if "file_name" in keys or ("image_id" in keys and "category_id" in keys):
            out.images = None  # the whole JSON was one image or annotation, not a COCO JSON
    for _ in events:  # past the end: trailing garbage is an error
        pass
    return out


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


def _scan_json(fh) -> CocoJson:
    head = _Peekable(fh)
    if head.peek(3) == _UTF8_BOM:  # json.loads of bytes allowed one
        head.read(3)
    return scan_coco(head)


def parse_annotations(stream) -> CocoJson:
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
                    return _scan_json(tar.extractfile(member))
        raise ValueError("the tar holds no .json file")
    return _scan_json(head)


def load_annotations(spec: str, cfg: BuildConfig, md5: str | None = None) -> CocoJson:
    """Read and check one annotations file (path or URL; .json, .json.gz or .json.tar.gz)."""
    return read_annotations(spec, cfg, md5)[0]


def read_annotations(spec: str, cfg: BuildConfig, md5: str | None = None) -> tuple[CocoJson, str]:
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
        except (ijson.JSONError, ValueError, UnicodeDecodeError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"iNat21 annotations {where}: not valid JSON ({reason})") from exc
    if md5 and reader.hexdigest() != md5.lower():
        raise InputError(
            f"iNat21 annotations {where}: md5 {reader.hexdigest()} does not match the "
            f"configured {md5}"
        )
    if data.images is None:
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
