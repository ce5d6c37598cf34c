import hashlib
import io
import tarfile

import pytest

from treeoflife.io import tar_member_info
from treeoflife.shards.tar import (
    TarStream,
    pack_members,
    pack_sample,
    padded,
    ustar_header,
    write_tar,
)


def _tarfile_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            tar.addfile(tar_member_info(name, len(data)), io.BytesIO(data))
    return buf.getvalue()


MEMBERS = [
    ("a.jpg", b"\xff\xd8" + bytes(range(256)) * 7),
    ("a.txt", b"a photo of Corvus corax."),
    ("empty.txt", b""),
    ("exactly-one-block.bin", b"x" * 512),
    ("Grand-corbeau-\u00e9.json", '{"name":"\u00e9"}'.encode()),
    ("n" * 95 + ".json", b"{}"),
]


def test_bytes_equal_tarfile(tmp_path):
    size, sha = write_tar(tmp_path / "a.tar", MEMBERS)
    data = (tmp_path / "a.tar").read_bytes()
    assert data == _tarfile_bytes(MEMBERS)
    assert size == len(data) and size % 10240 == 0
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert [m.name for m in tar] == [n for n, _ in MEMBERS]
        assert tar.extractfile("a.jpg").read() == MEMBERS[0][1]
    assert not list(tmp_path.glob(".*"))


def test_headers_equal_tarfile_for_many_sizes():
    for size in (0, 1, 511, 512, 513, 10**6, 8**11 - 1):
        name = f"k{size}.jpg"
        assert ustar_header(name.encode(), size) == tar_member_info(name, size).tobuf(
            format=tarfile.USTAR_FORMAT
        )


def test_offsets_point_at_member_data():
    buf, offsets = pack_members(MEMBERS[:3], offset=1024)
    assert offsets[0] == 1024 + 512
    for (_, data), off in zip(MEMBERS[:3], offsets, strict=True):
        assert buf[off - 1024 : off - 1024 + len(data)] == data
    assert len(buf) == sum(padded(len(d)) for _, d in MEMBERS[:3])


@pytest.mark.parametrize("threaded", [False, True])
def test_stream_counts_and_hashes(tmp_path, threaded):
    with open(tmp_path / "s.tar", "wb") as fh:
        stream = TarStream(fh, threaded=threaded)
        stream.add(MEMBERS[:2])
        stream.add(MEMBERS[2:])
        stream.close()
    data = (tmp_path / "s.tar").read_bytes()
    assert data == _tarfile_bytes(MEMBERS) and stream.size == len(data)
    assert stream.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


class _FullDisk(io.RawIOBase):
    def writable(self):
        return True

    def write(self, b):
        raise OSError(28, "No space left on device")


def test_threaded_writer_errors_reach_the_caller():
    stream = TarStream(_FullDisk(), threaded=True)
    with pytest.raises(OSError, match="No space"):
        for _ in range(100):
            stream.add(MEMBERS)
        stream.close()


def test_refuses_what_ustar_cannot_hold():
    with pytest.raises(ValueError, match="100 bytes"):
        ustar_header(b"x" * 101, 1)
    with pytest.raises(ValueError, match="too large"):
        ustar_header(b"x", 8**11)


def test_sample_members_sharing_a_key_equal_tarfile():
    """The fast path (key byte sum once, cached suffix/size sums) writes tarfile's headers."""
    key = "0f9c6b1e-3c5d-5e7a-9b1d-2f4c6e8a0b1c"
    suffixes = ["jpg", "sci.txt", "taxonTag_com.txt", "json", "a.b.c", "", "x" * 40]
    members = [(f"{key}.{s}", bytes(range(i * 37 % 256)) * i) for i, s in enumerate(suffixes)]
    members += [("no-dot-name", b"abc"), ("other-key.jpg", b"\xff" * 700), (f"{key}.jpg", b"")]
    buf, _ = pack_members(members)
    assert buf == _tarfile_bytes(members)[: len(buf)]


def test_long_names_are_refused_on_the_fast_path_too():
    with pytest.raises(ValueError, match="100 bytes"):
        pack_members([("k" * 60 + "." + "s" * 40, b"x")])


def test_stream_in_many_flushes_equals_tarfile(tmp_path, monkeypatch):
    """Samples larger than the flush size and many flushes: same bytes, right offsets."""
    import treeoflife.shards.tar as tar_module

    monkeypatch.setattr(tar_module, "FLUSH_BYTES", 4096)
    monkeypatch.setattr(tar_module, "WRITEBACK_BYTES", 8192)
    members = [(f"s{i:04d}.bin", bytes([i % 251]) * (i * 97)) for i in range(200)]
    with open(tmp_path / "m.tar", "wb") as fh:
        stream = TarStream(fh)
        offsets = [stream.add([m])[0] for m in members]
        stream.close()
    data = (tmp_path / "m.tar").read_bytes()
    assert data == _tarfile_bytes(members)
    assert stream.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    for (_, payload), off in zip(members, offsets, strict=True):
        assert data[off : off + len(payload)] == payload


def _sample(key: str, jpg: bytes, caption: str, js: bytes) -> list[tuple[str, bytes]]:
    return [
        (f"{key}.jpg", jpg),
        (f"{key}.sci.txt", caption.encode()),
        (f"{key}.taxon_com.txt", (caption + " with common name 100% raven").encode()),
        (f"{key}.txt", b"x" * 512),
        (f"{key}.json", js),
    ]


