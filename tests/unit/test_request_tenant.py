"""The request's ``tenant``: a short identifier, validated like every field, never part of what is asked."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imagegen.errors import RequestInvalid
from imagegen.request import MAX_TENANT, ImageRequest


def test_tenant_is_kept_but_not_stored_in_the_request() -> None:
    req = ImageRequest.from_dict({"prompt": "p", "tenant": "team-7.prod_x"})
    assert req.tenant == "team-7.prod_x" and "tenant" not in req.to_dict()
    assert ImageRequest(prompt="p").tenant is None


@pytest.mark.parametrize("value", ["", "a b", "x" * (MAX_TENANT + 1), "a:b", "a,b", "é", "a\x00", 5, ["a"]])
def test_a_bad_tenant_is_one_error_naming_tenant(value: object) -> None:
    with pytest.raises(RequestInvalid) as caught:
        ImageRequest.from_dict({"prompt": "p", "tenant": value})
    assert [e.field for e in caught.value.errors] == ["tenant"]


@given(st.text(st.sampled_from("azAZ09_.-"), min_size=1, max_size=MAX_TENANT))
def test_every_short_identifier_is_a_tenant(value: str) -> None:
    assert ImageRequest.from_dict({"prompt": "p", "tenant": value}).tenant == value
