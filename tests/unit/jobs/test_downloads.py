"""Pure parts of result downloads: failure meaning, image sniffing, content-type acceptance, time limits."""

from __future__ import annotations

import io

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from config.limits import finalize_lease_s, finalize_time_limits
from config.settings import Settings
from imagegen.errors import ContentRefused, ErrorKind, FetchFailed, NotAnImage, UnsafeURL
from imagegen.jobs.downloads import classify, error_kind_for, has_pending, pending_entries
from imagegen.net.fetch import fetch
from imagegen.net.imagetypes import sniff_image_type
from imagegen.net.urls import FetchPolicy
from imagegen.simulator.filefaults import FilePlan, parse_file_plan
from imagegen.storage import image_info

PNG = io.BytesIO()
Image.new("RGB", (3, 2), (1, 2, 3)).save(PNG, "PNG")
PNG_BYTES = PNG.getvalue()
POLICY = FetchPolicy(allow_private=True)


def _fetch(content_type: str | None, body: bytes) -> tuple[str, bytes]:
    headers = {} if content_type is None else {"content-type": content_type}
    transport = httpx.MockTransport(lambda request: httpx.Response(200, headers=headers, content=body))
    with httpx.Client(transport=transport) as client:
        got = fetch("http://127.0.0.1/file", POLICY, client=client)
    return got.content_type, got.content


# --- classification ---------------------------------------------------------------------------------


@given(st.integers(min_value=100, max_value=599))
def test_http_failures_are_definite_only_for_not_there_4xx(code: int) -> None:
    failure = classify(FetchFailed(f"HTTP {code}", status_code=code))
    assert failure.definite == (400 <= code < 500 and code not in (408, 425, 429))
    assert not failure.refused and failure.http_status == code
    assert failure.kind == (ErrorKind.RESULT_UNAVAILABLE if failure.definite else ErrorKind.UPSTREAM_UNAVAILABLE)


def test_transport_wrong_type_and_unsafe() -> None:
    assert not classify(FetchFailed("transport error: ReadTimeout")).definite
    assert classify(ContentRefused("content type 'text/html' refused")).definite
    assert classify(NotAnImage("junk")).definite
    unsafe = classify(UnsafeURL("host is a loopback address"))
    assert unsafe.refused and not unsafe.definite and unsafe.message.startswith("result file refused: ")
    assert not classify(OSError(28, "No space left on device")).definite
    # The synchronous provider's answer: gone or junk is result_unavailable, the rest stays as it was.
    assert error_kind_for(NotAnImage("junk")) is ErrorKind.RESULT_UNAVAILABLE
    assert error_kind_for(UnsafeURL("too large")) is ErrorKind.UPSTREAM_UNAVAILABLE


def test_pending_entries() -> None:
    entries = pending_entries(["https://a/1.png", "https://a/2.png"])
    assert entries == [{"url": "https://a/1.png", "path": None}, {"url": "https://a/2.png", "path": None}]
    assert has_pending(entries) and not has_pending([]) and not has_pending(None)
    assert not has_pending([{"url": "u", "path": "/r/x.png"}])
    assert has_pending([{"url": "u", "path": "/r/x.png"}, {"url": "v", "path": None}])


# --- sniffing and storage checks --------------------------------------------------------------------


@given(st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a"]), st.binary(max_size=64))
def test_signatures_are_sniffed(signature: bytes, rest: bytes) -> None:
    assert sniff_image_type(signature + rest) in {"image/png", "image/jpeg", "image/gif"}


@given(st.binary(max_size=64))
def test_webp_and_non_images(data: bytes) -> None:
    assert sniff_image_type(b"RIFF" + data[:4].ljust(4, b"\0") + b"WEBP" + data) == "image/webp"
    if not data.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"RIFF")):
        assert sniff_image_type(data) is None


def test_image_info_reads_the_bytes_not_the_label() -> None:
    assert image_info(PNG_BYTES) == ("image/png", 3, 2)
    with pytest.raises(NotAnImage):
        image_info(b"\x89PNG\r\n\x1a\n but then nothing a decoder accepts")
    bmp = io.BytesIO()
    Image.new("RGB", (1, 1)).save(bmp, "BMP")
    with pytest.raises(NotAnImage, match="BMP"):
        image_info(bmp.getvalue())


# --- content types at fetch time --------------------------------------------------------------------


@pytest.mark.parametrize("declared", [None, "application/octet-stream", "binary/octet-stream", "Binary/Octet-Stream"])
def test_untyped_images_are_accepted_with_the_sniffed_type(declared: str | None) -> None:
    assert _fetch(declared, PNG_BYTES) == ("image/png", PNG_BYTES)


@pytest.mark.parametrize(
    ("declared", "body"),
    [("text/html", PNG_BYTES), ("application/octet-stream", b"<html>"), (None, b""), ("application/json", b"{}")],
)
def test_other_bodies_are_refused_as_content(declared: str | None, body: bytes) -> None:
    with pytest.raises(ContentRefused):
        _fetch(declared, body)


# --- time limits fit the download budget ------------------------------------------------------------


@given(
    st.floats(min_value=0.5, max_value=3600),
    st.floats(min_value=0.1, max_value=120),
    st.floats(min_value=0.1, max_value=120),
    st.floats(min_value=1, max_value=10_000),
)
def test_finalize_limits_cover_the_whole_allowed_download(
    budget: float, read: float, connect: float, lease: float
) -> None:
    # Built unvalidated: the point is the arithmetic, over timeouts start-up checks would refuse too.
    settings = Settings.model_construct(
        imagegen_download_max_s=budget,
        imagegen_http_read_timeout_s=read,
        imagegen_http_connect_timeout_s=connect,
        imagegen_submit_lease_s=lease,
    )
    soft, hard = finalize_time_limits(settings)
    assert soft > budget + connect + 2 * read  # the worst overrun of a fetch's own budget check
    assert hard > soft and finalize_lease_s(settings) > hard


# --- the simulator's file directives ----------------------------------------------------------------


def test_file_plan_parsing() -> None:
    assert parse_file_plan(()) == FilePlan()
    plan = parse_file_plan(("file503x2", "fileoctet", "slowfile:1.5"))
    assert [plan.status_for(i) for i in range(3)] == [503, 503, None]
    assert (plan.content_type, plan.trickle_s) == ("application/octet-stream", 1.5)
    assert parse_file_plan(("filenotype",)).content_type is None
    assert parse_file_plan(("FILE404",)).status_for(99) == 404
    assert parse_file_plan(("image2:file404",), "apidot") == FilePlan()
    assert parse_file_plan(("image2:filehtml",), "image2").body == "html"
    assert parse_file_plan(("file200", "file600", "slowfile:x")) == FilePlan()
