"""A settings error never quotes its input: tokens, keys and passwords stay out of the message."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.settings import Settings


def test_a_bad_token_list_does_not_echo_the_tokens() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(imagegen_api_tokens="a:SECRETTOK1,b:SECRETTOK1", database_url="sqlite:///x.db")
    assert "SECRETTOK1" not in str(caught.value)


def test_a_bad_number_does_not_echo_the_neighbouring_secrets() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(apidot_api_key="sk-live-SECRET", imagegen_poll_min_s="abc")
    assert "sk-live-SECRET" not in str(caught.value) and "abc" not in str(caught.value)
