"""SSRF-proof fetching, and what IMAGEGEN_ALLOW_PRIVATE_URLS relaxes.

Real HTTP (a threaded ``http.server`` on loopback, plus a TLS one) where the wire matters: size caps,
chunked bodies, content types, redirect chains, Host/SNI pinning. ``httpx.MockTransport`` where the
peer would have to be a public address: which IP the request went to, redirect refusals, rebinding.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegen.errors import FetchFailed, ImagegenError, UnsafeURL
from imagegen.net.fetch import fetch, post_json
from imagegen.net.urls import FetchPolicy, check_url, system_resolver

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
HUGE = 2 * 1024 * 1024
MB = 1024 * 1024
DENY = FetchPolicy()
ALLOW = FetchPolicy(allow_private=True)
PUBLIC = "93.184.216.34"
PUBLIC2 = "1.1.1.1"


# --- helpers ----------------------------------------------------------------------------------------


@dataclass
class FakeResolver:
    """Maps names to address lists; each name may answer differently on later calls (rebinding)."""

    answers: dict[str, list[list[str]]]
    calls: list[str] = field(default_factory=list)

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append(host)
        seq = self.answers[host]
        return seq[min(self.calls.count(host), len(seq)) - 1]


def resolver(**names: str | list[str]) -> FakeResolver:
    """``resolver(**{"files.example.com": "1.2.3.4"})``: always the same answer per name."""
    return FakeResolver({k: [[v] if isinstance(v, str) else v] for k, v in names.items()})


def no_dns(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"resolver must not be called for {host!r}")


def mock_client(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler), **kwargs)


def png_response(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, headers={"Content-Type": "image/png"}, content=PNG)


# --- a real local server ----------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    host: str
    headers: dict[str, str]
    body: bytes


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: LocalServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _record(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.server.seen.append(Seen(self.command, self.path, headers.get("host", ""), headers, body))
        return body

    def _send(self, status: int, body: bytes, ctype: str, **extra: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client refused the body and hung up
            self.wfile.write(body)

    def _redirect(self, location: str, status: int = 302) -> None:
        self._send(status, b"", "text/plain", Location=location)

    def do_GET(self) -> None:
        self._record()
        path = self.path
        if path == "/image.png":
            self._send(200, PNG, "image/png; charset=binary")
        elif path == "/page":
            self._send(200, b"<html>hi</html>", "text/html; charset=utf-8")
        elif path == "/huge-cl":
            self._send(200, b"\0" * HUGE, "image/png")
        elif path == "/huge-chunked":
            self._chunked(b"\0" * 65536 for _ in range(HUGE // 65536))
        elif path == "/small-chunked":
            self._chunked([PNG[:100], PNG[100:]])
        elif path == "/slow":
            self._chunked(self._drip())
        elif path == "/gzip":
            self._send(200, PNG, "image/png", Content_Encoding="gzip")
        elif path.startswith("/redirect/"):
            n = int(path.rsplit("/", 1)[1])
            self._redirect(f"/redirect/{n - 1}" if n > 1 else "/image.png")
        elif path == "/relative/a/b":
            self._redirect("../../image.png", 301)
        elif path == "/loop":
            self._redirect("/loop", 307)
        else:
            self._send(404, b"not here", "text/plain")

    @staticmethod
    def _drip() -> Iterator[bytes]:
        for _ in range(10):
            time.sleep(0.1)
            yield b"x" * 10

    def _chunked(self, chunks: Any) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for chunk in chunks:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")

    def do_POST(self) -> None:
        body = self._record()
        if self.path == "/hook":
            echo = json.dumps({"got": json.loads(body)}).encode()
            self._send(200, echo, "application/json")
        elif self.path == "/hook-redirect":
            self._redirect("/hook", 307)
        else:
            self._send(404, b"", "text/plain")


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[Seen] = []
        if context is not None:
            self.socket = context.wrap_socket(self.socket, server_side=True)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request: Any, client_address: Any) -> None:  # quiet: refused bodies, bad handshakes
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def local(server: LocalServer) -> LocalServer:
    server.seen.clear()
    return server


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- scheme, userinfo, host -------------------------------------------------------------------------


def test_loopback_download_is_refused_with_a_clear_error(local: LocalServer) -> None:
    # The example: a download pointed at 127.0.0.1 is refused, and nothing reaches the server.
    with pytest.raises(UnsafeURL, match=r"^host is a loopback address \(127\.0\.0\.1\); only public"):
        fetch(f"https://127.0.0.1:{local.port}/image.png", DENY)
    with pytest.raises(UnsafeURL, match="scheme 'http' refused: must be https"):
        fetch(f"http://127.0.0.1:{local.port}/image.png", DENY)
    assert local.seen == []


def test_localhost_is_refused_through_real_dns() -> None:
    with pytest.raises(UnsafeURL, match=r"resolves to a loopback address"):
        check_url("https://localhost/x.png", DENY)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "non-global"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped: judged as the IPv4 address
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("64:ff9b::7f00:1", "loopback"),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of 169.254.169.254
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
        ("::127.0.0.1", "reserved"),  # deprecated IPv4-compatible
        ("2001:db8::1", "private"),  # documentation
    ],
)
def test_non_public_addresses_refused(address: str, reason: str) -> None:
    ip = ipaddress.ip_address(address)
    shown = address if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else str(ip)  # ::7f00:1 for ::127.0.0.1
    # Whether the name resolves to it...
    with pytest.raises(UnsafeURL, match=rf"^host resolves to a {reason} address \({re.escape(shown)}\)"):
        check_url("https://files.example.com/a.png", DENY, resolver=resolver(**{"files.example.com": address}))
    # ...or the URL names it directly (no DNS at all).
    literal = f"[{address}]" if ":" in address else address
    with pytest.raises(UnsafeURL, match=rf"^host is a {reason} address"):
        check_url(f"https://{literal}/a.png", DENY, resolver=no_dns)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"])
def test_public_addresses_accepted(address: str) -> None:
    checked = check_url("https://files.example.com/a.png", DENY, resolver=resolver(**{"files.example.com": address}))
    assert checked.addresses == (ipaddress.ip_address(address),)


def test_every_resolved_address_must_be_public() -> None:
    res = resolver(**{"files.example.com": [PUBLIC, "10.0.0.5"]})
    with pytest.raises(UnsafeURL, match=r"private address \(10\.0\.0\.5\)"):
        check_url("https://files.example.com/a.png", DENY, resolver=res)
    res = resolver(**{"files.example.com": [PUBLIC, "::1"]})
    with pytest.raises(UnsafeURL, match=r"loopback address \(::1\)"):
        check_url("https://files.example.com/a.png", DENY, resolver=res)


@pytest.mark.parametrize(
    "host", ["2130706433", "0x7f000001", "0x7f.1", "127.1", "0177.0.0.1", "017700000001", "127.0.0.01", "1.2.3.4.5"]
)
@pytest.mark.parametrize("policy", [DENY, ALLOW], ids=["deny", "allow_private"])
def test_legacy_numeric_hosts_refused(host: str, policy: FetchPolicy) -> None:
    # inet_aton would read all of these as 127.0.0.1 (or garbage); refused before any DNS, whatever the policy.
    with pytest.raises(UnsafeURL, match=r"non-canonical numeric|malformed URL"):
        check_url(f"https://{host}/x", policy, resolver=no_dns)


def test_trailing_dot_ip_is_still_an_ip() -> None:
    with pytest.raises(UnsafeURL, match="loopback"):
        check_url("https://127.0.0.1./x", DENY, resolver=no_dns)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://files.example.com/a.png", "scheme 'http' refused: must be https"),
        ("ftp://files.example.com/a.png", "scheme 'ftp' refused"),
        ("file:///etc/passwd", "scheme 'file' refused"),
        ("gopher://files.example.com/", "scheme 'gopher' refused"),
        ("//files.example.com/a.png", "scheme '(none)' refused"),
        ("https://user:pass@files.example.com/a.png", "credentials"),
        ("https://user@files.example.com/a.png", "credentials"),
        ("https:///a.png", "no host"),
        ("https://files.example.com:99999/a.png", "port 99999 out of range"),
        ("https://files.example.com:0/a.png", "port 0 out of range"),
        ("https://[fe80::1%25eth0]/a.png", "scoped IPv6"),
        ("https://exa mple.com/", "malformed host name"),
        ("https://exa%00mple.com/", "malformed"),
    ],
)
def test_refused_urls(url: str, message: str) -> None:
    with pytest.raises(UnsafeURL, match=re.escape(message)):
        check_url(url, DENY, resolver=resolver(**{"files.example.com": PUBLIC}))


def test_the_checked_host_is_the_host_httpx_connects_to() -> None:
    # Parser differentials (backslash, @ in the path) cannot split "checked" from "connected": one parser.
    res = resolver(a=PUBLIC)
    checked = check_url("https://a/b\\@files.example.com/", DENY, resolver=res)
    assert res.calls == ["a"] and checked.pinned(checked.addresses[0]).host == PUBLIC


def test_http_allowed_only_with_allow_private() -> None:
    res = resolver(**{"files.example.com": PUBLIC})
    with pytest.raises(UnsafeURL, match="must be https"):
        check_url("http://files.example.com/a.png", DENY, resolver=res)
    checked = check_url("http://files.example.com/a.png", ALLOW, resolver=res)
    assert checked.port == 80
    with pytest.raises(UnsafeURL, match="must be https or http"):
        check_url("ftp://files.example.com/a.png", ALLOW, resolver=res)


def test_allow_private_still_refuses_unspecified_and_multicast() -> None:
    assert check_url("http://127.0.0.1:9/x", ALLOW, resolver=no_dns).addresses == (ipaddress.ip_address("127.0.0.1"),)
    for address in ("0.0.0.0", "::", "224.0.0.1"):
        with pytest.raises(UnsafeURL):
            check_url("http://h.example/x", ALLOW, resolver=resolver(**{"h.example": address}))


def test_messages_never_contain_the_url() -> None:
    secret = "X-Amz-Signature=deadbeef"
    res = resolver(**{"files.example.com": "10.0.0.5"})
    with pytest.raises(UnsafeURL) as refused:
        fetch(f"https://files.example.com/private/path.png?{secret}", DENY, resolver=res)
    assert secret not in str(refused.value) and "/private/path" not in str(refused.value)


def test_system_resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {ipaddress.ip_address(a).is_loopback for a in system_resolver("localhost", 443)} == {True}

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(FetchFailed, match="could not resolve host: Name or service not known") as failed:
        check_url("https://nothing.invalid/", DENY)
    assert failed.value.status_code is None


# --- hypothesis: the address rule -------------------------------------------------------------------

SPECIAL_NETWORKS = [
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.168.0.0/16", "198.18.0.0/15", "224.0.0.0/4", "240.0.0.0/4",
    "::/96", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/32", "2001:db8::/32",
    "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
]  # fmt: skip
addresses = st.one_of(
    st.ip_addresses(),
    st.sampled_from(SPECIAL_NETWORKS).flatmap(lambda net: st.ip_addresses(network=net)),
)


def _accepted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, policy: FetchPolicy) -> tuple[bool, bool]:
    """(via a resolver, as a literal host); anything but UnsafeURL escapes and fails the test."""
    results = []
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    for url, res in (
        ("https://files.example.com/x", resolver(**{"files.example.com": str(ip)})),
        (f"https://{literal}/x", no_dns),
    ):
        try:
            check_url(url, policy, resolver=res)
            results.append(True)
        except UnsafeURL:
            results.append(False)
    return results[0], results[1]


def _simple_rule(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


@settings(max_examples=400, deadline=None)
@given(addresses)
def test_address_rule(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    via_dns, as_literal = _accepted(ip, DENY)
    assert via_dns == as_literal
    if via_dns:  # never accept what is not global unicast
        assert _simple_rule(ip)
    if ip.version == 4:
        assert via_dns == _simple_rule(ip)
    else:
        assert isinstance(ip, ipaddress.IPv6Address)
        mapped = ip.ipv4_mapped or (
            ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in ipaddress.ip_network("64:ff9b::/96") else None
        )
        if mapped is not None:  # ::ffff:a.b.c.d and NAT64 are that IPv4 address
            assert via_dns == _simple_rule(mapped)
        else:
            # The stdlib rule, plus: nothing reserved (::/8 holds deprecated IPv4-compatible addresses) or
            # site-local (fec0::/10, deprecated), and 6to4 only when the embedded IPv4 is public too.
            embedded_ok = ip.sixtofour is None or _simple_rule(ip.sixtofour)
            assert via_dns == (_simple_rule(ip) and not ip.is_reserved and not ip.is_site_local and embedded_ok)
    # allow_private only widens what is accepted.
    if via_dns:
        assert _accepted(ip, ALLOW) == (True, True)


# --- pinning: the connection goes to the checked address --------------------------------------------


def test_request_goes_to_the_checked_ip_with_host_and_sni() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return png_response(request)

    # Rebinding: the name is public on the first lookup and loopback on any later one.
    res = FakeResolver({"files.example.com": [[PUBLIC], ["127.0.0.1"]]})
    got = fetch("https://files.example.com:8443/a.png?sig=1#frag", DENY, client=mock_client(handler), resolver=res)
    assert res.calls == ["files.example.com"]  # one lookup, no second chance for the attacker's DNS
    (request,) = sent
    assert request.url.host == PUBLIC
    assert str(request.url) == f"https://{PUBLIC}:8443/a.png?sig=1"
    assert request.headers["host"] == "files.example.com:8443"
    assert request.extensions["sni_hostname"] == "files.example.com"
    assert got.url == "https://files.example.com:8443/a.png?sig=1"


def test_ipv6_address_is_bracketed_and_idn_host_is_ascii() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return png_response(request)

    res = resolver(**{"xn--bcher-kva.example": "2606:4700::1111"})
    fetch("https://Bücher.example/a.png", DENY, client=mock_client(handler), resolver=res)
    assert res.calls == ["xn--bcher-kva.example"]
    assert str(sent[0].url).startswith("https://[2606:4700::1111]/a.png")
    assert sent[0].headers["host"] == "xn--bcher-kva.example"
    assert sent[0].extensions["sni_hostname"] == "xn--bcher-kva.example"


def test_ip_literal_needs_no_sni_override() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return png_response(request)

    fetch(f"https://{PUBLIC}/a.png", DENY, client=mock_client(handler), resolver=no_dns)
    assert "sni_hostname" not in sent[0].extensions and sent[0].headers["host"] == PUBLIC


def test_next_checked_address_only_after_a_connect_failure() -> None:
    tried: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        if request.url.host == PUBLIC:
            raise httpx.ConnectError("unreachable", request=request)
        return png_response(request)

    res = resolver(**{"files.example.com": [PUBLIC, PUBLIC2]})
    assert fetch("https://files.example.com/a.png", DENY, client=mock_client(handler), resolver=res).content == PNG
    assert tried == [PUBLIC, PUBLIC2]

    def read_timeout(request: httpx.Request) -> httpx.Response:
        tried.append(request.url.host)
        raise httpx.ReadTimeout("slow", request=request)

    tried.clear()
    with pytest.raises(FetchFailed, match="transport error: ReadTimeout"):
        fetch("https://files.example.com/a.png", DENY, client=mock_client(read_timeout), resolver=res)
    assert tried == [PUBLIC]  # a request may have been sent: no second try


def test_client_credentials_and_cookies_are_not_sent() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return png_response(request)

    client = mock_client(handler, headers={"Authorization": "Bearer sk-secret"}, auth=("u", "p"), cookies={"c": "1"})
    fetch("https://files.example.com/a.png", DENY, client=client, resolver=resolver(**{"files.example.com": PUBLIC}))
    assert "authorization" not in sent[0].headers and "cookie" not in sent[0].headers


def test_real_connection_uses_the_pinned_ip_and_the_real_host_header(local: LocalServer) -> None:
    # .invalid never resolves (RFC 6761): success proves the connection used the checked address only.
    res = resolver(**{"files.invalid": "127.0.0.1"})
    got = fetch(f"http://files.invalid:{local.port}/image.png", ALLOW, resolver=res)
    assert got.content == PNG
    assert [(s.path, s.host) for s in local.seen] == [("/image.png", f"files.invalid:{local.port}")]
    assert local.seen[0].headers["accept-encoding"] == "identity"
    assert local.seen[0].headers["connection"] == "close"  # never pooled: the pool is keyed by IP, not name


# --- TLS: SNI and certificate verification use the real name ----------------------------------------


@dataclass
class TLSServer:
    server: LocalServer
    sni: list[str | None]
    verify: ssl.SSLContext


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "files.invalid")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("files.invalid")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = Path(directory / "cert.pem"), Path(directory / "key.pem")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    sni: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    context.sni_callback = lambda sock, server_name, ctx: sni.append(server_name)
    srv = LocalServer(context)
    yield TLSServer(srv, sni, ssl.create_default_context(cafile=str(cert_path)))
    srv.shutdown()
    srv.server_close()


def test_tls_to_the_pinned_ip_verifies_the_certificate_for_the_name(tls: TLSServer) -> None:
    tls.sni.clear()
    res = resolver(**{"files.invalid": "127.0.0.1", "other.invalid": "127.0.0.1"})
    with httpx.Client(verify=tls.verify, trust_env=False) as client:
        got = fetch(f"https://files.invalid:{tls.server.port}/image.png", ALLOW, client=client, resolver=res)
        assert got.content == PNG and got.content_type == "image/png"
        assert tls.sni == ["files.invalid"]  # SNI carried the name although the socket went to 127.0.0.1
        # Same IP and certificate, another name, same (keep-alive capable) client: a new connection is made
        # (no pooled reuse across names) and the certificate is verified against the name, so it fails.
        with pytest.raises(FetchFailed, match="could not connect: ConnectError") as failed:
            fetch(f"https://other.invalid:{tls.server.port}/image.png", ALLOW, client=client, resolver=res)
        assert "other.invalid" in str(failed.value.__cause__)  # ssl: hostname mismatch for the name
        # Control: the same IP without the sni_hostname extension fails (the certificate names files.invalid),
        # so the extension is what made the first fetch verify.
        with pytest.raises(httpx.ConnectError, match=r"127\.0\.0\.1"):
            client.get(f"https://127.0.0.1:{tls.server.port}/image.png")
    assert tls.sni == ["files.invalid", "other.invalid", None]


# --- body: type, size, encoding, status -------------------------------------------------------------


def test_happy_path_returns_bytes_hash_and_type(local: LocalServer) -> None:
    import hashlib

    got = fetch(f"http://127.0.0.1:{local.port}/image.png", ALLOW)
    assert got.content == PNG
    assert got.sha256 == hashlib.sha256(PNG).hexdigest()
    assert got.content_type == "image/png"
    assert got.url == f"http://127.0.0.1:{local.port}/image.png"
    chunked = fetch(f"http://127.0.0.1:{local.port}/small-chunked", ALLOW)
    assert chunked.content == PNG[:100] + PNG[100:] == PNG[: len(chunked.content)]


def test_wrong_content_type_refused(local: LocalServer) -> None:
    url = f"http://127.0.0.1:{local.port}/page"
    with pytest.raises(UnsafeURL, match=r"content type 'text/html' refused: expected image/"):
        fetch(url, ALLOW)
    assert fetch(url, FetchPolicy(allow_private=True, content_types=())).content == b"<html>hi</html>"
    assert fetch(url, FetchPolicy(allow_private=True, content_types=("TEXT/",))).content_type == "text/html"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/huge-cl", rf"Content-Length {HUGE} exceeds the limit of {MB} bytes"),  # refused before the body
        ("/huge-chunked", rf"more than {MB} bytes"),  # no length: refused while streaming
    ],
)
def test_too_large_refused(local: LocalServer, path: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(UnsafeURL, match=message):
        fetch(f"http://127.0.0.1:{local.port}{path}", FetchPolicy(allow_private=True, max_bytes=MB))
    assert time.monotonic() - started < 2


def test_size_cap_boundary(local: LocalServer) -> None:
    url = f"http://127.0.0.1:{local.port}/small-chunked"
    assert fetch(url, FetchPolicy(allow_private=True, max_bytes=len(PNG))).content == PNG
    with pytest.raises(UnsafeURL, match="too large"):
        fetch(url, FetchPolicy(allow_private=True, max_bytes=len(PNG) - 1))


def test_encoded_body_refused(local: LocalServer) -> None:
    with pytest.raises(UnsafeURL, match="unexpected Content-Encoding 'gzip'"):
        fetch(f"http://127.0.0.1:{local.port}/gzip", ALLOW)


def test_http_error_is_fetch_failed_not_unsafe(local: LocalServer) -> None:
    with pytest.raises(FetchFailed, match=r"^HTTP 404$") as failed:
        fetch(f"http://127.0.0.1:{local.port}/missing?token=secret", ALLOW)
    assert failed.value.status_code == 404
    assert isinstance(failed.value, ImagegenError) and not isinstance(failed.value, UnsafeURL)


def test_connection_refused_is_fetch_failed() -> None:
    with pytest.raises(FetchFailed, match="could not connect: ConnectError") as failed:
        fetch(f"http://127.0.0.1:{closed_port()}/image.png", ALLOW)
    assert failed.value.status_code is None


def test_slow_drip_hits_the_time_limit(local: LocalServer) -> None:
    policy = FetchPolicy(allow_private=True, max_seconds=0.25)
    started = time.monotonic()
    with pytest.raises(FetchFailed, match="too slow"):
        fetch(f"http://127.0.0.1:{local.port}/slow", policy)
    assert time.monotonic() - started < 0.8


# --- redirects --------------------------------------------------------------------------------------


def test_redirect_chain_followed(local: LocalServer) -> None:
    got = fetch(f"http://127.0.0.1:{local.port}/redirect/5", ALLOW)
    assert got.content == PNG and got.url == f"http://127.0.0.1:{local.port}/image.png"
    assert [s.path for s in local.seen] == [f"/redirect/{n}" for n in range(5, 0, -1)] + ["/image.png"]


def test_relative_redirect_resolved_against_the_named_url(local: LocalServer) -> None:
    res = resolver(**{"files.invalid": "127.0.0.1"})
    got = fetch(f"http://files.invalid:{local.port}/relative/a/b", ALLOW, resolver=res)
    assert got.url == f"http://files.invalid:{local.port}/image.png"
    assert res.calls == ["files.invalid", "files.invalid"]  # one lookup per hop
    assert {s.host for s in local.seen} == {f"files.invalid:{local.port}"}


def test_too_many_redirects_refused(local: LocalServer) -> None:
    with pytest.raises(UnsafeURL, match=r"too many redirects \(more than 5\)"):
        fetch(f"http://127.0.0.1:{local.port}/redirect/6", ALLOW)
    with pytest.raises(UnsafeURL, match=r"too many redirects \(more than 2\)"):
        fetch(f"http://127.0.0.1:{local.port}/loop", FetchPolicy(allow_private=True, max_redirects=2))
    with pytest.raises(UnsafeURL, match="too many redirects"):
        fetch(f"http://127.0.0.1:{local.port}/redirect/1", FetchPolicy(allow_private=True, max_redirects=0))


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("https://internal.example.com/secret", r"resolves to a private address \(10\.0\.0\.5\)"),
        ("https://127.0.0.1/secret", r"is a loopback address"),
        ("https://169.254.169.254/latest/meta-data/", r"is a link-local address"),
        ("https://[::ffff:7f00:1]/x", r"is a loopback address"),
        ("http://files.example.com/a.png", r"scheme 'http' refused"),
        ("https://u:p@files.example.com/a.png", "credentials"),
        ("file:///etc/passwd", r"scheme 'file' refused"),
        ("https://2130706433/", "non-canonical numeric"),
        ("//rebind.example.com/x", r"resolves to a loopback address"),  # scheme-relative, rebinding on hop 2
    ],
)
def test_redirect_to_refused_url(location: str, message: str) -> None:
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.headers["host"])
        return httpx.Response(302, headers={"Location": location})

    res = FakeResolver(
        {
            "files.example.com": [[PUBLIC]],
            "internal.example.com": [["10.0.0.5"]],
            "rebind.example.com": [["127.0.0.1"]],
        }
    )
    with pytest.raises(UnsafeURL, match=message):
        fetch("https://files.example.com/a.png", DENY, client=mock_client(handler), resolver=res)
    assert hosts == ["files.example.com"]  # the refused target was never contacted


def test_redirect_to_same_name_is_checked_again() -> None:
    # The name was public for hop 1 and rebinds to private before hop 2: the re-check catches it.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "/next.png"})

    res = FakeResolver({"files.example.com": [[PUBLIC], ["192.168.0.10"]]})
    with pytest.raises(UnsafeURL, match=r"private address \(192\.168\.0\.10\)"):
        fetch("https://files.example.com/a.png", DENY, client=mock_client(handler), resolver=res)
    assert res.calls == ["files.example.com", "files.example.com"]


# --- post_json (caller callbacks) -------------------------------------------------------------------


def test_post_json_happy_path(local: LocalServer) -> None:
    res = resolver(**{"hooks.invalid": "127.0.0.1"})
    headers = {
        "webhook-signature": "v1,abc",
        "content-type": "application/json; charset=utf-8",
        "HOST": "evil",
        "connection": "keep-alive",
    }
    response = post_json(f"http://hooks.invalid:{local.port}/hook", b'{"id": 1}', headers, ALLOW, resolver=res)
    assert response.status_code == 200
    assert response.json() == {"got": {"id": 1}}
    (seen,) = local.seen
    assert seen.method == "POST" and seen.body == b'{"id": 1}'
    assert seen.host == f"hooks.invalid:{local.port}"  # the caller cannot steer Host
    assert seen.headers["webhook-signature"] == "v1,abc"
    assert seen.headers["content-type"] == "application/json; charset=utf-8"
    assert seen.headers["connection"] == "close"


def test_post_json_does_not_follow_redirects(local: LocalServer) -> None:
    response = post_json(f"http://127.0.0.1:{local.port}/hook-redirect", b"{}", {}, ALLOW)
    assert response.status_code == 307
    assert response.headers["location"] == "/hook"
    assert [s.path for s in local.seen] == ["/hook-redirect"]


def test_post_json_refuses_private_by_default(local: LocalServer) -> None:
    with pytest.raises(UnsafeURL, match="loopback"):
        post_json(f"https://127.0.0.1:{local.port}/hook", b"{}", {}, DENY)
    res = resolver(**{"hooks.example.com": "10.0.0.1"})
    with pytest.raises(UnsafeURL, match="private"):
        post_json("https://hooks.example.com/hook", b"{}", {}, DENY, resolver=res)
    assert local.seen == []


def test_post_json_pins_the_address() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    res = FakeResolver({"hooks.example.com": [[PUBLIC], ["127.0.0.1"]]})
    response = post_json("https://hooks.example.com/cb", b"{}", {}, DENY, client=mock_client(handler), resolver=res)
    assert response.status_code == 204 and res.calls == ["hooks.example.com"]
    assert sent[0].url.host == PUBLIC and sent[0].headers["host"] == "hooks.example.com"
    assert sent[0].extensions["sni_hostname"] == "hooks.example.com"
    assert sent[0].headers["content-type"] == "application/json"
