"""Fallback routes: every hop is validated at intake as it will be sent, or mapped, or refused naming it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from imagegen.constants import PROVIDERS
from imagegen.errors import RequestInvalid
from imagegen.request import APIDOT_SIZES, OPENAI_SIZES, ImageRequest
from imagegen.routes import NoMapping, hop_request

UPLOAD = "uploads/" + "ab" * 32 + ".png"


def _problems(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(RequestInvalid) as info:
        ImageRequest.from_dict(data)
    return {e.field: e.message for e in info.value.errors}


def test_a_16_9_apidot_request_cannot_fall_back_to_openai() -> None:
    problems = _problems({"prompt": "x", "size": "16:9", "fallback": ["openai"]})
    assert "size 16:9 has no openai equivalent" in problems["fallback.0"]


def test_an_openai_edit_with_uploaded_files_cannot_fall_back_to_a_url_only_provider() -> None:
    problems = _problems(
        {"prompt": "x", "provider": "openai", "image_files": [UPLOAD], "fallback": ["image2", "apidot"]}
    )
    assert "image_files" in problems["fallback.0"] and "image2" in problems["fallback.0"]
    assert set(problems) == {"fallback.0"}  # apidot is given uploads as signed URLs of ours


def test_uploaded_files_fall_back_from_openai_to_apidot_as_an_edit() -> None:
    request = ImageRequest.from_dict(
        {"prompt": "x", "provider": "openai", "image_files": [UPLOAD], "fallback": ["apidot"]}
    )
    hop = hop_request(request.to_dict(), "apidot")
    assert (hop["model"], hop["image_files"]) == ("gpt-image-2-edit", [UPLOAD])
    assert "image_files" in _problems({"prompt": "x", "model": "gpt-image-2", "image_files": [UPLOAD]})


@pytest.mark.parametrize(
    ("data", "index", "words"),
    [
        ({"size": "1:1", "resolution": "2K", "fallback": ["image2"]}, 0, "resolution 2K"),
        ({"model": "nano-banana-2", "fallback": ["openai"]}, 0, "model nano-banana-2"),
        ({"provider": "openai", "size": "2048x1152", "fallback": ["apidot"]}, 0, "size 2048x1152"),
        ({"size": "1030x1024", "resolution": "2K", "fallback": ["openai"]}, 0, "multiples of 16"),
        ({"provider": "openai", "quality": "auto", "fallback": ["image2", "apidot"]}, None, ""),
    ],
)
def test_each_hop_is_refused_naming_its_index_and_reason(data: dict[str, Any], index: int | None, words: str) -> None:
    if index is None:
        assert ImageRequest.from_dict({"prompt": "x", **data}).fallback == tuple(data["fallback"])
        return
    problems = _problems({"prompt": "x", **data})
    assert set(problems) == {f"fallback.{index}"} and words in problems[f"fallback.{index}"]


def test_faithful_mappings() -> None:
    edit = {"prompt": "x", "model": "gpt-image-2-edit", "image_urls": ["https://e.test/a.png"], "size": "3:2"}
    to_openai = hop_request({**edit, "provider": "apidot", "fallback": ["openai", "image2"]}, "openai")
    assert to_openai == {
        **edit,
        "provider": "openai",
        "model": "gpt-image-2",
        "size": "1536x1024",
        "fallback": ["image2"],
    }
    back = hop_request(
        {"prompt": "x", "provider": "image2", "size": "1024x1536", "image_urls": ["https://e.test/a"]}, "apidot"
    )
    assert (back["model"], back["size"]) == ("gpt-image-2-edit", "2:3")
    custom = hop_request({"prompt": "x", "size": "2048x1152", "resolution": "2K"}, "openai")
    assert custom["size"] == "2048x1152" and "resolution" not in custom
    assert "quality" not in hop_request({"prompt": "x", "provider": "openai", "quality": "auto"}, "apidot")
    with pytest.raises(NoMapping):
        hop_request({"prompt": "x", "size": "21:9"}, "image2")


_requests = st.fixed_dictionaries(
    {"prompt": st.just("a cat"), "provider": st.sampled_from(PROVIDERS)},
    optional={
        "model": st.sampled_from(["gpt-image-2", "gpt-image-2-edit", "gpt-image-1", "flux-kontext"]),
        "quality": st.sampled_from(["low", "medium", "high", "auto"]),
        "size": st.sampled_from([*APIDOT_SIZES, *OPENAI_SIZES, "2048x1152", "2304x2048", "1000x1000"]),
        "resolution": st.sampled_from(["1K", "2K", "4K"]),
        "image_urls": st.just(["https://e.test/a.png"]),
        "image_files": st.just([UPLOAD]),
        "fallback": st.lists(st.sampled_from(PROVIDERS), min_size=1, max_size=2, unique=True),
    },
)


@settings(max_examples=400, deadline=None)
@given(_requests)
def test_an_accepted_route_is_valid_at_every_hop(data: dict[str, Any]) -> None:
    """Whatever the request: refused at intake, or every hop's request is valid for that hop's provider."""
    try:
        request = ImageRequest.from_dict(data)
    except RequestInvalid:
        return
    current = request.to_dict()
    for name in request.fallback or ():
        current = hop_request(current, name)
        hop = ImageRequest.from_dict(current)  # raises if the hop would be sent something invalid
        assert hop.provider == name and hop.prompt == request.prompt
        assert bool(hop.image_urls or hop.image_files) == bool(request.image_urls or request.image_files)


def test_the_switch_maps_the_stored_request_and_skips_a_hop_that_cannot_carry_it() -> None:
    from imagegen.jobs.fallback import next_hop
    from imagegen.store.models import Job as _Job

    def Job(**kw: Any) -> _Job:  # only the fields the route reads
        return _Job(status="queued", deadline_at=None, **kw)

    # A row queued before routes were checked: apidot 16:9 with fallback openai then image2... neither fits.
    old = Job(
        id="j",
        provider="apidot",
        model="gpt-image-2",
        request={"prompt": "x", "size": "16:9", "fallback": ["openai", "image2"]},
    )
    assert next_hop(old) is None
    square = Job(
        id="k",
        provider="apidot",
        model="gpt-image-2",
        request={"prompt": "x", "size": "1:1", "fallback": ["openai", "image2"]},
    )
    assert next_hop(square) == (
        "openai",
        {"prompt": "x", "provider": "openai", "model": "gpt-image-2", "size": "1024x1024", "fallback": ["image2"]},
    )
    # An older switched row: the stored request still names apidot while openai serves it.
    moved = Job(
        id="m",
        provider="openai",
        model="gpt-image-2",
        request={"prompt": "x", "size": "3:2", "fallback": ["openai", "image2"]},
    )
    assert next_hop(moved) == (
        "image2",
        {"prompt": "x", "provider": "image2", "model": "gpt-image-2", "size": "1536x1024"},
    )


def test_same_request_for_idempotency_ignores_priority_and_knows_the_hop_it_moved_to() -> None:
    from imagegen.producer import same_request

    asked = ImageRequest(prompt="x", size="1:1", fallback=["openai"], idempotency_key="k")
    assert same_request(asked.to_dict(), asked)
    assert same_request({**asked.to_dict(), "priority": "batch"}, asked)
    assert same_request(hop_request(asked.to_dict(), "openai"), asked)  # the job fell back already
    assert not same_request({**asked.to_dict(), "prompt": "y"}, asked)
    assert not same_request({**asked.to_dict(), "size": "3:2"}, asked)
