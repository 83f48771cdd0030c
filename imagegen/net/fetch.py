"""Fetching URLs the worker does not control, safely (SSRF-proof; ``IMAGEGEN_ALLOW_PRIVATE_URLS`` relaxes it).

Every URL the worker fetches (upstream result files, reference images, caller callbacks) goes through here:

* only ``https`` (``http`` too when ``allow_private``), no userinfo, a host and a valid port;
* the host is resolved once and **every** address must be public (not private, loopback, link-local,
  multicast, reserved, unspecified...), unless ``allow_private``; IPv4 embedded in IPv6 (mapped, NAT64,
  6to4) is judged by the IPv4 address; non-canonical numeric hosts (``2130706433``, ``0x7f.1``) are refused;
* the connection goes to the checked address itself (no second lookup, so DNS rebinding cannot swap
  it): the request URL carries the IP, ``Host`` carries the name, and for https the ``sni_hostname``
  extension makes httpcore use the name for SNI and certificate verification;
* redirects are followed by hand, and each ``Location`` is checked like the first URL;
* the body is streamed with a byte cap, and the content type must match the policy; an untyped or
  ``octet-stream`` body (S3 and CDNs serve images so) is accepted when its magic bytes are of an accepted
  type, and reported with that type.

Refusals raise ``UnsafeURL``; a body of the wrong type raises its subclass ``ContentRefused`` (the server
works, it just does not serve what we want: not a safety problem); a valid URL that fails (HTTP error
status, DNS or transport failure, too slow) raises ``FetchFailed``. Messages never contain the URL.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import httpx

from imagegen.errors import ContentRefused, FetchFailed, UnsafeURL
from imagegen.net.imagetypes import sniff_image_type

__all__ = [
    "CheckedURL",
    "FetchPolicy",
    "Fetched",
    "IPAddress",
    "Resolver",
    "check_url",
    "fetch",
    "post_json",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``(host, port) -> IP address strings``; injectable so tests need no DNS.
Resolver = Callable[[str, int], Sequence[str]]

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
# WHATWG "ends in a number": such a host is parsed as an IPv4 address in legacy forms by browsers and by
# inet_aton (getaddrinfo), e.g. 2130706433, 0177.0.0.1, 0x7f.1, 127.1 are all 127.0.0.1.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0[xX][0-9a-fA-F]*)$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # after IDNA: letters, digits, hyphen (underscore is seen in the wild)
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: the low 32 bits are IPv4
_USER_AGENT = "imagegen-queue"


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
class Fetched:
    """A fetched body; ``url`` is the final URL after redirects (with the host name, not the IP)."""

    url: str
    content: bytes
    content_type: str
    sha256: str


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


def make_client(policy: FetchPolicy) -> httpx.Client:
    """A client fit for ``fetch``/``post_json``; build one per process and reuse it (creating one loads
    the CA bundle, ~25 ms). An explicit transport means httpx applies no HTTP(S)_PROXY from the environment
    (a proxy would do its own DNS and break the pinned SNI) while SSL_CERT_FILE/DIR still count; no
    keep-alive, see _send."""
    transport = httpx.HTTPTransport(limits=httpx.Limits(max_keepalive_connections=0))
    return httpx.Client(transport=transport, follow_redirects=False, timeout=policy.timeout)


@contextmanager
def _client_scope(client: httpx.Client | None, policy: FetchPolicy) -> Iterator[httpx.Client]:
    if client is not None:
        yield client
        return
    with make_client(policy) as own:
        yield own


def _send(
    client: httpx.Client,
    method: str,
    checked: CheckedURL,
    policy: FetchPolicy,
    headers: Mapping[str, str],
    content: bytes | None = None,
    deadline: float | None = None,
) -> httpx.Response:
    """Send one request to one of the checked addresses (next one only if the connect failed, and only
    before ``deadline``, so many addresses cannot stretch the whole fetch)."""
    extensions: dict[str, object] = {"timeout": policy.timeout.as_dict()}
    if not checked.is_ip_literal:
        # httpcore (_sync/connection.py, _connect) uses this as ssl server_hostname: SNI and certificate
        # hostname verification against the real name while the TCP connection goes to the IP.
        extensions["sni_hostname"] = checked.host.removesuffix(".")
    # The client's default headers, cookies and auth are deliberately not applied: a built Request is sent.
    all_headers = {k: v for k, v in headers.items() if k.lower() not in ("host", "connection")}
    all_headers["Host"] = checked.host_header
    # Connection: close makes httpcore drop the connection after the response (h11 never returns to
    # IDLE): its pool is keyed by scheme+IP+port, so a kept-alive TLS connection verified for one name
    # would otherwise serve a later request for another name on the same IP, even on a caller's client.
    all_headers["Connection"] = "close"
    last_error: httpx.HTTPError | None = None
    for address in checked.addresses:
        if last_error is not None and deadline is not None and time.monotonic() > deadline:
            raise FetchFailed("fetch too slow: exceeded its time limit") from last_error
        request = httpx.Request(
            method, checked.pinned(address), headers=all_headers, content=content, extensions=extensions
        )
        try:
            return client.send(request, stream=True, follow_redirects=False, auth=None)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            # Nothing was sent yet, so trying the next checked address is safe even for POST.
            last_error = exc
        except httpx.HTTPError as exc:
            raise FetchFailed(f"transport error: {type(exc).__name__}") from exc
    raise FetchFailed(f"could not connect: {type(last_error).__name__}") from last_error


def _read_capped(response: httpx.Response, max_bytes: int, deadline: float) -> bytes:
    """Read the body, refusing as soon as it exceeds ``max_bytes``."""
    length = response.headers.get("content-length", "").strip()
    if length.isdigit() and int(length) > max_bytes:
        raise UnsafeURL(f"response too large: Content-Length {int(length)} exceeds the limit of {max_bytes} bytes")
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding not in ("", "identity"):
        # We ask for identity; decoding gzip/br would let a small body expand past the cap in one chunk.
        raise UnsafeURL(f"response refused: unexpected Content-Encoding {encoding[:40]!r}")
    body = bytearray()
    try:
        # Content-Encoding is identity here, so iter_bytes yields the wire bytes (and also works for a
        # response that a transport such as MockTransport has already loaded).
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > max_bytes:
                raise UnsafeURL(f"response too large: more than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise FetchFailed("response too slow: the fetch exceeded its time limit")
    except httpx.HTTPError as exc:
        raise FetchFailed(f"transport error while reading: {type(exc).__name__}") from exc
    return bytes(body)


def _media_type(response: httpx.Response) -> str:
    value: str = response.headers.get("content-type", "")
    return value.split(";", 1)[0].strip().lower()


# --- public operations ------------------------------------------------------------------------------


def fetch(
    url: str,
    policy: FetchPolicy,
    *,
    client: httpx.Client | None = None,
    resolver: Resolver = system_resolver,
) -> Fetched:
    """GET ``url`` under ``policy``, following (and re-checking) redirects; returns the body and its hash.

    Raises ``UnsafeURL`` for anything the policy refuses (including redirects to refused URLs, too many
    redirects, too large, wrong content type) and ``FetchFailed`` for a non-2xx final status or a
    transport/DNS failure. ``client`` (for tests) must be HTTP/1.1 and without a proxy; its default headers,
    cookies and auth are not used. The default is a fresh client without keep-alive or environment proxies.
    """
    deadline = time.monotonic() + policy.max_seconds
    headers = {"Accept": "*/*", "Accept-Encoding": "identity", "User-Agent": _USER_AGENT}
    checked = check_url(url, policy, resolver=resolver)
    redirects = 0
    with _client_scope(client, policy) as http:
        while True:
            if time.monotonic() > deadline:
                raise FetchFailed("fetch too slow: exceeded its time limit")
            response = _send(http, "GET", checked, policy, headers, deadline=deadline)
            try:
                status = response.status_code
                location = response.headers.get("location")
                if status in _REDIRECT_STATUSES and location:
                    if redirects >= policy.max_redirects:
                        raise UnsafeURL(f"too many redirects (more than {policy.max_redirects})")
                    redirects += 1
                    # Relative to the URL as the server sees it (the name, not the pinned IP).
                    try:
                        target = checked.url.join(location)
                    except (httpx.InvalidURL, ValueError):
                        raise UnsafeURL("redirect to a malformed URL") from None
                    checked = check_url(str(target), policy, resolver=resolver)
                    continue
                if not 200 <= status < 300:
                    raise FetchFailed(f"HTTP {status}", status_code=status)
                media_type = _media_type(response)
                allowed_types = tuple(t.lower() for t in policy.content_types)
                expected = ", ".join(policy.content_types)
                sniff = bool(allowed_types) and not media_type.startswith(allowed_types)
                if sniff and media_type not in policy.sniffed_types:
                    raise ContentRefused(f"content type {media_type[:80] or '(none)'!r} refused: expected {expected}")
                content = _read_capped(response, policy.max_bytes, deadline)
            finally:
                response.close()
            if sniff:
                found = sniff_image_type(content)
                if found is None or not found.startswith(allowed_types):
                    shown = media_type or "(none)"
                    raise ContentRefused(f"content type {shown!r} refused: the body is not {expected}")
                media_type = found
            return Fetched(
                url=str(checked.url),
                content=content,
                content_type=media_type,
                sha256=hashlib.sha256(content).hexdigest(),
            )


def post_json(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    policy: FetchPolicy,
    *,
    client: httpx.Client | None = None,
    resolver: Resolver = system_resolver,
) -> httpx.Response:
    """POST ``body`` (JSON bytes) to ``url`` under ``policy``; for caller callbacks.

    Redirects are not followed: any status, 3xx included, is returned as-is in a fully read response
    (body capped at ``policy.max_bytes``; the content type is not checked). Raises ``UnsafeURL`` for a
    refused URL or body, ``FetchFailed`` for a DNS or transport failure.
    """
    deadline = time.monotonic() + policy.max_seconds
    checked = check_url(url, policy, resolver=resolver)
    all_headers = {"Content-Type": "application/json", "Accept-Encoding": "identity", "User-Agent": _USER_AGENT}
    # Caller headers (e.g. webhook signatures) win, whatever their case; Host is always ours.
    for key, value in headers.items():
        for existing in [k for k in all_headers if k.lower() == key.lower()]:
            del all_headers[existing]
        all_headers[key] = value
    with _client_scope(client, policy) as http:
        response = _send(http, "POST", checked, policy, all_headers, content=body)
        try:
            content = _read_capped(response, policy.max_bytes, deadline)
        finally:
            response.close()
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        content=content,
        request=response.request,
        extensions={"http_version": response.extensions.get("http_version", b"HTTP/1.1")},
    )
