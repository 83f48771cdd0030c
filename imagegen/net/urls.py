"""The URL policy for URLs the worker does not control: what may be fetched, and the addresses it resolves to.

* only ``https`` (``http`` too when ``allow_private``), no userinfo, a host and a valid port;
* the host is resolved once and **every** address must be public (not private, loopback, link-local,
  multicast, reserved, unspecified...), unless ``allow_private`` (``IMAGEGEN_ALLOW_PRIVATE_URLS``); IPv4
  embedded in IPv6 (mapped, NAT64, 6to4) is judged by the IPv4 address; non-canonical numeric hosts
  (``2130706433``, ``0x7f.1``) are refused.

A URL that passes comes back as a ``CheckedURL`` carrying its checked addresses, so the fetcher connects
to one of them and never looks the name up again. Refusals raise ``UnsafeURL``; messages never contain
the URL.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import httpx

from imagegen.errors import FetchFailed, UnsafeURL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> IP address strings``; injectable so tests need no DNS.
Resolver = Callable[[str, int], Sequence[str]]

_DEFAULT_PORTS = {"http": 80, "https": 443}
# WHATWG "ends in a number": such a host is parsed as an IPv4 address in legacy forms by browsers and by
# inet_aton (getaddrinfo), e.g. 2130706433, 0177.0.0.1, 0x7f.1, 127.1 are all 127.0.0.1.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # after IDNA: letters, digits, hyphen (underscore is seen in the wild)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: the low 32 bits are IPv4


def _default_timeout() -> httpx.Timeout:
    return httpx.Timeout(30.0, connect=5.0)


@dataclass(frozen=True)
class FetchPolicy:
    """What a fetch may reach and accept."""

    allow_private: bool = False  # IMAGEGEN_ALLOW_PRIVATE_URLS: http and non-public addresses allowed
    max_bytes: int = 50 * 1024 * 1024
    content_types: tuple[str, ...] = ("image/",)  # prefixes of the media type; empty tuple = anything
    # Declared types (exact; "" = no Content-Type) accepted only when the body sniffs as one of
    # ``content_types``: S3 and CDNs often serve images as octet-stream or without a type.
    sniffed_types: tuple[str, ...] = ("", "application/octet-stream", "binary/octet-stream")
    max_redirects: int = 5
    timeout: httpx.Timeout = field(default_factory=_default_timeout)  # per operation (connect, each read)
    # Whole fetch, redirects included, so a slow-drip server cannot hold a worker; checked between reads,
    # so it may overrun by up to one read timeout.
    max_seconds: float = 120.0


@dataclass(frozen=True)
class CheckedURL:
    """A URL that passed ``check_url``, with the addresses the connection may use (all checked)."""

    url: httpx.URL  # as given, fragment dropped
    host: str  # ASCII (IDNA) host without brackets
    port: int
    addresses: tuple[IPAddress, ...]
    is_ip_literal: bool

    @property
    def host_header(self) -> str:
        """The ``Host`` header value: the original host (and port when not the default)."""
        return self.url.netloc.decode("ascii")

    def pinned(self, address: IPAddress) -> httpx.URL:
        """The request URL with ``address`` in place of the host, so no other lookup happens."""
        return self.url.copy_with(host=str(address))


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with ``socket.getaddrinfo``; every IPv4/IPv6 address, in the system's order."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except UnicodeError:
        raise UnsafeURL("malformed host name") from None
    except OSError as exc:  # gaierror: NXDOMAIN, no network... a retry may succeed
        raise FetchFailed(f"could not resolve host: {exc.strerror or type(exc).__name__}") from None
    found = (str(sa[0]) for family, _, _, _, sa in infos if family in (socket.AF_INET, socket.AF_INET6))
    return list(dict.fromkeys(found))


# --- address policy ---------------------------------------------------------------------------------


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that traffic to ``ip`` actually reaches (mapped, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def _non_public_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is not a public unicast address, or ``None`` if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "scoped IPv6"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = _non_public_reason(embedded)
            if reason is not None or ip.ipv4_mapped is not None or ip in _NAT64:
                # ::ffff:a.b.c.d and 64:ff9b::a.b.c.d are that IPv4 address; is_reserved (::/8) would
                # otherwise refuse NAT64, the only way an IPv6-only worker reaches IPv4 hosts.
                return reason
    # Explicit checks first for a precise message, then is_global as the catch-all (CGNAT, TEST-NETs...).
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("non-global", not ip.is_global),
    )
    for name, hit in checks:
        if hit:
            return name
    return None


def _check_address(ip: IPAddress, policy: FetchPolicy, verb: str) -> None:
    reason = _non_public_reason(ip)
    if reason is None:
        return
    # Even with allow_private, these are never a TCP peer worth connecting to (0.0.0.0 means "this host").
    if policy.allow_private and reason not in ("unspecified", "multicast", "scoped IPv6"):
        return
    shown = f"::ffff:{ip.ipv4_mapped}" if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else str(ip)
    raise UnsafeURL(f"host {verb} a {reason} address ({shown}); only public addresses may be fetched")


def _parse_ip_literal(host: str) -> IPAddress | None:
    """``host`` as an IP address if it is one; refuses the legacy numeric forms."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise UnsafeURL("malformed IPv6 host") from None
    if not _HOST_NAME.match(host):
        raise UnsafeURL("malformed host name")
    labels = host.removesuffix(".").split(".")
    if not _NUMERIC_LABEL.match(labels[-1]):
        return None  # a name: resolve it
    try:
        return ipaddress.IPv4Address(".".join(labels))  # canonical dotted quad only (no leading zeros)
    except ValueError:
        raise UnsafeURL("host is a non-canonical numeric IP address (decimal, octal or hex form)") from None


