"""Body caps on a real server (``imagegen api`` under uvicorn): 413 before a large body is read, and a
webhook with a bad token answered before its body is read at all."""

from __future__ import annotations

import select
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from config.settings import Settings
from imagegen import devstack
from imagegen.webhooks.inbound import callback_token
from tests.support.api import UNREACHABLE_REDIS

MIB = 1024 * 1024
HUGE = 64 * MIB


CALLBACK_KEY = Settings(imagegen_callback_token_secret="test-callback-key").callback_token_key


class Server:
    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import os

    home = tmp_path_factory.mktemp("api-home")
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{home}/api.db",
        "REDIS_URL": UNREACHABLE_REDIS,
        "IMAGEGEN_HOME": str(home),
        "IMAGEGEN_API_TOKENS": "",
        "IMAGEGEN_CALLBACK_TOKEN_SECRET": "test-callback-key",
        "APIDOT_API_KEY": "sk-test",
    }
    port = devstack.free_port()
    proc = devstack.start_api(env, port=port, log_dir=Path(home))
    try:
        yield Server(port)
    finally:
        proc.stop()


def _chunks(total: int, size: int = 64 * 1024, *, chunked: bool) -> Iterator[bytes]:
    piece = b"[" + b"1," * (size // 2 - 1) + b"1"  # looks like the start of a JSON array
    sent = 0
    while sent < total:
        data = piece[: total - sent]
        sent += len(data)
        yield (f"{len(data):x}\r\n".encode() + data + b"\r\n") if chunked else data
    if chunked:
        yield b"0\r\n\r\n"


def _post_streaming(port: int, path: str, *, total: int, chunked: bool, timeout: float = 60) -> tuple[int, int, float]:
    """POST ``total`` body bytes as fast as the server takes them; stop at its answer.

    Returns ``(status, body bytes the client managed to send before the answer, seconds)``.
    """
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{framing}\r\n\r\n".encode()
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    started = time.monotonic()
    body = _chunks(total, chunked=chunked)
    pending, sent, answer = head, -len(head), b""
    try:
        while time.monotonic() - started < timeout and b"\r\n\r\n" not in answer:
            writable = [sock] if pending else []
            readable, can_write, _ = select.select([sock], writable, [], 0.5)
            if readable:
                try:
                    data = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not data:
                    break
                answer += data
                continue
            if can_write:
                try:
                    n = sock.send(pending)
                except (BrokenPipeError, ConnectionResetError):
                    pending = b""
                    continue
                sent += n
                pending = pending[n:] or next(body, b"")
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 "), f"no answer after {sent} bytes: {answer[:200]!r}"
    return int(answer.split(b" ", 2)[1]), max(sent, 0), time.monotonic() - started


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_intake_body_over_the_cap_is_413_without_reading_it_all(server: Server, chunked: bool) -> None:
    status, sent, seconds = _post_streaming(server.port, "/v1/jobs", total=HUGE, chunked=chunked)
    print(f"intake, chunked={chunked}: {status} after {sent / MIB:.1f} MiB sent, {seconds:.2f} s")
    assert status == 413
    # The server stopped reading at the 2 MiB cap; socket buffers take a few MiB more at most.
    assert sent < 16 * MIB, f"{sent / MIB:.1f} MiB were sent before the answer"
    assert seconds < 30


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_webhook_with_a_bad_token_is_401_before_its_body_is_read(server: Server, chunked: bool) -> None:
    path = f"/webhooks/apidot?token={uuid.uuid4()}.bogus"
    # Under the webhook cap when declared, so only the token check can answer early.
    total = HUGE if chunked else 60 * 1024
    status, sent, seconds = _post_streaming(server.port, path, total=total, chunked=chunked)
    print(f"webhook, chunked={chunked}: {status} after {sent / MIB:.1f} MiB sent, {seconds:.2f} s")
    assert status == 401
    if chunked:
        assert sent < 16 * MIB, f"{sent / MIB:.1f} MiB were sent before the answer"


def test_webhook_with_a_good_token_is_capped_at_64_kib(server: Server) -> None:
    token = callback_token(CALLBACK_KEY, str(uuid.uuid4()))
    for chunked in (False, True):
        status, _, _ = _post_streaming(server.port, f"/webhooks/apidot?token={token}", total=65 * 1024, chunked=chunked)
        assert status == 413
    small = httpx.post(f"{server.url}/webhooks/apidot?token={token}", content=b'{"task_id": "t-1"}', timeout=10)
    assert small.status_code == 404  # read, verified, and no such task: the cap let it through


def test_bodies_under_the_cap_and_deep_json_on_a_real_server(server: Server) -> None:
    ok = httpx.post(f"{server.url}/v1/jobs", json={"prompt": "a cat", "metadata": {"x": "y" * 1000}}, timeout=10)
    assert ok.status_code == 202
    for levels in (40, 500, 50_000):
        body = '{"prompt": "a cat", "metadata": ' + '{"a":' * (levels - 1) + "{}" + "}" * (levels - 1) + "}"
        response = httpx.post(
            f"{server.url}/v1/jobs", content=body, headers={"Content-Type": "application/json"}, timeout=10
        )
        assert response.status_code == 422, (levels, response.text[:200])
        detail = response.json()["detail"]
        assert [d["loc"] for d in detail] == [["body", "metadata"]]
        assert detail[0]["msg"] == "metadata: nested too deeply"
    deep = '{"a":' * 5000 + "{}" + "}" * 5000
    batch = '{"requests": [{"prompt": "x"}, {"prompt": "y", "metadata": ' + deep + "}]}"
    response = httpx.post(
        f"{server.url}/v1/batches", content=batch, headers={"Content-Type": "application/json"}, timeout=10
    )
    assert response.status_code == 422
    assert [d["loc"] for d in response.json()["detail"]] == [["body", "requests", 1, "metadata"]]
