"""A batch whose own lines reuse one idempotency key for different requests is refused whole."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from imagegen.errors import IdempotencyConflict
from imagegen.producer import create_batch
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime

pytestmark = pytest.mark.store


def test_a_key_repeated_inside_one_batch_for_different_requests_inserts_nothing(rt: Runtime) -> None:
    requests = [
        ImageRequest(prompt="a cat", idempotency_key="k-1"),
        ImageRequest(prompt="a dog", idempotency_key="k-1"),
    ]
    with pytest.raises(IdempotencyConflict):
        create_batch(rt, requests)
    with rt.session() as s:
        count = s.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one()
    # Before: the first line's job was inserted (and the reconciler would later submit it: a paid
    # generation the caller was told was refused).
    assert count == 0