# --- URL check --------------------------------------------------------------------------------------


def check_url(url: str, policy: FetchPolicy, *, resolver: Resolver = system_resolver) -> CheckedURL:
    """Check that ``url`` may be fetched under ``policy`` and resolve its host once.

    Raises ``UnsafeURL`` (scheme, userinfo, host, port, or any resolved address not public unless
    ``policy.allow_private``), or ``FetchFailed`` when the name does not resolve (possibly transient).
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UnsafeURL("malformed URL") from None
    scheme = parsed.scheme
    if scheme != "https" and not (scheme == "http" and policy.allow_private):
        allowed = "https or http" if policy.allow_private else "https"
        raise UnsafeURL(f"URL scheme {scheme or '(none)'!r} refused: must be {allowed}")
    if parsed.userinfo:
        raise UnsafeURL("URL with credentials (user:password@) refused")
    try:
        host = parsed.raw_host.decode("ascii")
    except UnicodeDecodeError:
        raise UnsafeURL("malformed host name") from None
    if not host or host == ".":
        raise UnsafeURL("URL has no host")
    port = parsed.port if parsed.port is not None else _DEFAULT_PORTS[scheme]
    if not 1 <= port <= 65535:
        raise UnsafeURL(f"URL port {port} out of range")

    literal = _parse_ip_literal(host)
    if literal is not None:
        addresses: tuple[IPAddress, ...] = (literal,)
        verb = "is"
    else:
        raw = resolver(host, port)
        if not raw:
            raise FetchFailed("host did not resolve to any address")
        try:
            addresses = tuple(dict.fromkeys(ipaddress.ip_address(a) for a in raw))
        except ValueError:
            raise UnsafeURL("resolver returned something that is not an IP address") from None
        verb = "resolves to"
    # Every address, not just the first: a name with [public, private] could be steered to either.
    for ip in addresses:
        _check_address(ip, policy, verb)
    return CheckedURL(
        url=parsed.copy_with(fragment=None),
        host=host,
        port=port,
        addresses=addresses,
        is_ip_literal=literal is not None,
    )


# --- transport --------------------------------------------------------------------------------------
