"""OpenAI sizes and qualities in each provider's terms, and job endings as OpenAI errors (pure)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegen.api.openai_shapes import (
    OpenAICompatError,
    job_key,
    map_quality,
    map_size,
    parse_call,
    to_requests,
)
from imagegen.constants import PROVIDERS
from imagegen.request import openai_size_problem
from imagegen.routes import OPENAI_TO_RATIO

_WXH = re.compile(r"^(\d+)x(\d+)$")


def test_the_named_sizes_map_to_apidot_ratios_at_1k() -> None:
    assert map_size("1024x1024", "apidot") == ("1:1", None)
    assert map_size("1536x1024", "apidot") == ("3:2", None)
    assert map_size("1024x1536", "apidot") == ("2:3", None)
    assert map_size("auto", "apidot") == ("auto", None)
    assert map_size(None, "apidot") == (None, None)


def test_custom_sizes_take_a_tier_by_their_long_edge() -> None:
    assert map_size("2048x1152", "apidot") == ("2048x1152", "2K")
    assert map_size("3840x2160", "apidot") == ("3840x2160", "4K")
    assert map_size("2160x3840", "apidot") == ("2160x3840", "4K")


@pytest.mark.parametrize("provider", ["openai", "image2"])
def test_openai_shaped_providers_take_sizes_as_they_are(provider: str) -> None:
    assert map_size("1536x1024", provider) == ("1536x1024", None)
    assert map_size("2048x1152", provider) == ("2048x1152", None)


@pytest.mark.parametrize(
    ("quality", "provider", "mapped"),
    [
        ("low", "apidot", "low"),
        ("medium", "apidot", "medium"),
        ("high", "image2", "high"),
        ("auto", "apidot", None),
        ("auto", "image2", None),
        ("auto", "openai", "auto"),
        ("standard", "apidot", "medium"),
        ("hd", "openai", "high"),
        (None, "apidot", None),
    ],
)
def test_qualities(quality: str | None, provider: str, mapped: str | None) -> None:
    assert map_quality(quality, provider) == mapped


def test_the_model_follows_the_provider() -> None:
    assert parse_call({"prompt": "x", "model": "dall-e-3"}, "apidot").fields["model"] == "gpt-image-2"
    assert parse_call({"prompt": "x"}, "apidot", edit=True).fields["model"] == "gpt-image-2-edit"
    assert parse_call({"prompt": "x", "model": "nano-banana-2"}, "apidot").fields["model"] == "nano-banana-2"
    assert parse_call({"prompt": "x", "model": "gpt-image-1"}, "openai").fields["model"] == "gpt-image-1"
    assert parse_call({"prompt": "x", "model": "dall-e-3"}, "openai").response_format == "url"
    assert parse_call({"prompt": "x"}, "openai").response_format == "b64_json"


def test_keys_per_image() -> None:
    assert [job_key("k", i) for i in range(3)] == ["k", "k#1", "k#2"]
    assert job_key(None, 1) is None


_sides = st.integers(min_value=1, max_value=5000)
_sizes = st.one_of(
    st.sampled_from(["auto", "1024x1024", "1536x1024", "1024x1536", "256x256", "1792x1024", "square", ""]),
    st.builds(lambda w, h: f"{w}x{h}", _sides, _sides),
    st.builds(lambda w, h: f"{16 * w}x{16 * h}", st.integers(1, 250), st.integers(1, 250)),
    st.text(max_size=12),
)


@settings(max_examples=600, deadline=None)
@given(size=_sizes, quality=st.sampled_from([None, "low", "medium", "high", "auto", "standard", "hd"]))
@pytest.mark.parametrize("provider", PROVIDERS)
def test_any_size_is_refused_naming_size_or_queued_as_a_valid_request(
    provider: str, size: str, quality: str | None
) -> None:
    """Whatever OpenAI size arrives: a 400 naming ``size``, or requests the core validator accepts."""
    body = {"prompt": "x", "size": size, **({"quality": quality} if quality else {})}
    try:
        (request,) = to_requests(parse_call(body, provider), tenant="a")
    except OpenAICompatError as exc:
        assert (exc.status, exc.param) == (400, "size"), exc.message
        return
    # Accepted: exactly the sizes OpenAI accepts for gpt-image-2, in the provider's terms.
    assert openai_size_problem(size, "gpt-image-2") is None
    if provider == "apidot":
        match = _WXH.match(size)
        if size in OPENAI_TO_RATIO:
            assert (request.size, request.resolution) == (OPENAI_TO_RATIO[size], None)
        elif match:
            assert request.size == size and request.resolution in ("2K", "4K")
            assert (request.resolution == "4K") == (max(int(match[1]), int(match[2])) > 2048)
    else:
        assert (request.size, request.resolution) == (size, None)
    assert request.quality in (None, "low", "medium", "high", "auto")
