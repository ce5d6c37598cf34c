"""The fetch policy on its own: which URLs, addresses and local paths an input may reach."""

from __future__ import annotations

import asyncio
import os

import pytest

from treeoflife.sources.fetch_policy import (
    AddressRefused,
    FetchPolicy,
    PolicyResolver,
    id_fits_store,
    public_url,
)

DENY = FetchPolicy()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x.jpg",
        "http://127.0.0.1:8080/x.jpg",
        "http://[::1]/x.jpg",
        "http://[::ffff:127.0.0.1]/x.jpg",  # IPv4-mapped loopback
        "http://10.1.2.3/x.jpg",
        "http://172.16.0.1/x.jpg",
        "http://192.168.1.1/x.jpg",
        "http://169.254.169.254/latest/meta-data/",  # AWS/GCP/Azure metadata (link-local)
        "http://[fd00:ec2::254]/latest/meta-data/",  # AWS metadata over IPv6 (private)
        "http://100.100.100.200/latest/meta-data/",  # Alibaba metadata
        "http://100.64.0.1/x.jpg",  # shared address space
        "http://0.0.0.0/x.jpg",
        "http://224.0.0.1/x.jpg",  # multicast
        "http://2130706433/x.jpg",  # 127.0.0.1 as one number
        "http://0x7f.1/x.jpg",  # 127.0.0.1 in hex shorthand
        "http://127.1/x.jpg",
        "http://[2002:7f00:1::]/x.jpg",  # 6to4 wrapping 127.0.0.1
    ],
)
def test_non_public_addresses_are_refused_by_default(url):
    assert DENY.url_refusal(url) == "non_public_address"


@pytest.mark.parametrize(
    "url", ["http://8.8.8.8/x.jpg", "https://[2606:4700::1111]/x", "https://content.eol.org/a"]
)
def test_public_addresses_and_names_go_ahead(url):
    assert DENY.url_refusal(url) is None  # names are checked again when resolved


def test_allow_rules_by_address_network_port_and_name():
    policy = FetchPolicy(allow=("127.0.0.1:8080", "10.0.0.0/8", "[::1]:81", "mirror.lan"))
    assert policy.url_refusal("http://127.0.0.1:8080/a") is None
    assert policy.url_refusal("http://127.0.0.1:8081/a") == "non_public_address"
    assert policy.url_refusal("http://10.9.8.7/a") is None
    assert policy.url_refusal("http://192.168.0.1/a") == "non_public_address"
    assert policy.url_refusal("http://[::1]:81/a") is None
    assert policy.url_refusal("http://[::1]:82/a") == "non_public_address"
    assert policy.address_allowed("mirror.lan", "192.168.0.5", 80)
    assert not policy.address_allowed("other.lan", "192.168.0.5", 80)
    for bad in ("127.0.0.1:notaport", "[::1]:70000", ":80"):
        with pytest.raises(ValueError, match=r"port must be|empty host"):
            FetchPolicy(allow=(bad,)).check_rules()


class _StaticResolver:
    def __init__(self, addresses):
        self.addresses = addresses

    async def resolve(self, host, port=0, family=0):
        return [
            {"hostname": host, "host": a, "port": port, "family": 2, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self):
        pass


def test_resolver_drops_refused_addresses_and_fails_when_none_remain():
    """DNS answers are checked where the connection is made: a public name that resolves to a
    private address (DNS rebinding) is refused; mixed answers keep only the public ones."""

    async def resolve(policy, addresses, host="evil.example"):
        return await PolicyResolver(policy, _StaticResolver(addresses)).resolve(host, 80)

    with pytest.raises(AddressRefused):
        asyncio.run(resolve(DENY, ["127.0.0.1", "10.0.0.1"]))
    kept = asyncio.run(resolve(DENY, ["10.0.0.1", "93.184.215.14"]))
    assert [r["host"] for r in kept] == ["93.184.215.14"]
    allowed = FetchPolicy(allow=("localhost",))
    assert asyncio.run(resolve(allowed, ["127.0.0.1"], host="localhost"))


def test_file_urls_only_under_the_roots_after_resolving(tmp_path):
    mirror = tmp_path / "mirror"
    outside = tmp_path / "secret"
    mirror.mkdir()
    outside.mkdir()
    (mirror / "a.jpg").write_bytes(b"a")
    (outside / "s.jpg").write_bytes(b"s")
    os.symlink(outside / "s.jpg", mirror / "link.jpg")  # inside the mirror, pointing out
    os.symlink(mirror / "a.jpg", mirror / "alias.jpg")  # pointing inside: fine
    policy = FetchPolicy(file_roots=(str(mirror),))
    m = mirror.as_posix()
    inside = {
        f"file://{m}/a.jpg",
        f"FILE://{m}/a.jpg",
        f"file:{m}/a.jpg",
        f"file://localhost{m}/a.jpg",
        f"file://{m}/alias.jpg",
        f"file://{m}/../mirror/a.jpg",
    }
    for url in inside:
        path, reason = policy.local_path(url)
        assert reason is None and path == (mirror / "a.jpg").resolve(), url
    refused = [
        f"file://{m}/../secret/s.jpg",
        f"file://{m}/%2e%2e/secret/s.jpg",
        f"file://{m}/%2E%2E/secret/s.jpg",
        f"file://{m}/link.jpg",
        "file:///etc/passwd",
        "file:///proc/self/environ",
        "file://evil.example/share/a.jpg",  # a remote (UNC) host
        f"file://otherhost{m}/a.jpg",
    ]
    for url in refused:
        assert policy.local_path(url) == (None, "file_outside_mirror"), url
    assert DENY.local_path(f"file://{m}/a.jpg") == (None, "file_outside_mirror")
    assert policy.local_path(f"file://{m}/a%00.jpg") == (None, "invalid_url")
    assert policy.local_path("file:relative/a.jpg") == (None, "invalid_url")


def test_public_url_strips_credentials_only():
    assert public_url("https://user:pass@eol.org/a.jpg?x=1") == "https://eol.org/a.jpg?x=1"
    assert public_url("http://user@eol.org:8080/a") == "http://eol.org:8080/a"
    assert public_url("http://a:b@c@eol.org/a") == "http://eol.org/a"
    assert public_url("https://eol.org/a@b.jpg") == "https://eol.org/a@b.jpg"  # @ in the path
    assert public_url("mailto:x@y") == "mailto:x@y" and public_url(None) is None


def test_ids_that_do_not_fit_an_image_store_name():
    assert id_fits_store("bioscan/" + "P" * 87)  # bioscan__<87>.jpg: 100 bytes
    assert not id_fits_store("bioscan/" + "P" * 88)
    assert not id_fits_store("bioscan/" + "é" * 44)  # 88 bytes of UTF-8
    assert not id_fits_store("bioscan/a\nb")
