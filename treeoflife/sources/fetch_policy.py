"""What an input file may make us read: the fetch policy, default deny.

A manifest row is untrusted input: its URL (and every redirect it leads to) must not turn the
build into a reader of local files or of the machine's private network. The rules, in one
place for every caller that follows a URL or a path from an input file:

- `file://` URLs (any spelling: `FILE:///`, `file:/x`, `file://localhost/x`) are read only
  when their real path (percent-decoded, `..` and symlinks resolved) lies under one of the
  configured local roots (the mirror folders); `file://otherhost/...` never;
- http(s) to a loopback, private, link-local, shared, reserved or cloud-metadata address is
  refused, for the URL itself and for every redirect, whether the address is written in the
  URL or comes from DNS (checked on the resolved address the connection uses), unless an
  `allow` rule names it (`"127.0.0.1:8080"`, `"10.0.0.0/8"`, `"localhost"`);
- a redirect to anything but http(s) is a per-row failure, never an exception;
- credentials (`user:pass@`) never leave in a published URL (`public_url`);
- an id that would not fit as an image-store member name is a malformed row (`id_fits_store`).

Refusals are reason codes recorded on the row; nothing refused is ever connected to or opened.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from treeoflife.errors import InputError
from treeoflife.io import store_member_name
from treeoflife.vocabulary import Reason

# Refused fetches are recorded as Reason.FILE_OUTSIDE_MIRROR, NON_PUBLIC_ADDRESS and
# REDIRECT_UNSUPPORTED_SCHEME (final, never retried).

# USTAR's name field holds 100 bytes; image-store members are named after the row's key.
MAX_STORE_NAME_BYTES = 100

# Cloud metadata endpoints that are not link-local (169.254.169.254 and fd00:ec2::254 are
# already refused as link-local / private).
_METADATA = (ipaddress.ip_network("100.100.100.200/32"),)  # Alibaba Cloud


class AddressRefused(OSError):
    """A host resolved only to addresses the policy refuses."""


def _is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not _is_public(embedded):
            return False
    if ip.is_multicast or not ip.is_global:
        return False
    return not any(ip in net for net in _METADATA)


def _port(text: str, rule: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{rule!r}: the port must be 1-65535")
    return int(text)


@dataclass(frozen=True)
class _Rule:
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None
    name: str | None
    port: int | None

    @classmethod
    def parse(cls, text: str) -> _Rule:
        """`addr`, `addr:port`, `[v6]:port`, `cidr`, `name` or `name:port`."""
        spec, port = text.strip(), None
        if spec.startswith("["):
            inside, _, rest = spec[1:].partition("]")
            spec = inside
            port = _port(rest[1:], text) if rest.startswith(":") else None
        elif spec.count(":") == 1:
            spec, _, tail = spec.partition(":")
            port = _port(tail, text)
        try:
            return cls(ipaddress.ip_network(spec, strict=False), None, port)
        except ValueError:
            if not spec:
                raise ValueError(f"empty host in allow rule {text!r}") from None
            return cls(None, spec.lower().rstrip("."), port)

    def matches(self, name: str, ip, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            return ip is not None and ip.version == self.network.version and ip in self.network
        return name == self.name


@dataclass(frozen=True)
class FetchPolicy:
    """Where fetches may go. Default: public http(s) only, no local files."""

    file_roots: tuple[str, ...] = ()  # folders file:// URLs may read (their real paths)
    allow: tuple[str, ...] = ()  # non-public hosts that may be reached (see _Rule.parse)

    @classmethod
    def for_eol(cls, cfg) -> FetchPolicy:
        """The policy of an EOL ingest: file roots = the mirror's local folders (a value that
        is not an http(s) URL), non-public hosts = `sources.eol.allow_hosts`."""
        roots = []
        for target in cfg.sources.eol.mirror.values():
            if target.lower().startswith(("http://", "https://")):
                continue
            if target.lower().startswith("file:"):
                roots.append(unquote(urlsplit(target).path))
            else:
                roots.append(str(cfg.path(target).resolve()))
        policy = cls(file_roots=tuple(roots), allow=tuple(cfg.sources.eol.allow_hosts))
        try:
            policy.check_rules()
        except ValueError as exc:
            raise InputError(f"sources.eol.allow_hosts: {exc}") from None
        return policy

    @cached_property
    def _rules(self) -> tuple[_Rule, ...]:
        return tuple(_Rule.parse(a) for a in self.allow)

    @cached_property
    def _roots(self) -> tuple[str, ...]:
        return tuple(os.path.realpath(r) for r in self.file_roots)

    def check_rules(self) -> None:
        """Raise ValueError naming a malformed allow rule (config validation calls this)."""
        _ = self._rules

    # -- network

    def address_allowed(self, name: str, address: str, port: int) -> bool:
        """Whether `name` (as written in the URL), resolved to `address`, may be reached."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if _is_public(ip):
            return True
        name = name.lower().rstrip(".")
        return any(rule.matches(name, ip, port) for rule in self._rules)

    @cached_property
    def _refusals(self) -> dict[tuple[str, str], str | None]:
        return {}  # (scheme, netloc) -> refusal: URLs of one host repeat millions of times

    def url_refusal(self, url: str) -> str | None:
        """Reason an http(s) URL is refused before any connection (None: go ahead; names are
        checked again on their resolved addresses by `PolicyResolver`)."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        cache = self._refusals
        if key not in cache:
            if len(cache) > 100_000:
                cache.clear()
            cache[key] = self._netloc_refusal(parts)
        return cache[key]

    def _netloc_refusal(self, parts: SplitResult) -> str | None:
        host = (parts.hostname or "").lower()
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return "invalid_url"
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            literal = _legacy_ipv4(host)
            if literal is None:  # a name: the resolver checks what it resolves to
                return None
            host_ip = literal
        else:
            host_ip = host
        if self.address_allowed(host, host_ip, port):
            return None
        return Reason.NON_PUBLIC_ADDRESS

    def resolver(self) -> PolicyResolver:
        return PolicyResolver(self)

    # -- local files

    def local_path(self, url: str) -> tuple[Path | None, str | None]:
        """(real path to open, None) for a file URL under a local root, else (None, reason)."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return None, "invalid_url"
        if parts.scheme.lower() != "file":
            return None, "unsupported_scheme"
        if parts.netloc and parts.netloc.lower() != "localhost":
            return None, Reason.FILE_OUTSIDE_MIRROR  # a remote (UNC) host: never
        path = unquote(parts.path)
        if "\0" in path or not path.startswith("/"):
            return None, "invalid_url"
        real = os.path.realpath(path)  # `..`, `%2e%2e` (decoded above) and symlinks resolved
        for root in self._roots:
            if real == root or real.startswith(root.rstrip("/") + "/"):
                return Path(real), None
        return None, Reason.FILE_OUTSIDE_MIRROR