def test_stream_samples_equal_tarfile(tmp_path):
    """Whole samples through TarStream.add: same bytes and offsets as tarfile, '%' in the
    data, keys of several lengths, and a member list that does not share one key."""
    samples = [
        _sample(f"k{i:0{3 + i % 3}d}", bytes([i]) * (100 * i + 1), f"a photo of %s{i % 2}", b"{%d}")
        for i in range(12)
    ]
    mixed = [("a.jpg", b"1"), ("b.txt", b"2"), ("a.txt", b"3"), ("a.json", b"4")]
    with open(tmp_path / "t.tar", "wb") as fh:
        stream = TarStream(fh)
        offsets = [stream.add(s) for s in [*samples, mixed]]
        stream.close()
    members = [m for s in [*samples, mixed] for m in s]
    data = (tmp_path / "t.tar").read_bytes()
    assert data == _tarfile_bytes(members)
    for sample, offs in zip([*samples, mixed], offsets, strict=True):
        for (_, payload), off in zip(sample, offs, strict=True):
            assert data[off : off + len(payload)] == payload


def test_stream_into_a_file_object_without_a_descriptor():
    """Writeback hints are for real files; an in-memory sink past 8 MiB still works."""
    buf = io.BytesIO()
    stream = TarStream(buf)
    big = [("k.bin", b"\x01" * (3 << 20))]
    for _ in range(4):
        stream.add(big)
    stream.close()
    assert buf.getvalue() == _tarfile_bytes(big * 4)


def test_samples_as_parts_equal_named_members(tmp_path):
    """pack_sample / TarStream.add_sample (a cached template per repeating middle members)
    write what pack_members writes: '%' in the data, several key lengths, middles that repeat
    and middles that do not, an empty image."""
    samples = []
    for i in range(14):
        key = f"k{i:0{3 + i % 4}d}"
        fixed = (("sci.txt", f"a photo of %s{i % 2} 100%".encode()), ("txt", b"x" * (511 + i % 3)))
        samples.append((key, ("jpg", bytes([i]) * (97 * i)), fixed, ("json", b'{"a":"%d"}')))
    for key, first, fixed, last in samples:
        named = [(f"{key}.{s}", d) for s, d in (first, *fixed, last)]
        assert pack_sample(key, first, fixed, last, 1536) == pack_members(named, 1536)
    with open(tmp_path / "p.tar", "wb") as fh:
        stream = TarStream(fh)
        for parts in samples:
            stream.add_sample(*parts)
        stream.close()
    named = [(f"{k}.{s}", d) for k, f, x, j in samples for s, d in (f, *x, j)]
    assert (tmp_path / "p.tar").read_bytes() == _tarfile_bytes(named)


def test_close_without_waiting_then_drain(tmp_path, monkeypatch):
    """close(wait=False): every byte is in the file at once, the hash once drained."""
    import treeoflife.shards.tar as tar_module

    monkeypatch.setattr(tar_module, "FLUSH_BYTES", 4096)
    members = [(f"s{i:03d}.bin", bytes([i]) * (i * 301)) for i in range(60)]
    with open(tmp_path / "w.tar", "wb") as fh:
        stream = TarStream(fh)
        for m in members:
            stream.add([m])
        stream.close(wait=False)
        fh.flush()
        assert (tmp_path / "w.tar").stat().st_size == stream.size
        stream.drain()
    data = (tmp_path / "w.tar").read_bytes()
    assert data == _tarfile_bytes(members)
    assert stream.sha256.hexdigest() == hashlib.sha256(data).hexdigest()


def _random_samples(rng, n):
    samples = []
    for i in range(n):
        key = "k" * rng.randint(1, 40) + f"-{i}"
        first = ("jpg", rng.randbytes(rng.choice([0, 1, 511, 512, 513, rng.randint(0, 9000)])))
        fixed = tuple(
            (s, rng.randbytes(rng.randint(0, 700)))
            for s in rng.sample(["sci.txt", "com.txt", "taxon.txt", "sci_com.txt", "txt"], 3)
        )
        samples.append((key, first, fixed, ("json", b"{%d}" * rng.randint(0, 200))))
    return samples


def test_stream_of_random_samples_equals_tarfile(tmp_path, monkeypatch):
    """Samples of every size (empty, one block, around block edges) crossing many small
    buffers: tarfile's bytes, the right offsets and the sha256 of what is on disk."""
    import random

    import treeoflife.shards.tar as tar_module

    monkeypatch.setattr(tar_module, "FLUSH_BYTES", 5000)
    samples = _random_samples(random.Random(7), 300)
    with open(tmp_path / "r.tar", "wb") as fh:
        stream = TarStream(fh)
        offsets = [stream.add_sample(*s) for s in samples]
        stream.close()
    data = (tmp_path / "r.tar").read_bytes()
    named = [(f"{k}.{s}", d) for k, f, x, j in samples for s, d in (f, *x, j)]
    assert data == _tarfile_bytes(named)
    assert stream.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    for (_, first, fixed, last), offs in zip(samples, offsets, strict=True):
        for (_, payload), off in zip((first, *fixed, last), offs, strict=True):
            assert data[off : off + len(payload)] == payload
