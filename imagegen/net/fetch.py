"""Fetching URLs the worker does not control, safely: result files, reference images, caller callbacks.

Every such URL passes ``net.urls.check_url`` first; then:

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
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import httpx

from imagegen.errors import ContentRefused, FetchFailed, UnsafeURL
from imagegen.net.imagetypes import sniff_image_type
from imagegen.net.urls import CheckedURL, FetchPolicy, Resolver, check_url, system_resolver

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_USER_AGENT = "imagegen-queue"


@dataclass(frozen=True)
class Fetched:
    """A fetched body; ``url`` is the final URL after redirects (with the host name, not the IP)."""

    url: str
    content: bytes
    content_type: str
    sha256: str


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
