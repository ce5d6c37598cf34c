"""A streaming USTAR writer that produces exactly what `tarfile` writes, at the speed of the disk.

`tarfile.addfile` costs ~10-20 us of Python per member (TarInfo, header encoding, copyfileobj);
a shard sample has 13 members, which caps tarfile near the speed of a slow disk. Here a header is
one bytes template with the name, size and checksum filled in, a sample's members are joined into
one buffer and written with one call, and the sha256 is updated on the same buffer. Member
metadata is fixed (mode 0644, uid/gid 0, mtime 0, no user names) like
`treeoflife.io.tar_member_info`, so the bytes equal tarfile's for the same members (tested).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import queue
import threading
from collections.abc import Iterable
from pathlib import Path

from treeoflife.io import atomic_path, output_error

BLOCK = 512
RECORD = 20 * BLOCK  # tarfile pads the archive to a multiple of its record size

_MODE = b"0000644\x00"
_ID = b"0000000\x00"
_MTIME = b"00000000000\x00"
_MAGIC = b"ustar\x0000"
_DEV = b"\x00" * 8  # tarfile leaves devmajor/devminor empty for regular files


def _header_parts() -> tuple[bytes, bytes, int]:
    """The constant bytes after the name (up to size) and after the size, and their byte sum."""
    mid = _MODE + _ID + _ID  # mode, uid, gid (offsets 100..124)
    tail = (
        _MTIME
        + b" " * 8  # checksum placeholder (counts as spaces)
        + b"0"  # regular file
        + b"\x00" * 100  # linkname
        + _MAGIC
        + b"\x00" * 32  # uname
        + b"\x00" * 32  # gname
        + _DEV
        + _DEV
        + b"\x00" * 155  # prefix
        + b"\x00" * 12
    )
    return mid, tail, sum(mid) + sum(tail)


_MID, _TAIL, _CONST_SUM = _header_parts()


def ustar_header(name: bytes, size: int) -> bytes:
    """The 512-byte USTAR header tarfile writes for a regular file with our fixed metadata."""
    if len(name) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: {name!r}")
    if size >= 8**11:
        raise ValueError(f"tar member too large for USTAR: {size} bytes")
    size_field = b"%011o\x00" % size
    chksum = _CONST_SUM + sum(name) + sum(size_field)
    head = name + b"\x00" * (100 - len(name)) + _MID + size_field
    return head + _TAIL[:12] + b"%06o\x00 " % chksum + _TAIL[20:]


_ZEROS = bytes(BLOCK)
_PADS = [_ZEROS[:n] for n in range(BLOCK)]
_TAIL_REST = _TAIL[20:]
_SIZE_FIELDS: dict[int, tuple[bytes, int]] = {}  # small sizes (text members) repeat: cached
_CHECKSUM_TAILS: dict[int, bytes] = {}  # checksum field + the constant rest of the header


def _size_field(size: int) -> tuple[bytes, int]:
    """The size field of a header followed by the mtime field, and the size field's byte sum."""
    hit = _SIZE_FIELDS.get(size)
    if hit is None:
        if size >= 8**11:
            raise ValueError(f"tar member too large for USTAR: {size} bytes")
        field = b"%011o\x00" % size
        hit = (field + _MTIME, sum(field))
        if size < 1 << 16:
            _SIZE_FIELDS[size] = hit
    return hit


def _checksum_tail(chksum: int) -> bytes:
    """The header from the checksum field to its end (sums fall in a small range: cached)."""
    hit = _CHECKSUM_TAILS.get(chksum)
    if hit is None:
        hit = b"%06o\x00 " % chksum + _TAIL_REST
        if len(_CHECKSUM_TAILS) < 1 << 14:  # bounded: a few thousand sums occur in practice
            _CHECKSUM_TAILS[chksum] = hit
    return hit


@functools.lru_cache(maxsize=256)
def _name_rest(suffix: str, key_len: int) -> tuple[bytes, int]:
    """Header bytes from the end of the key up to the size field, and their byte sum + the
    constant part of the checksum (a member of one sample differs from another only by key)."""
    rest = ("." + suffix).encode("utf-8")
    if key_len + len(rest) > 100:
        raise ValueError(f"tar member name longer than 100 bytes: key of {key_len} + .{suffix}")
    rest += b"\x00" * (100 - key_len - len(rest)) + _MID
    return rest, _CONST_SUM + sum(rest) - sum(_MID)


def pack_members(members: Iterable[tuple[str, bytes]], offset: int = 0) -> tuple[bytes, list[int]]:
    """One buffer of header+data+padding per member and the data offset of each member.

    `offset` is where the buffer will start in the archive (to report absolute data offsets).
    """
    parts: list[bytes] = []
    offsets, _ = _pack_into(parts, members, offset)
    return b"".join(parts), offsets


