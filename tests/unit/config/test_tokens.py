"""``IMAGEGEN_API_TOKENS`` (``tenant:token`` or bare) and ``IMAGEGEN_ADMIN_TOKENS``: parsing and refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config.settings import ConfigError, Settings, load_settings, parse_admin_tokens, parse_api_tokens
from imagegen.api.auth import Caller, identify
from imagegen.request import MAX_TENANT

_TENANT = st.text(st.sampled_from("abcXYZ019_.-"), min_size=1, max_size=MAX_TENANT)
#: Tokens: printable ASCII without comma (the separator) or space (a bearer header carries no more); ':' is allowed.
_TOKEN = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","), min_size=1)


def test_tenant_and_bare_tokens() -> None:
    assert parse_api_tokens(" a:tok-a, b:tok-b ,, bare ,") == {"tok-a": "a", "tok-b": "b", "bare": "default"}
    assert parse_api_tokens("a:x:y") == {"x:y": "a"}  # the tenant ends at the first ':'
    assert parse_api_tokens("") == {} and parse_admin_tokens(" , ") == frozenset()
    assert parse_admin_tokens("adm, a:b") == frozenset({"adm", "a:b"})  # admin tokens are taken whole


@given(st.dictionaries(_TOKEN.filter(lambda t: ":" not in t), _TENANT, max_size=5), st.lists(_TOKEN, max_size=5))
def test_a_written_token_list_parses_back(pairs: dict[str, str], bare: list[str]) -> None:
    bare = [b for b in bare if b.strip() == b and b not in pairs and ":" not in b]
    text = ",".join([f"{tenant}:{token}" for token, tenant in pairs.items()] + bare)
    assert parse_api_tokens(text) == {**pairs, **dict.fromkeys(bare, "default")}


@given(st.lists(_TOKEN, max_size=6))
def test_admin_token_lists_parse_back(tokens: list[str]) -> None:
    tokens = [t for t in tokens if t.strip() == t]
    assert parse_admin_tokens(", ".join(tokens)) == frozenset(tokens)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("a:", "entry 1: tenant:token with an empty tenant or token"),
        ("ok,:tok", "entry 2: tenant:token with an empty tenant or token"),
        ("a b:tok", "entry 1: the tenant must be"),
        ("a:t1,b:t1", "entry 2: the same token is given to two tenants"),
        ("a:t 1", "entry 1 has a token with whitespace"),
        ("a:t\u200b1", "entry 1 has a token with characters an Authorization header cannot carry"),
        ("a:t1\x7f", "entry 1 has a token with characters an Authorization header cannot carry"),
    ],
)
def test_a_bad_token_list_is_one_config_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("IMAGEGEN_API_TOKENS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message and f"IMAGEGEN_API_TOKENS {says}" in message
    assert "t1" not in message.replace("entry", "")  # tokens are never echoed


def test_a_token_in_both_lists_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMAGEGEN_API_TOKENS", "a:same")
    monkeypatch.setenv("IMAGEGEN_ADMIN_TOKENS", "same")
    with pytest.raises(ConfigError, match="IMAGEGEN_ADMIN_TOKENS"):
        load_settings()


def test_auth_is_on_with_either_list() -> None:
    assert not Settings().auth_enabled
    assert Settings(imagegen_admin_tokens="adm").auth_enabled
    assert Settings(imagegen_api_tokens="a:x").auth_enabled and Settings(imagegen_api_tokens="a:x").api_tokens == {"x"}


def test_identify() -> None:
    tenants, admins = {"tok-a": "a", "bare": "default"}, frozenset({"adm"})
    assert identify("tok-a", tenants, admins) == Caller("a")
    assert identify("bare", tenants, admins) == Caller("default")
    assert identify("adm", tenants, admins) == Caller("default", admin=True)
    assert identify("tok-", tenants, admins) is None and identify("", tenants, admins) is None
