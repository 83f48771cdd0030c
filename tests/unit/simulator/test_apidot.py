"""Unit tests of the provider simulator (APIDot fake), in-process via TestClient."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from imagegen.simulator import SimSettings, create_app
from imagegen.simulator.directives import Fault, parse_directives, pick_fault
from imagegen.simulator.png import solid_png
from imagegen.simulator.settings import DurationSpec
from tests.support.clock import FakeClock

AUTH = {"Authorization": "Bearer test-key"}
T0 = 1_700_000_000.25


def make_client(duration: str | float = 0, clock: FakeClock | None = None, **kw: Any) -> TestClient:
    settings = SimSettings(duration_s=duration, **kw)
    if clock is None:
        return TestClient(create_app(settings))
    return TestClient(create_app(settings, clock=clock))


def submit(client: TestClient, prompt: str, headers: dict[str, str] = AUTH, **extra: Any) -> Response:
    body = {"model": extra.pop("model", "gpt-image-2"), "input": {"prompt": prompt, **extra}}
    r: Response = client.post("/api/generate/submit", json=body, headers=headers)
    return r


def submit_ok(client: TestClient, prompt: str, **extra: Any) -> str:
    r = submit(client, prompt, **extra)
    assert r.status_code == 200, r.text
    return str(r.json()["data"]["task_id"])


def status(client: TestClient, task_id: str, headers: dict[str, str] = AUTH) -> Response:
    r: Response = client.get(f"/api/generate/status/{task_id}", headers=headers)
    return r


# --------------------------------------------------------------------------- directives (pure)


def test_parse_directives_full_grammar() -> None:
    d = parse_directives(
        "a cat [[429x2:noheader]] [[500x3]] [[402]] [[POLL502x1]] [[pollmalformedx2]] [[slow:8.5]] "
        "[[dupwebhook:3]] [[shapeb]] [[code0]] [[processing]] [[detail]] [[hang:1.5]] [[whatever]]"
    )
    assert d.tokens == (
        "429x2:noheader", "500x3", "402", "POLL502x1", "pollmalformedx2", "slow:8.5",
        "dupwebhook:3", "shapeb", "code0", "processing", "detail", "hang:1.5", "whatever",
    )  # fmt: skip
    assert d.submit_faults == (
        Fault("429", 2, "none"),
        Fault("500", 3),
        Fault("402", None),
    )
    assert d.poll_faults == (Fault("502", 1), Fault("malformed", 2))
    assert d.duration_s == 8.5
    assert d.webhook_count == 3
    assert (d.shape_b, d.code0, d.processing, d.detail) == (True, True, True, True)
    assert (d.hang_s, d.hang_count) == (1.5, None)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("[[429x1:ra=3]]", Fault("429", 1, "seconds", 3)),
        ("[[429x1:date]]", Fault("429", 1, "date")),
        ("[[429]]", Fault("429", None, "default", 1)),
        ("[[code500x2]]", Fault("code500", 2)),
        ("[[malformed]]", Fault("malformed", None)),
        ("[[moderation]]", Fault("moderation", None)),
    ],
)
def test_parse_submit_fault_variants(prompt: str, expected: Fault) -> None:
    assert parse_directives(prompt).submit_faults == (expected,)


def test_parse_outcomes_and_unknown_tokens() -> None:
    assert parse_directives("[[statusfail]]").outcome == "statusfail"
    assert parse_directives("[[SafetyFail]]").outcome == "safetyfail"
    assert parse_directives("[[never]]").never is True
    assert parse_directives("[[instant]]").duration_s == 0.0
    assert parse_directives("[[nowebhook]]").webhook_count == 0
    d = parse_directives("plain [[418]] [[500:noheader]] [[nope]] [x] [[")
    assert d.tokens == ("418", "500:noheader", "nope")
    assert d.submit_faults == () and d.poll_faults == ()
    assert parse_directives("no directives") == parse_directives("")


def test_pick_fault_sequences_in_order() -> None:
    faults = (Fault("429", 2), Fault("500", 1))
    assert [pick_fault(faults, i) for i in range(4)] == [faults[0], faults[0], faults[1], None]
    assert pick_fault((Fault("402"),), 1000) == Fault("402")


def test_duration_spec_parse_and_env() -> None:
    assert DurationSpec.parse("0.5") == DurationSpec("fixed", 0.5)
    assert DurationSpec.parse("uniform:2:10") == DurationSpec("uniform", 2, 10)
    assert DurationSpec.parse("lognormal:3:0.3") == DurationSpec("lognormal", 3, 0.3)
    for bad in ("", "x", "uniform:5:1", "lognormal:0:1", "-1", "gamma:1:2"):
        with pytest.raises(ValueError):
            DurationSpec.parse(bad)
    s = SimSettings.from_env(
        {"SIM_DURATION_S": "uniform:2:10", "APIDOT_WEBHOOK_SECRET": "k", "SIM_WEBHOOK_RETRY_BASE_S": "0.1"}
    )
    assert (s.duration, s.webhook_secret, s.webhook_retry_base_s) == (
        DurationSpec("uniform", 2, 10),
        "k",
        0.1,
    )
    default = SimSettings.from_env({})
    assert default.duration == DurationSpec("lognormal", 3, 0.3) and default.webhook_secret == ""


def test_png_is_valid() -> None:
    data = solid_png(64, 64, (10, 20, 30))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR" and struct.unpack(">II", data[16:24]) == (64, 64)
    idat_len = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    raw = zlib.decompress(data[41 : 41 + idat_len])
    assert len(raw) == 64 * (1 + 64 * 3) and raw[1:4] == bytes((10, 20, 30))
    assert data.endswith(b"IEND\xaeB`\x82")


# --------------------------------------------------------------------------- lifecycle


def test_submit_and_progression_to_finished() -> None:
    clock = FakeClock(T0)
    c = make_client(duration=10, clock=clock)
    r = submit(c, "a cat")
    assert r.status_code == 200
    data = r.json()["data"]
    assert r.json()["code"] == 200 and data["status"] == "not_started"
    assert data["task_id"].startswith("task-unified-1700000000-") and len(data["task_id"].split("-")[-1]) == 8
    assert data["created_time"] == "2023-11-14T22:13:20"
    tid = data["task_id"]

    assert status(c, tid).json()["data"]["status"] == "not_started"
    clock.t += 5
    body = status(c, tid).json()
    assert body["data"]["status"] == "running" and body["data"]["progress"] == 49
    assert body["data"]["files"] == [] and body["data"]["error_message"] is None
    assert c.get(f"/files/{tid}.png").status_code == 404  # not there before it is finished
    clock.t += 5
    body = status(c, tid).json()
    assert body == {
        "code": 200,
        "data": {
            "task_id": tid,
            "status": "finished",
            "progress": 100,
            "created_time": "2023-11-14T22:13:20",
            "files": [{"file_url": f"http://testserver/files/{tid}.png", "file_type": "image"}],
            "error_message": None,
        },
    }
    f = c.get(f"/files/{tid}.png")
    assert f.status_code == 200 and f.headers["content-type"] == "image/png"
    assert f.content.startswith(b"\x89PNG")


def test_instant_and_slow_directives_override_default_duration() -> None:
    clock = FakeClock(T0)
    c = make_client(duration="lognormal:3:0.3", clock=clock)
    assert status(c, submit_ok(c, "x [[instant]]")).json()["data"]["status"] == "finished"
    slow = submit_ok(c, "x [[slow:8]]")
    clock.t += 7.9
    assert status(c, slow).json()["data"]["status"] == "running"
    clock.t += 0.2
    assert status(c, slow).json()["data"]["status"] == "finished"


@pytest.mark.parametrize(
    ("directive", "message"),
    [
        ("statusfail", "Generation failed: upstream model error"),
        ("safetyfail", "Image rejected by the safety system"),
    ],
)
def test_failed_outcomes(directive: str, message: str) -> None:
    c = make_client()
    tid = submit_ok(c, f"x [[{directive}]]")
    data = status(c, tid).json()["data"]
    assert data["status"] == "failed" and data["error_message"] == message and data["files"] == []
    assert c.get(f"/files/{tid}.png").status_code == 404


def test_never_stays_running_until_forced() -> None:
    clock = FakeClock(T0)
    c = make_client(duration=1, clock=clock)
    tid = submit_ok(c, "x [[never]]")
    clock.t += 3600
    data = status(c, tid).json()["data"]
    assert (data["status"], data["progress"]) == ("running", 50)
    forced = c.post(f"/_sim/tasks/{tid}/finish")
    assert forced.status_code == 200 and forced.json()["data"]["status"] == "finished"
    assert status(c, tid).json()["data"]["status"] == "finished"
    assert c.post("/_sim/tasks/nope/finish").status_code == 404


def test_shape_b_code0_and_processing() -> None:
    clock = FakeClock(T0)
    c = make_client(duration=10, clock=clock)
    tid = submit_ok(c, "x [[shapeb]]")
    clock.t += 10
    data = status(c, tid).json()["data"]
    assert "files" not in data and data["output"]["files"][0]["file_type"] == "image"

    r = submit(c, "y [[code0]] [[processing]]")
    assert r.json()["code"] == 0
    tid = r.json()["data"]["task_id"]
    seen = []
    for _ in range(3):
        body = status(c, tid).json()
        assert body["code"] == 0
        seen.append(body["data"]["status"])
        clock.t += 5
    assert seen == ["queued", "processing", "finished"]


def test_global_shape_and_duration_config() -> None:
    clock = FakeClock(T0)
    c = make_client(duration=100, clock=clock)
    assert c.post("/_sim/config", json={"shape": "B", "duration_s": 0}).json() == {
        "submit_fault": None,
        "duration_s": 0.0,
        "shape": "B",
        "submit_rate": None,
        "submit_rate_retry_after": True,
    }
    data = status(c, submit_ok(c, "x")).json()["data"]
    assert data["status"] == "finished" and "output" in data
    c.post("/_sim/config", json={"shape": "A", "duration_s": None})
    assert status(c, submit_ok(c, "y")).json()["data"]["status"] == "not_started"


# --------------------------------------------------------------------------- submit faults

EXPECTED_ERRORS = {
    400: {"code": 400, "error": {"message": "invalid request", "type": "invalid_request_error"}},
    401: {
        "code": 401,
        "error": {"message": "Unauthorized - Invalid API key", "type": "authentication_error"},
    },
    402: {"error": {"message": "Insufficient credits to process this request", "type": "insufficient_credits"}},
    403: {"code": 403, "error": {"message": "Forbidden", "type": "permission_error"}},
    429: {"code": 429, "error": {"message": "rate limited", "type": "rate_limited"}},
    500: {"code": 500, "error": {"message": "upstream error", "type": "server_error"}},
    502: {"code": 502, "error": {"message": "upstream error", "type": "server_error"}},
    503: {"code": 503, "error": {"message": "upstream error", "type": "server_error"}},
    504: {"code": 504, "error": {"message": "upstream error", "type": "server_error"}},
}


@pytest.mark.parametrize("code", sorted(EXPECTED_ERRORS))
def test_submit_fault_counts_per_prompt(code: int) -> None:
    c = make_client()
    prompt = f"x [[{code}x2]]"
    for _ in range(2):
        r = submit(c, prompt)
        assert r.status_code == code and r.json() == EXPECTED_ERRORS[code]
    assert submit(c, prompt).status_code == 200
    # Another prompt text has its own counter.
    assert submit(c, prompt + " again").status_code == code


def test_submit_fault_without_count_is_permanent_and_faults_chain() -> None:
    c = make_client()
    assert [submit(c, "x [[402]]").status_code for _ in range(4)] == [402] * 4
    assert [submit(c, "y [[429x1]] [[503x1]]").status_code for _ in range(3)] == [429, 503, 200]


def test_retry_after_variants() -> None:
    clock = FakeClock(1_700_000_000.4)
    c = make_client(clock=clock)
    assert submit(c, "a [[429x1]]").headers["retry-after"] == "1"
    assert "retry-after" not in submit(c, "b [[429x1:noheader]]").headers
    assert submit(c, "c [[429x1:ra=3]]").headers["retry-after"] == "3"
    value = submit(c, "d [[429x1:date]]").headers["retry-after"]
    assert email.utils.parsedate_to_datetime(value).timestamp() == 1_700_000_003
    assert value.endswith("GMT")
    assert "retry-after" not in submit(c, "e [[503x1]]").headers


def test_detail_style_errors() -> None:
    c = make_client()
    r = submit(c, "x [[500x1]] [[detail]]")
    assert r.status_code == 500 and r.json() == {"detail": "upstream error"}
    r = submit(c, "x [[detail]]", headers={"Authorization": "Bearer invalid"})
    assert r.status_code == 401 and r.json() == {"detail": "Unauthorized - Invalid API key"}


def test_code500_malformed_moderation() -> None:
    c = make_client()
    r = submit(c, "x [[code500x1]]")
    assert r.status_code == 200
    assert r.json() == {"code": 500, "error": {"message": "internal", "type": "server_error"}}
    assert submit(c, "x [[code500x1]]").json()["code"] == 200

    r = submit(c, "y [[malformedx1]]")
    assert r.status_code == 200 and r.text == "<html>oops" and r.headers["content-type"].startswith("text/html")
    assert submit(c, "y [[malformedx1]]").json()["code"] == 200

    r = submit(c, "z [[moderation]]")
    assert r.status_code == 400
    assert r.json() == {
        "code": 400,
        "error": {
            "message": "Your request was rejected by the safety system",
            "type": "content_policy_violation",
        },
    }


def test_hang_delays_the_answer_but_creates_the_task() -> None:
    c = make_client()
    start = time.monotonic()
    r = submit(c, "x [[hangx1:0.3]]")
    assert time.monotonic() - start >= 0.3 and r.status_code == 200
    start = time.monotonic()
    submit(c, "x [[hangx1:0.3]]")
    assert time.monotonic() - start < 0.3


# --------------------------------------------------------------------------- status faults


def test_poll_faults_count_per_task() -> None:
    c = make_client()
    prompt = "x [[poll500x2]] [[poll429x1]] [[pollmalformedx1]] [[poll401x1]] [[poll402x1]] [[poll502x1]]"
    t1, t2 = submit_ok(c, prompt), submit_ok(c, prompt)
    codes = []
    for _ in range(8):
        r = status(c, t1)
        codes.append(r.status_code if "json" in r.headers["content-type"] else "html")
        if r.status_code == 429:
            assert r.headers["retry-after"] == "1"
    assert codes == [500, 500, 429, "html", 401, 402, 502, 200]
    assert status(c, t2).status_code == 500  # t2 has its own counter


def test_poll_fault_does_not_apply_to_submit() -> None:
    c = make_client()
    assert submit(c, "x [[poll500]]").status_code == 200


# --------------------------------------------------------------------------- auth & validation


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer invalid"}, {"Authorization": "Basic abc"}])
def test_auth_rejected(headers: dict[str, str]) -> None:
    c = make_client()
    r = submit(c, "x", headers=headers)
    assert r.status_code == 401 and r.json() == EXPECTED_ERRORS[401]
    tid = submit_ok(c, "x")
    assert status(c, tid, headers=headers).status_code == 401


def test_unknown_task_is_404() -> None:
    r = status(make_client(), "task-unified-0-nothing0")
    assert r.status_code == 404
    assert r.json() == {"code": 404, "error": {"message": "task not found", "type": "not_found"}}


@pytest.mark.parametrize(
    "body",
    [
        {"model": "gpt-image-2", "input": {"prompt": ""}},
        {"model": "gpt-image-2", "input": {}},
        {"model": "gpt-image-2"},
        {"input": {"prompt": "x"}},
        {"model": "gpt-image-2", "input": {"prompt": "x", "n": 1}},
        {"model": "gpt-image-2", "input": {"prompt": "x", "quality": "ultra"}},
        {"model": "gpt-image-2", "input": {"prompt": "x", "size": "7:1"}},
        {"model": "gpt-image-2", "input": {"prompt": "x", "size": "2304x2048"}},
        {"model": "gpt-image-2", "input": {"prompt": "x", "size": "2304x2048", "resolution": "1K"}},
        {"model": "gpt-image-2", "input": {"prompt": "x", "resolution": "8K"}},
        {"model": "gpt-image-2", "input": {"prompt": "x", "image_urls": ["https://a/b.png"]}},
        {"model": "gpt-image-2-edit", "input": {"prompt": "x"}},
        {"model": "gpt-image-2-edit", "input": {"prompt": "x", "image_urls": []}},
        {"model": "gpt-image-2-edit", "input": {"prompt": "x", "image_urls": "https://a/b.png"}},
        [1, 2],
    ],
)
def test_validation_400(body: Any) -> None:
    r = make_client().post("/api/generate/submit", json=body, headers=AUTH)
    assert r.status_code == 400
    assert r.json()["code"] == 400 and r.json()["error"]["type"] == "invalid_request_error"


def test_non_json_body_is_400() -> None:
    r = make_client().post("/api/generate/submit", content=b"not json", headers=AUTH)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [
        {
            "model": "gpt-image-2",
            "input": {"prompt": "x", "quality": "high", "size": "16:9", "resolution": "4K"},
        },
        {"model": "gpt-image-2", "input": {"prompt": "x", "size": "2304x2048", "resolution": "2K"}},
        {"model": "gpt-image-2", "input": {"prompt": "x", "image_urls": []}},
        {"model": "gpt-image-2-edit", "input": {"prompt": "x", "image_urls": ["https://a/b.png"]}},
        {"model": "nano-banana-2", "input": {"prompt": "x", "image_urls": ["https://a/b.png"]}},
    ],
)
def test_valid_bodies_accepted(body: Any) -> None:
    assert make_client().post("/api/generate/submit", json=body, headers=AUTH).status_code == 200


# --------------------------------------------------------------------------- record & config


def test_request_record_and_filters() -> None:
    c = make_client()
    assert submit(c, "one [[429x1]] [[zzz]]").status_code == 429
    tid = submit_ok(c, "one [[429x1]] [[zzz]]")
    other = submit_ok(c, "two")
    status(c, tid)
    status(c, other)
    c.get(f"/files/{tid}.png")
    records = c.get("/_sim/requests").json()
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["endpoint"] for r in records] == ["submit", "submit", "submit", "status", "status", "file"]
    first = records[0]
    assert first == {
        "seq": 1,
        "time": first["time"],
        "provider": "apidot",
        "method": "POST",
        "path": "/api/generate/submit",
        "endpoint": "submit",
        "task_id": None,
        "prompt": "one [[429x1]] [[zzz]]",
        "directives": ["429x1", "zzz"],
        "status_code": 429,
        "code": 429,
        "retry_after": "1",
    }
    assert records[3]["prompt"] == "one [[429x1]] [[zzz]]" and records[3]["task_id"] == tid
    assert records[3]["path"] == f"/api/generate/status/{tid}" and records[3]["code"] == 200

    assert len(c.get("/_sim/requests", params={"prompt_contains": "one"}).json()) == 4
    assert [r["endpoint"] for r in c.get("/_sim/requests", params={"task_id": tid}).json()] == [
        "submit",
        "status",
        "file",
    ]
    assert len(c.get("/_sim/requests", params={"endpoint": "status"}).json()) == 2
    assert c.delete("/_sim/requests").status_code == 200
    assert c.get("/_sim/requests").json() == []
    assert status(c, tid).status_code == 200  # tasks survive clearing the record


def test_global_submit_fault_config() -> None:
    c = make_client()
    assert c.get("/_sim/config").json() == {
        "submit_fault": None,
        "duration_s": None,
        "shape": "A",
        "submit_rate": None,
        "submit_rate_retry_after": True,
    }
    assert c.post("/_sim/config", json={"submit_fault": "402"}).json()["submit_fault"] == "402"
    assert submit(c, "x [[500x1]]").status_code == 402
    assert submit(c, "y").json() == EXPECTED_ERRORS[402]
    assert submit(c, "z").status_code == 402
    c.post("/_sim/config", json={"submit_fault": "429"})
    assert submit(c, "z").headers["retry-after"] == "1"
    c.post("/_sim/config", json={"submit_fault": None})
    # The global fault did not consume the directive's count.
    assert submit(c, "x [[500x1]]").status_code == 500
    assert submit(c, "x [[500x1]]").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"submit_fault": "418"},
        {"shape": "C"},
        {"duration_s": -1},
        {"duration_s": "x"},
        {"bogus": 1},
        {"submit_rate": 0},
    ],
)
def test_bad_config_is_rejected_without_change(body: Any) -> None:
    c = make_client()
    assert c.post("/_sim/config", json={"submit_fault": 500} | body).status_code == 400
    assert c.get("/_sim/config").json()["submit_fault"] is None


def test_health_and_reset() -> None:
    c = make_client()
    assert c.get("/_sim/health").json() == {"ok": True}
    tid = submit_ok(c, "x")
    c.post("/_sim/config", json={"shape": "B"})
    assert c.post("/_sim/reset").status_code == 200
    assert status(c, tid).status_code == 404
    assert c.get("/_sim/config").json()["shape"] == "A"


# --------------------------------------------------------------------------- webhooks


@dataclass
class Receiver:
    """A tiny HTTP server that records webhook deliveries."""

    fail_first: int = 0
    calls: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.calls) >= n:
                    return list(self.calls)
            time.sleep(0.02)
        with self.lock:
            return list(self.calls)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with rec.lock:
                rec.calls.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
                code = 500 if len(rec.calls) <= rec.fail_first else 200
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook?token=abc"
    yield rec
    server.shutdown()
    server.server_close()


def expected_signature(secret: str, task_id: str, timestamp: str) -> str:
    mac = hmac.new(secret.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()


def submit_with_callback(c: TestClient, prompt: str, url: str) -> str:
    body = {"model": "gpt-image-2", "callback_url": url, "input": {"prompt": prompt}}
    r = c.post("/api/generate/submit", json=body, headers=AUTH)
    assert r.status_code == 200
    return str(r.json()["data"]["task_id"])


@pytest.mark.timeout(20)
def test_webhook_signed_and_delivered_without_polling(receiver: Receiver) -> None:
    c = make_client(duration=0, webhook_secret="s3cret", webhook_retry_base_s=0.01)
    tid = submit_with_callback(c, "x [[shapeb]]", receiver.url)
    calls = receiver.wait_for(1)
    assert len(calls) == 1
    call = calls[0]
    headers = {k.lower(): v for k, v in call["headers"].items()}
    assert call["path"] == "/hook?token=abc"
    assert "authorization" not in headers and headers["content-type"] == "application/json"
    assert abs(int(headers["x-webhook-timestamp"]) - time.time()) < 5
    assert headers["x-webhook-signature"] == expected_signature("s3cret", tid, headers["x-webhook-timestamp"])
    # Webhook body is always Shape A, even for a Shape B task.
    assert call["body"]["data"]["task_id"] == tid and call["body"]["data"]["status"] == "finished"
    assert call["body"]["data"]["files"][0]["file_type"] == "image"
    status(c, tid)  # a later poll does not deliver again
    time.sleep(0.2)
    assert len(receiver.wait_for(2, timeout=0.3)) == 1
    hooks = c.get("/_sim/requests", params={"endpoint": "webhook"}).json()
    assert len(hooks) == 1 and hooks[0]["status_code"] == 200 and hooks[0]["method"] == "POST"
    assert hooks[0]["path"] == receiver.url and hooks[0]["task_id"] == tid and hooks[0]["prompt"] == "x [[shapeb]]"


@pytest.mark.timeout(20)
def test_webhook_after_slow_task_nobody_polls(receiver: Receiver) -> None:
    c = make_client(duration=0.3, webhook_retry_base_s=0.01)
    start = time.monotonic()
    tid = submit_with_callback(c, "slow one", receiver.url)
    calls = receiver.wait_for(1)
    assert len(calls) == 1 and time.monotonic() - start >= 0.25
    # Empty secret still signs (with an empty key).
    ts = calls[0]["headers"]["X-Webhook-Timestamp"]
    assert calls[0]["headers"]["X-Webhook-Signature"] == expected_signature("", tid, ts)


@pytest.mark.timeout(20)
def test_dupwebhook_delivers_three_signed_copies(receiver: Receiver) -> None:
    c = make_client(duration=0, webhook_secret="k", webhook_retry_base_s=0.01)
    tid = submit_with_callback(c, "x [[dupwebhook:3]]", receiver.url)
    calls = receiver.wait_for(3)
    time.sleep(0.2)
    assert len(receiver.wait_for(4, timeout=0.2)) == 3
    for call in calls:
        ts = call["headers"]["X-Webhook-Timestamp"]
        assert call["headers"]["X-Webhook-Signature"] == expected_signature("k", tid, ts)
        assert call["body"]["data"]["status"] == "finished"


@pytest.mark.timeout(20)
def test_webhook_retries_on_failure(receiver: Receiver) -> None:
    receiver.fail_first = 2
    c = make_client(duration=0, webhook_retry_base_s=0.01)
    tid = submit_with_callback(c, "retry me", receiver.url)
    assert len(receiver.wait_for(3)) == 3
    time.sleep(0.1)
    hooks = c.get("/_sim/requests", params={"endpoint": "webhook", "task_id": tid}).json()
    assert [h["status_code"] for h in hooks] == [500, 500, 200]


@pytest.mark.timeout(20)
def test_webhook_gives_up_after_five_retries() -> None:
    c = make_client(duration=0, webhook_retry_base_s=0.005)
    # A port that was free a moment ago: connection refused, recorded as status 0.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tid = submit_with_callback(c, "nobody home", f"http://127.0.0.1:{port}/hook")
    deadline = time.monotonic() + 10
    hooks: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        hooks = c.get("/_sim/requests", params={"endpoint": "webhook", "task_id": tid}).json()
        if len(hooks) >= 6:
            break
        time.sleep(0.05)
    time.sleep(0.2)
    hooks = c.get("/_sim/requests", params={"endpoint": "webhook", "task_id": tid}).json()
    assert [h["status_code"] for h in hooks] == [0] * 6


@pytest.mark.timeout(20)
def test_forced_finish_triggers_webhook_and_nowebhook_suppresses(receiver: Receiver) -> None:
    c = make_client(duration=0, webhook_retry_base_s=0.01)
    quiet = submit_with_callback(c, "q [[nowebhook]]", receiver.url)
    tid = submit_with_callback(c, "n [[never]] [[statusfail]]", receiver.url)
    status(c, quiet)
    time.sleep(0.3)
    assert receiver.wait_for(1, timeout=0.2) == []
    c.post(f"/_sim/tasks/{tid}/finish")
    calls = receiver.wait_for(1)
    assert len(calls) == 1 and calls[0]["body"]["data"]["task_id"] == tid
    assert calls[0]["body"]["data"]["status"] == "failed"
    assert calls[0]["body"]["data"]["error_message"] == "Generation failed: upstream model error"


def test_code0_applies_to_webhook_body(receiver: Receiver) -> None:
    c = make_client(duration=0, webhook_retry_base_s=0.01)
    submit_with_callback(c, "z [[code0]]", receiver.url)
    calls = receiver.wait_for(1)
    assert calls[0]["body"]["code"] == 0


def test_submit_rate_limit_answers_429_beyond_the_rate() -> None:
    clock = FakeClock(T0)
    c = make_client(clock=clock)
    c.post("/_sim/config", json={"submit_rate": 2})  # 2/s: a bucket of 2, refilled every 0.5 s
    assert [submit(c, f"r{i}").status_code for i in range(3)] == [200, 200, 429]
    clock.t += 0.5
    assert [submit(c, f"s{i}").status_code for i in range(2)] == [200, 429]


def test_submit_rate_limit_can_omit_retry_after() -> None:
    clock = FakeClock(T0)
    c = make_client(clock=clock)
    c.post("/_sim/config", json={"submit_rate": 1, "submit_rate_retry_after": False})
    assert submit(c, "a").status_code == 200
    refused = submit(c, "b")
    assert refused.status_code == 429 and "retry-after" not in refused.headers
    assert c.post("/_sim/config", json={"submit_rate_retry_after": "no"}).status_code == 400