def _pack_into(
    parts: list[bytes], members: Iterable[tuple[str, bytes]], pos: int
) -> tuple[list[int], int]:
    """Append each member's header, data and padding to `parts`; (data offsets, end position).

    A webdataset sample's members share the key before the first dot: the header checksum is
    then the key's byte sum (computed once) plus cached per-suffix and per-size sums, so a
    13-member sample costs ~1 us of Python per member.
    """
    offsets: list[int] = []
    last_key, kb, ksum = None, b"", 0
    for name, data in members:
        size = len(data)
        key, dot, suffix = name.partition(".")
        if dot:
            if key != last_key:
                last_key, kb = key, key.encode("utf-8")
                ksum = sum(kb)
            rest, rest_sum = _name_rest(suffix, len(kb))
            field, field_sum = _size_field(size)
            parts += (kb, rest, field, _checksum_tail(rest_sum + ksum + field_sum))
        else:
            parts.append(ustar_header(name.encode("utf-8"), size))
        pad = -size % BLOCK
        parts += (data, _PADS[pad])
        offsets.append(pos + BLOCK)
        pos += BLOCK + size + pad
    return offsets, pos


_SAMPLE_TEMPLATES: dict[tuple, tuple[bytes, tuple[int, ...], tuple[int, ...], int]] = {}


def _escape(data: bytes) -> bytes:
    return data.replace(b"%", b"%%")


def _sample_template(
    key_len: int, first: str, fixed: tuple[tuple[str, bytes], ...], last: str
) -> tuple[bytes, tuple[int, ...], tuple[int, ...], int]:
    """A `bytes %` template of a whole sample whose middle members repeat from sample to
    sample (a species' captions): (template, checksum bases without the key's byte sum, data
    offsets of the middle members from the end of the first member, their packed length)."""
    cache_key = (key_len, first, fixed, last)
    hit = _SAMPLE_TEMPLATES.get(cache_key)
    if hit is not None:
        return hit
    pieces, bases, offsets = [], [], []
    tail = _escape(_TAIL_REST)

    def varying(suffix: str) -> None:  # key, size+mtime, checksum, data, padding from args
        rest, rest_sum = _name_rest(suffix, key_len)
        pieces.append(b"%s" + _escape(rest) + b"%s%06o\x00 " + tail + b"%s%s")
        bases.append(rest_sum)

    varying(first)
    pos = 0
    for suffix, data in fixed:  # only the key and the checksum come from args
        rest, rest_sum = _name_rest(suffix, key_len)
        field, field_sum = _size_field(len(data))
        pad = _PADS[-len(data) % BLOCK]
        pieces.append(b"%s" + _escape(rest + field) + b"%06o\x00 " + tail + _escape(data + pad))
        bases.append(rest_sum + field_sum)
        offsets.append(pos + BLOCK)
        pos += BLOCK + len(data) + len(pad)
    varying(last)
    hit = (b"".join(pieces), tuple(bases), tuple(offsets), pos)
    if len(_SAMPLE_TEMPLATES) >= 1 << 12:  # bounded: the species x key lengths seen lately
        _SAMPLE_TEMPLATES.clear()
    _SAMPLE_TEMPLATES[cache_key] = hit
    return hit


def pack_sample(
    key: str,
    first: tuple[str, bytes],
    fixed: tuple[tuple[str, bytes], ...],
    last: tuple[str, bytes],
    pos: int = 0,
) -> tuple[bytes, list[int]]:
    """A webdataset sample `<key>.<suffix>` packed by one C-level `bytes %` call: the first
    member (the image), members that repeat across samples (a species' captions: their
    headers, data and padding live in a cached template) and the last member (the json row).
    Same bytes and offsets as pack_members on the same members (tested)."""
    kb = key.encode("utf-8")
    ksum = sum(kb)
    template, bases, mid_offsets, mid_len = _sample_template(len(kb), first[0], fixed, last[0])
    first_data, last_data = first[1], last[1]
    first_field, first_sum = _size_field(len(first_data))
    last_field, last_sum = _size_field(len(last_data))
    first_pad, last_pad = _PADS[-len(first_data) % BLOCK], _PADS[-len(last_data) % BLOCK]
    args = [kb, first_field, bases[0] + ksum + first_sum, first_data, first_pad]
    for base in bases[1:-1]:
        args += (kb, base + ksum)
    args += (kb, last_field, bases[-1] + ksum + last_sum, last_data, last_pad)
    mid = pos + BLOCK + len(first_data) + len(first_pad)
    offsets = [pos + BLOCK, *[mid + off for off in mid_offsets], mid + mid_len + BLOCK]
    return template % tuple(args), offsets


