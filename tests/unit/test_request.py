"""Request validation: every rule, the field each error names, and fuzzing of from_dict."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegen.errors import FieldError, RequestInvalid
from imagegen.request import (
    APIDOT_SIZES,
    MAX_DEADLINE_S,
    MAX_IMAGE_URLS,
    MAX_METADATA_BYTES,
    MAX_PROMPT,
    OPENAI_SIZES,
    ImageRequest,
    openai_size_problem,
    url_problem,
)

IMG = "https://example.com/a.png"
IMG2 = "https://cdn.example.org/b.jpg"
REAL_FIELDS = [f.name for f in dataclasses.fields(ImageRequest) if f.name != "allow_private_urls"]


def errors_of(**kwargs: Any) -> list[FieldError]:
    kwargs.setdefault("prompt", "a cat")
    with pytest.raises(RequestInvalid) as info:
        ImageRequest(**kwargs)
    return info.value.errors


def fields_of(**kwargs: Any) -> list[str]:
    return [e.field for e in errors_of(**kwargs)]


def dict_errors(data: Any, **kwargs: Any) -> list[FieldError]:
    with pytest.raises(RequestInvalid) as info:
        ImageRequest.from_dict(data, **kwargs)
    return info.value.errors


def dict_fields(data: Any, **kwargs: Any) -> list[str]:
    return [e.field for e in dict_errors(data, **kwargs)]


# --- defaults and the happy path ------------------------------------------------------------------


def test_defaults() -> None:
    req = ImageRequest(prompt="a cat")
    assert req.provider == "apidot"
    assert req.model == "gpt-image-2"
    assert req.priority == "interactive"
    assert (req.quality, req.size, req.resolution, req.image_urls, req.deadline_s) == (None,) * 5
    assert (req.idempotency_key, req.callback_url, req.metadata, req.fallback) == (None,) * 4
    assert req.to_dict() == {
        "prompt": "a cat",
        "provider": "apidot",
        "model": "gpt-image-2",
        "priority": "interactive",
    }


def test_a_full_valid_apidot_request() -> None:
    req = ImageRequest(
        prompt="a cat",
        model="gpt-image-2-edit",
        quality="high",
        size="3:2",
        resolution="1K",
        image_urls=[IMG, IMG2],
        deadline_s=600,
        idempotency_key="k-1",
        priority="batch",
        callback_url="https://hooks.example.com/done",
        metadata={"team": "ads", "n": 3},
        fallback=["openai", "image2"],
    )
    assert req.image_urls == (IMG, IMG2)
    assert req.fallback == ("openai", "image2")
    assert req.to_dict()["image_urls"] == [IMG, IMG2]
    assert req.to_dict()["fallback"] == ["openai", "image2"]


def test_request_is_frozen() -> None:
    req = ImageRequest(prompt="a cat")
    with pytest.raises(dataclasses.FrozenInstanceError):
        req.prompt = "a dog"  # type: ignore[misc]


def test_request_invalid_message_lists_every_field() -> None:
    with pytest.raises(RequestInvalid) as info:
        ImageRequest(prompt="", provider="nope")
    assert [e.field for e in info.value.errors] == ["provider", "prompt"]
    assert str(info.value).startswith("provider: must be one of apidot, openai, image2; prompt: ")


# --- provider, model, prompt, priority ------------------------------------------------------------


@pytest.mark.parametrize("provider", ["apidot", "openai", "image2"])
def test_known_providers(provider: str) -> None:
    assert ImageRequest(prompt="x", provider=provider).provider == provider


@pytest.mark.parametrize("provider", ["", "APIDOT", "dalle", "openai "])
def test_unknown_provider(provider: str) -> None:
    assert fields_of(provider=provider) == ["provider"]


@pytest.mark.parametrize("model", ["gpt-image-2", "nano-banana", "seedream-4.0", "black-forest-labs/flux-1.1-pro", "a"])
def test_other_models_pass_through(model: str) -> None:
    assert ImageRequest(prompt="x", model=model).model == model


@pytest.mark.parametrize("model", ["", " gpt-image-2", "gpt image 2", "-x", "m" * 201, "gpt-image-2;rm"])
def test_bad_model_ids(model: str) -> None:
    assert "model" in fields_of(model=model)


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_prompt(prompt: str) -> None:
    assert fields_of(prompt=prompt) == ["prompt"]


def test_prompt_length_limit() -> None:
    assert ImageRequest(prompt="p" * MAX_PROMPT).prompt == "p" * MAX_PROMPT
    errors = errors_of(prompt="p" * (MAX_PROMPT + 1))
    assert errors == [FieldError("prompt", "must be at most 32000 characters (got 32001)")]
    assert MAX_PROMPT == 32_000


@pytest.mark.parametrize("priority", ["interactive", "batch"])
def test_priorities(priority: str) -> None:
    assert ImageRequest(prompt="x", priority=priority).priority == priority


def test_bad_priority() -> None:
    assert fields_of(priority="urgent") == ["priority"]


# --- quality ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("quality", ["low", "medium", "high"])
@pytest.mark.parametrize("provider", ["apidot", "openai", "image2"])
def test_qualities(provider: str, quality: str) -> None:
    assert ImageRequest(prompt="x", provider=provider, quality=quality).quality == quality


def test_auto_quality_is_openai_only() -> None:
    assert ImageRequest(prompt="x", provider="openai", quality="auto").quality == "auto"
    assert fields_of(quality="auto") == ["quality"]
    assert fields_of(provider="image2", quality="auto") == ["quality"]
    assert fields_of(quality="ultra") == ["quality"]


# --- apidot size and resolution -------------------------------------------------------------------


def test_apidot_named_sizes_match_the_spec() -> None:
    assert set(APIDOT_SIZES) == {
        "auto",
        "1:1",
        "2:3",
        "3:2",
        "3:4",
        "4:3",
        "4:5",
        "5:4",
        "9:16",
        "16:9",
        "21:9",
    }


@pytest.mark.parametrize("size", APIDOT_SIZES)
@pytest.mark.parametrize("resolution", [None, "1K", "2K", "4K"])
def test_apidot_named_sizes_with_any_resolution(size: str, resolution: str | None) -> None:
    req = ImageRequest(prompt="x", size=size, resolution=resolution)
    assert (req.size, req.resolution) == (size, resolution)


@pytest.mark.parametrize("size", ["1:2", "16:10", "1024", "x", "1024X1024", "0x100", "1024x", "auto ", "100000x1"])
def test_apidot_bad_sizes(size: str) -> None:
    assert fields_of(size=size, resolution="2K") == ["size"]


@pytest.mark.parametrize("resolution", ["2K", "4K"])
def test_apidot_custom_size_with_2k_or_4k(resolution: str) -> None:
    assert ImageRequest(prompt="x", size="2048x1152", resolution=resolution).size == "2048x1152"


@pytest.mark.parametrize("resolution", [None, "1K"])
def test_apidot_custom_size_needs_2k_or_4k(resolution: str | None) -> None:
    errors = errors_of(size="2048x1152", resolution=resolution)
    assert errors == [FieldError("resolution", "a custom WxH size needs resolution 2K or 4K")]


@pytest.mark.parametrize("resolution", ["8K", "1k", "2048", ""])
def test_apidot_bad_resolution(resolution: str) -> None:
    assert errors_of(resolution=resolution) == [FieldError("resolution", "must be 1K, 2K or 4K")]
    # With a custom size only the resolution itself is reported, once.
    assert fields_of(size="2048x1152", resolution=resolution) == ["resolution"]


@pytest.mark.parametrize("provider", ["openai", "image2"])
def test_resolution_is_apidot_only(provider: str) -> None:
    assert errors_of(provider=provider, resolution="2K") == [
        FieldError("resolution", f"is not supported by provider {provider}")
    ]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"size": "2048x1152\n", "resolution": "2K"},
        {"provider": "openai", "size": "1024x1536\n"},
        {"model": "gpt-image-2\n"},
    ],
    ids=["apidot-size", "openai-size", "model"],
)
def test_trailing_newline_is_rejected(kwargs: dict[str, Any]) -> None:
    expected = "model" if "model" in kwargs else "size"
    assert expected in fields_of(**kwargs)


# --- openai / image2 size rules -------------------------------------------------------------------


@pytest.mark.parametrize("size", OPENAI_SIZES)
@pytest.mark.parametrize("model", ["gpt-image-2", "gpt-image-1", "dall-e-3"])
def test_openai_named_sizes(size: str, model: str) -> None:
    assert openai_size_problem(size, model) is None


@pytest.mark.parametrize(
    "size",
    [
        "1024x1024",  # named
        "2048x2048",
        "3840x2160",  # 4K UHD: long edge exactly 3840, 8,294,400 pixels exactly
        "1280x512",  # 655,360 pixels exactly, ratio 2.5
        "2400x800",  # ratio exactly 3:1
        "800x2400",
        "1024x640",  # 655,360 pixels
        "3840x1280",
    ],
)
def test_openai_custom_sizes_allowed_for_gpt_image_2(size: str) -> None:
    assert openai_size_problem(size, "gpt-image-2") is None
    assert ImageRequest(prompt="x", provider="openai", size=size).size == size


@pytest.mark.parametrize(
    ("size", "problem"),
    [
        ("1000x1000", "both sides must be multiples of 16"),
        ("1024x1000", "both sides must be multiples of 16"),
        ("3856x1024", "the long edge must be at most 3840"),
        ("1024x3856", "the long edge must be at most 3840"),
        ("3072x1008", "the aspect ratio must be at most 3:1"),
        ("1008x3072", "the aspect ratio must be at most 3:1"),
        ("800x800", "must have between 655,360 and 8,294,400 pixels"),  # 640,000
        ("1024x624", "must have between 655,360 and 8,294,400 pixels"),  # 638,976
        ("3840x2176", "must have between 655,360 and 8,294,400 pixels"),  # 8,355,840
        ("big", "must be one of auto, 1024x1024, 1536x1024, 1024x1536 or WxH"),
        ("16:9", "must be one of auto, 1024x1024, 1536x1024, 1024x1536 or WxH"),
    ],
)
def test_openai_custom_size_rules(size: str, problem: str) -> None:
    assert openai_size_problem(size, "gpt-image-2") == problem
    assert errors_of(provider="openai", size=size) == [FieldError("size", problem)]


@pytest.mark.parametrize("model", ["gpt-image-1", "dall-e-3"])
def test_openai_custom_sizes_only_for_gpt_image_2(model: str) -> None:
    problem = "must be one of auto, 1024x1024, 1536x1024, 1024x1536"
    assert openai_size_problem("2048x2048", model) == problem
    assert errors_of(provider="openai", model=model, size="2048x2048") == [FieldError("size", problem)]


def test_image2_uses_the_openai_size_rules() -> None:
    assert ImageRequest(prompt="x", provider="image2", size="1536x1024").size == "1536x1024"
    assert fields_of(provider="image2", size="16:9") == ["size"]
    assert fields_of(provider="image2", size="1000x1000") == ["size"]


def test_apidot_ratios_are_not_openai_sizes() -> None:
    assert fields_of(provider="openai", size="1:1") == ["size"]


# --- image_urls -----------------------------------------------------------------------------------


def test_edit_model_needs_images() -> None:
    assert ImageRequest(prompt="x", model="gpt-image-2-edit", image_urls=[IMG]).image_urls == (IMG,)
    missing = [FieldError("image_urls", "at least one image is required for gpt-image-2-edit")]
    assert errors_of(model="gpt-image-2-edit") == missing
    assert errors_of(model="gpt-image-2-edit", image_urls=[]) == missing
    assert errors_of(model="gpt-image-2-edit", image_urls=()) == missing


def test_images_are_forbidden_for_apidot_gpt_image_2() -> None:
    assert errors_of(image_urls=[IMG]) == [
        FieldError("image_urls", "is not allowed for gpt-image-2 (use gpt-image-2-edit)")
    ]


@pytest.mark.parametrize("empty", [None, [], ()])
def test_empty_or_null_image_urls_count_as_absent(empty: Any) -> None:
    req = ImageRequest(prompt="x", model="gpt-image-2", image_urls=empty)
    assert req.image_urls is None
    assert "image_urls" not in req.to_dict()
    assert ImageRequest.from_dict({"prompt": "x", "image_urls": empty if empty != () else []}).image_urls is None


def test_other_apidot_models_may_take_images_or_not() -> None:
    assert ImageRequest(prompt="x", model="nano-banana", image_urls=[IMG]).image_urls == (IMG,)
    assert ImageRequest(prompt="x", model="nano-banana").image_urls is None


@pytest.mark.parametrize("provider", ["openai", "image2"])
def test_image_rules_are_apidot_only(provider: str) -> None:
    assert ImageRequest(prompt="x", provider=provider, image_urls=[IMG]).image_urls == (IMG,)


@pytest.mark.parametrize("allow_private_urls", [False, True])
def test_http_image_urls_are_rejected(allow_private_urls: bool) -> None:
    errors = errors_of(
        model="gpt-image-2-edit",
        image_urls=[IMG, "http://example.com/b.png"],
        allow_private_urls=allow_private_urls,
    )
    assert errors == [FieldError("image_urls.1", "must be an https URL")]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/a.png", "must be an https URL"),
        ("example.com/a.png", "must be an https URL"),
        ("/local/a.png", "must be an https URL"),
        ("file:///etc/passwd", "must be an https URL"),
        ("https://", "is not a valid URL"),
        ("https:///path", "is not a valid URL"),
        ("https://exa mple.com/a.png", "is not a valid URL"),
        ("https://example.com/a b.png", "is not a valid URL"),
        ("https://[::1", "is not a valid URL"),
        ("https://example.com/" + "a" * 2100, "must be at most 2048 characters"),
    ],
)
def test_bad_image_urls_name_their_index(url: str, problem: str) -> None:
    errors = errors_of(model="gpt-image-2-edit", image_urls=[IMG, IMG2, url])
    assert errors == [FieldError("image_urls.2", problem)]


def test_every_bad_image_url_is_listed() -> None:
    errors = errors_of(model="gpt-image-2-edit", image_urls=["http://a", IMG, "nope"])
    assert [e.field for e in errors] == ["image_urls.0", "image_urls.2"]


def test_image_url_count_limit() -> None:
    assert (
        len(ImageRequest(prompt="x", model="gpt-image-2-edit", image_urls=[IMG] * MAX_IMAGE_URLS).image_urls or ())
        == 16
    )
    assert errors_of(model="gpt-image-2-edit", image_urls=[IMG] * (MAX_IMAGE_URLS + 1)) == [
        FieldError("image_urls", "at most 16 images")
    ]


# --- deadline, idempotency key, callback, metadata ------------------------------------------------


@pytest.mark.parametrize("deadline", [1, 0.5, 3600, float(MAX_DEADLINE_S)])
def test_good_deadlines(deadline: float) -> None:
    assert ImageRequest(prompt="x", deadline_s=deadline).deadline_s == deadline


@pytest.mark.parametrize("deadline", [0, -1, MAX_DEADLINE_S + 1, float("inf"), float("nan"), 10**400])
def test_bad_deadlines(deadline: float) -> None:
    assert fields_of(deadline_s=deadline) == ["deadline_s"]


def test_idempotency_key_length() -> None:
    assert ImageRequest(prompt="x", idempotency_key="k" * 200).idempotency_key == "k" * 200
    assert fields_of(idempotency_key="") == ["idempotency_key"]
    assert fields_of(idempotency_key="k" * 201) == ["idempotency_key"]


def test_callback_url_https_only_unless_private_urls_are_allowed() -> None:
    assert ImageRequest(prompt="x", callback_url="https://hooks.example.com/x").callback_url
    assert errors_of(callback_url="http://127.0.0.1:9000/cb") == [FieldError("callback_url", "must be an https URL")]
    req = ImageRequest(prompt="x", callback_url="http://127.0.0.1:9000/cb", allow_private_urls=True)
    assert req.callback_url == "http://127.0.0.1:9000/cb"
    assert errors_of(callback_url="ftp://x/cb", allow_private_urls=True) == [
        FieldError("callback_url", "must be an http(s) URL")
    ]


def test_metadata_rules() -> None:
    assert ImageRequest(prompt="x", metadata={"a": [1, 2, {"b": None}]}).metadata == {"a": [1, 2, {"b": None}]}
    assert errors_of(metadata={"x": "y" * MAX_METADATA_BYTES}) == [
        FieldError("metadata", "must be at most 16384 bytes of JSON")
    ]
    assert errors_of(metadata={"x": float("nan")}) == [FieldError("metadata", "must be JSON-serialisable")]
    assert errors_of(metadata={"x": object()}) == [FieldError("metadata", "must be JSON-serialisable")]
    assert errors_of(metadata=["not", "an", "object"]) == [FieldError("metadata", "must be a JSON object")]


def test_deeply_nested_metadata_is_a_field_error() -> None:
    nested: dict[str, Any] = {}
    cursor = nested
    for _ in range(5000):
        cursor["a"] = {}
        cursor = cursor["a"]
    assert dict_fields({"prompt": "x", "metadata": nested}) == ["metadata"]


# --- fallback -------------------------------------------------------------------------------------


def test_fallback_route() -> None:
    assert ImageRequest(prompt="x", fallback=["openai", "image2"]).fallback == ("openai", "image2")
    assert ImageRequest(prompt="x", fallback=[]).fallback is None


def test_fallback_errors_name_their_index() -> None:
    assert errors_of(fallback=["dalle"]) == [FieldError("fallback.0", "must be one of apidot, openai, image2")]
    assert errors_of(fallback=["openai", "apidot"]) == [
        FieldError("fallback.1", "repeats a provider already in the route")
    ]
    assert errors_of(fallback=["openai", "openai"]) == [
        FieldError("fallback.1", "repeats a provider already in the route")
    ]
    assert fields_of(fallback=["image2", "nope", "image2"]) == ["fallback.1", "fallback.2"]


# --- from_dict ------------------------------------------------------------------------------------


def test_from_dict_builds_the_same_request() -> None:
    data = {"prompt": "a cat", "quality": "low", "size": "1:1", "image_urls": None, "metadata": {"k": 1}}
    assert ImageRequest.from_dict(data) == ImageRequest(prompt="a cat", quality="low", size="1:1", metadata={"k": 1})


def test_from_dict_rejects_non_objects() -> None:
    for data in (None, [], "prompt", 3, [("prompt", "x")]):
        assert dict_errors(data) == [FieldError("request", "must be a JSON object")]


def test_from_dict_unknown_fields_are_named() -> None:
    assert dict_errors({"prompt": "x", "n": 2, "promt": "y"}) == [
        FieldError("n", "unknown field"),
        FieldError("promt", "unknown field"),
    ]
    assert dict_fields({"prompt": "x", "allow_private_urls": True}) == ["allow_private_urls"]


def test_from_dict_missing_or_null_prompt() -> None:
    assert dict_errors({}) == [FieldError("prompt", "is required")]
    assert dict_errors({"prompt": None}) == [FieldError("prompt", "is required")]
    assert dict_fields({"prompt": ""}) == ["prompt"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("prompt", 3, "must be a string"),
        ("provider", ["apidot"], "must be a string"),
        ("model", 2, "must be a string"),
        ("quality", True, "must be a string"),
        ("size", 1024, "must be a string"),
        ("resolution", 2, "must be a string"),
        ("idempotency_key", 5, "must be a string"),
        ("priority", {}, "must be a string"),
        ("callback_url", 1.5, "must be a string"),
        ("image_urls", IMG, "must be a list of strings"),
        ("image_urls", [IMG, 3], "must be a list of strings"),
        ("fallback", "openai", "must be a list of strings"),
        ("deadline_s", "60", "must be a number of seconds"),
        ("deadline_s", True, "must be a number of seconds"),
        ("metadata", [1], "must be a JSON object"),
        ("metadata", "x", "must be a JSON object"),
    ],
)
def test_from_dict_wrong_types_name_the_field(field: str, value: Any, message: str) -> None:
    data = {"prompt": "x", field: value}
    errors = dict_errors(data)
    assert FieldError(field, message) in errors
    assert all(e.field == field for e in errors)


def test_from_dict_collects_type_and_rule_errors_together() -> None:
    # Type errors stop construction; every one of them is reported at once.
    assert dict_fields({"prompt": 1, "size": 2, "bogus": 3}) == ["bogus", "prompt", "size"]
    # Rule errors come from construction.
    assert dict_fields({"prompt": "x", "size": "huge", "priority": "now"}) == ["priority", "size"]


def test_from_dict_null_fields_keep_their_defaults() -> None:
    req = ImageRequest.from_dict({"prompt": "x", "provider": None, "priority": None, "metadata": None})
    assert (req.provider, req.priority, req.metadata) == ("apidot", "interactive", None)


def test_from_dict_defaults_fill_absent_fields_only() -> None:
    req = ImageRequest.from_dict({"prompt": "x"}, priority="batch")
    assert req.priority == "batch"
    req = ImageRequest.from_dict({"prompt": "x", "priority": "interactive"}, priority="batch")
    assert req.priority == "interactive"


def test_from_dict_allow_private_urls_applies_to_callbacks_only() -> None:
    data = {"prompt": "x", "callback_url": "http://127.0.0.1:8800/cb"}
    assert dict_fields(data) == ["callback_url"]
    assert ImageRequest.from_dict(data, allow_private_urls=True).callback_url == "http://127.0.0.1:8800/cb"
    edit = {"prompt": "x", "model": "gpt-image-2-edit", "image_urls": ["http://127.0.0.1:8800/a.png"]}
    assert dict_fields(edit, allow_private_urls=True) == ["image_urls.0"]


def test_from_dict_accepts_tuples_and_lists() -> None:
    req = ImageRequest.from_dict({"prompt": "x", "model": "gpt-image-2-edit", "image_urls": (IMG,)})
    assert req.image_urls == (IMG,)


# --- hypothesis -----------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)


def _utf8(**kwargs: Any) -> st.SearchStrategy[str]:
    """Text a valid request may hold (no lone surrogates)."""
    return st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), **kwargs)


plausible = {
    "prompt": st.text(max_size=40) | st.just("a cat"),
    "provider": st.sampled_from(["apidot", "openai", "image2", "x"]),
    "model": st.sampled_from(["gpt-image-2", "gpt-image-2-edit", "nano-banana", ""]),
    "quality": st.sampled_from(["low", "medium", "high", "auto", "x"]),
    "size": st.sampled_from([*APIDOT_SIZES, *OPENAI_SIZES, "2048x1152", "1000x1000", "1:2"]),
    "resolution": st.sampled_from(["1K", "2K", "4K", "8K"]),
    "image_urls": st.lists(st.sampled_from([IMG, IMG2, "http://a.com/x", "nope", ""]), max_size=3),
    "deadline_s": st.floats() | st.integers(min_value=-10, max_value=10**6),
    "fallback": st.lists(st.sampled_from(["apidot", "openai", "image2", "x"]), max_size=3),
    "callback_url": st.sampled_from(["https://a.com/cb", "http://127.0.0.1/cb", "x"]),
    "metadata": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
}
field_value = st.sampled_from(REAL_FIELDS).flatmap(
    lambda name: st.tuples(st.just(name), (plausible.get(name, st.nothing()) | json_values))
)
plausible_only = st.sampled_from(sorted(plausible)).flatmap(lambda name: st.tuples(st.just(name), plausible[name]))
request_like = st.one_of(
    st.lists(plausible_only, max_size=5).map(lambda kv: {"prompt": "a cat", **dict(kv)}),
    st.dictionaries(st.text(max_size=12), json_values, max_size=6),
    st.lists(field_value, max_size=8).map(dict),
    st.lists(field_value, max_size=8).map(lambda kv: {"prompt": "a cat", **dict(kv)}),
    json_values,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_like, st.booleans())
def test_from_dict_returns_a_request_or_raises_request_invalid(data: Any, allow_private_urls: bool) -> None:
    try:
        req = ImageRequest.from_dict(data, allow_private_urls=allow_private_urls)
    except RequestInvalid as exc:
        assert exc.errors, "RequestInvalid must name at least one field"
        assert all(isinstance(e, FieldError) and isinstance(e.field, str) and e.message for e in exc.errors)
        known = set(REAL_FIELDS) | {"request"}
        for e in exc.errors:
            base = e.field.split(".")[0]
            # Every error names a real field (or an index in one), or the unknown key itself.
            assert base in known or (isinstance(data, dict) and e.field in {str(k) for k in data})
    else:
        assert isinstance(req, ImageRequest)
        assert isinstance(req.prompt, str) and req.prompt.strip()


valid_requests = (
    st.builds(
        ImageRequest,
        prompt=_utf8(min_size=1, max_size=50).filter(lambda s: s.strip()),
        provider=st.just("apidot"),
        model=st.sampled_from(["gpt-image-2", "nano-banana"]),
        quality=st.none() | st.sampled_from(["low", "medium", "high"]),
        size=st.none() | st.sampled_from(APIDOT_SIZES),
        resolution=st.none() | st.sampled_from(["1K", "2K", "4K"]),
        deadline_s=st.none() | st.floats(min_value=1, max_value=MAX_DEADLINE_S),
        idempotency_key=st.none() | _utf8(min_size=1, max_size=20),
        priority=st.sampled_from(["interactive", "batch"]),
        callback_url=st.none() | st.just("https://hooks.example.com/cb"),
        metadata=st.none() | st.dictionaries(_utf8(max_size=5), st.integers() | _utf8(max_size=5), max_size=3),
    )
    | st.builds(
        ImageRequest,
        # A route is accepted only when every hop can carry the request (see test_routes.py).
        prompt=st.just("routed"),
        quality=st.none() | st.sampled_from(["low", "medium", "high"]),
        size=st.none() | st.sampled_from(["auto", "1:1", "3:2", "2:3"]),
        resolution=st.none() | st.just("1K"),
        fallback=st.permutations(["openai", "image2"]).map(list),
    )
    | st.builds(
        ImageRequest,
        prompt=st.just("edit this"),
        model=st.just("gpt-image-2-edit"),
        image_urls=st.lists(st.sampled_from([IMG, IMG2]), min_size=1, max_size=4),
    )
    | st.builds(
        ImageRequest,
        prompt=st.just("openai"),
        provider=st.just("openai"),
        quality=st.sampled_from(["auto", "high"]),
        size=st.sampled_from(["1024x1024", "2048x2048", "3840x2160"]),
    )
)


@settings(max_examples=200, deadline=None)
@given(valid_requests)
def test_valid_requests_round_trip_through_dicts(req: ImageRequest) -> None:
    data = req.to_dict()
    assert "allow_private_urls" not in data
    assert all(v is not None for v in data.values())
    again = ImageRequest.from_dict(data)
    assert again == req
    assert again.to_dict() == data


@settings(max_examples=200, deadline=None)
@given(valid_requests)
def test_to_dict_is_the_dataclass_dict_without_who_asks(req: ImageRequest) -> None:
    """The field-by-field copy gives what ``dataclasses.asdict`` gave, sequences as lists, Nones dropped."""
    reference = {k: v for k, v in dataclasses.asdict(req).items() if v is not None}
    for who in ("allow_private_urls", "tenant"):
        reference.pop(who, None)
    for key in ("image_urls", "fallback", "image_files"):
        if key in reference:
            reference[key] = list(reference[key])
    assert req.to_dict() == reference and list(req.to_dict()) == list(reference)


def test_to_dict_never_shares_the_metadata_object() -> None:
    req = ImageRequest(prompt="a", metadata={"tags": ["x"]})
    req.to_dict()["metadata"]["tags"].append("y")
    assert req.metadata == {"tags": ["x"]}


def test_url_problem_directly() -> None:
    assert url_problem(IMG, allow_http=False) is None
    assert url_problem("http://a.com/x", allow_http=False) == "must be an https URL"
    assert url_problem("http://a.com/x", allow_http=True) is None
    assert url_problem("https://a.com/x\n", allow_http=True) == "is not a valid URL"


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"prompt": "lone \ud800 surrogate"}, "prompt"),
        ({"prompt": "argv \udcff byte"}, "prompt"),
        ({"prompt": "ok", "metadata": {"k": "\udcff"}}, "metadata"),
        ({"prompt": "ok", "metadata": {"\ud800": [1]}}, "metadata"),
        ({"prompt": "ok", "idempotency_key": "\ud800"}, "idempotency_key"),
        ({"prompt": "ok", "image_urls": ["https://example.com/\udc80.png"], "model": "gpt-image-2-edit"}, "image_urls"),
    ],
)
def test_text_that_no_json_answer_can_hold_is_refused(data: dict[str, Any], field: str) -> None:
    """Lone surrogates (JSON escapes from a by-name sender, non-UTF-8 argv) made every later render a 500."""
    with pytest.raises(RequestInvalid) as caught:
        ImageRequest.from_dict(data)
    assert any(e.field == field and "UTF-8" in e.message for e in caught.value.errors), caught.value.errors