def _legacy_ipv4(host: str) -> str | None:
    """The address of a numeric host that is not dotted-quad (`2130706433`, `0x7f.1`, `127.1`):
    the C library reads such names as IPv4 addresses; None for real names."""
    if not host or not all(c in "0123456789abcdefx." for c in host):
        return None
    try:
        return socket.inet_ntoa(socket.inet_aton(host))
    except OSError:
        return None


class PolicyResolver(AbstractResolver):
    """aiohttp resolver that drops the addresses the policy refuses (the connection then uses
    only what was checked: no window for DNS rebinding)."""

    def __init__(self, policy: FetchPolicy, inner: AbstractResolver | None = None):
        self.policy = policy
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        kept = [r for r in found if self.policy.address_allowed(host, r["host"], port)]
        if not kept:
            raise AddressRefused(f"{host} resolves only to non-public addresses")
        return kept

    async def close(self) -> None:
        await self._inner.close()


def public_url(url: str | None) -> str | None:
    """`url` without credentials (`scheme://user:pass@host` -> `scheme://host`), for anything
    we publish or write down; other text is returned unchanged."""
    if not url or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(SplitResult(parts.scheme, host, parts.path, parts.query, parts.fragment))


def id_fits_store(key: str) -> bool:
    """Whether a row key fits as an image-store member name (`<key with __>.jpg`, USTAR's
    100-byte name field) and holds no control characters."""
    name = store_member_name(key)
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        return False
    try:
        return len(name.encode("utf-8")) <= MAX_STORE_NAME_BYTES
    except UnicodeEncodeError:
        return False