def padded(size: int) -> int:
    """Bytes a member of `size` data bytes takes in the archive (header + data + padding)."""
    return BLOCK + -(-size // BLOCK) * BLOCK


FLUSH_BYTES = 1 << 20  # packed samples are handed to the file in ~1 MiB writes
WRITEBACK_BYTES = 8 << 20  # ask the kernel to start writing back every ~8 MiB


def _kernel_writeback():
    """`sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)` where the C library has it.

    Starting writeback while the next samples are packed means the final fsync waits for the
    last few MiB only: the disk works in parallel with the CPU instead of after it.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    return fn


_SYNC_FILE_RANGE = _kernel_writeback()
_SYNC_FILE_RANGE_WRITE = 2


class TarStream:
    """Appends packed members to an open binary file, counting bytes and hashing them.

    Packed samples collect in a list and go to the file in ~1 MiB writes, made by the caller's
    thread (a write releases the GIL, which is when the hashing thread picks up its next
    buffer). With `threaded` (the default) the sha256 runs on a background thread (hashlib
    releases the GIL for large buffers) while the caller packs the next samples; a bounded
    queue keeps memory flat. Two threads, not three: a separate writer thread spent most of
    its time waiting for the GIL held by the packing thread. `close()` (or `drain()`) waits for
    the hashing; `close(wait=False)` lets it finish in the background.
    """

    def __init__(self, fh, threaded: bool = True, path: str | Path | None = None):
        self._fh = fh
        self.path = path if path is not None else getattr(fh, "name", None)
        try:  # writeback hints need a real file (not a BytesIO or a socket wrapper)
            self._fd = fh.fileno() if _SYNC_FILE_RANGE is not None else None
        except (AttributeError, OSError, ValueError):
            self._fd = None
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._parts: list[bytes] = []
        self._buffered = 0
        self._written = 0  # bytes handed to the file
        self._synced = 0  # bytes whose writeback was started
        self._queue: queue.Queue | None = None  # buffers to hash, None ends the thread
        self._ended = False  # the hashing thread was told that no more buffers come
        if threaded:
            self._queue = queue.Queue(maxsize=8)
            self._thread = threading.Thread(target=self._hash_queue, daemon=True)
            self._thread.start()

    def _hash_queue(self) -> None:
        update = self.sha256.update
        while (buf := self._queue.get()) is not None:
            update(buf)

    def _write_out(self, buf: bytes) -> None:
        try:
            self._fh.write(buf)
        except OSError as exc:  # disk full, read-only...: say which file
            if self.path is None or not (err := output_error(exc, self.path)):
                raise
            raise err from exc
        self._written += len(buf)
        if self._fd is not None and self._written - self._synced >= WRITEBACK_BYTES:
            self._fh.flush()
            _SYNC_FILE_RANGE(
                self._fd, self._synced, self._written - self._synced,
                _SYNC_FILE_RANGE_WRITE,
            )  # fmt: skip
            self._synced = self._written

    def _flush(self) -> None:
        if not self._parts:
            return
        buf = b"".join(self._parts)
        self._parts, self._buffered = [], 0
        if self._queue is None:
            self.sha256.update(buf)
        else:
            self._queue.put(buf)  # hashed while this thread writes it and packs what follows
        self._write_out(buf)

    def write(self, buf: bytes) -> None:
        self._parts.append(buf)
        self._buffered += len(buf)
        self.size += len(buf)
        if self._buffered >= FLUSH_BYTES:
            self._flush()

    def add(self, members: Iterable[tuple[str, bytes]]) -> list[int]:
        """Append members; return each member's data offset."""
        offsets, end = _pack_into(self._parts, members, self.size)
        self._buffered += end - self.size
        self.size = end
        if self._buffered >= FLUSH_BYTES:
            self._flush()
        return offsets

    def add_sample(
        self,
        key: str,
        first: tuple[str, bytes],
        fixed: tuple[tuple[str, bytes], ...],
        last: tuple[str, bytes],
    ) -> list[int]:
        """Append one sample given as (suffix, data) parts (see pack_sample); return each
        member's data offset. The shard writers' path: no member names to build or parse."""
        buf, offsets = pack_sample(key, first, fixed, last, self.size)
        self._parts.append(buf)
        self._buffered += len(buf)
        self.size += len(buf)
        if self._buffered >= FLUSH_BYTES:
            self._flush()
        return offsets

    def _end_hashing(self) -> None:
        if self._queue is not None and not self._ended:
            self._ended = True
            self._queue.put(None)

    def drain(self) -> None:
        """Write what is buffered and wait until every byte is hashed (stops the thread).

        After an error (or on abort) it still stops the thread; the error propagates."""
        try:
            if not self._ended:
                self._flush()
        finally:
            self._end_hashing()
            if self._queue is not None:
                self._thread.join()
                self._queue = None

    def close(self, wait: bool = True) -> None:
        """Write the end-of-archive blocks and pad to a whole record, as tarfile does.

        Every byte is in the file when it returns. With `wait=False` the hashing of the last
        buffers goes on in the background: call `drain()` before reading `sha256`."""
        end = self.size + 2 * BLOCK
        self.write(b"\x00" * (2 * BLOCK + (-end % RECORD)))
        if wait:
            self.drain()
            return
        try:
            self._flush()
        finally:
            self._end_hashing()


def write_tar(path: Path, members: Iterable[tuple[str, bytes]]) -> tuple[int, str]:
    """Write (name, data) members to an uncompressed tar atomically; return (bytes, sha256)."""
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as fh:
        stream = TarStream(fh)
        for member in members:
            stream.add([member])
        stream.close()
    return stream.size, stream.sha256.hexdigest()
