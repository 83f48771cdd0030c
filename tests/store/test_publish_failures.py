"""A broker that refuses the submit messages costs one try and one log line: the rows are already safe."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pytest

from imagegen.messages import Step
from imagegen.producer import create_batch, publish_submits
from imagegen.request import ImageRequest
from imagegen.runtime import Runtime
from imagegen.store import repo


class DownBroker:
    """A publisher whose broker is down: every publish raises, and each try is counted."""

    def __init__(self) -> None:
        self.tries = 0

    def publish(self, step: Step) -> None:
        self.tries += 1
        raise ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    def publish_many(self, steps: Sequence[Step]) -> None:
        self.publish(steps[0])


def test_a_down_broker_is_tried_once_and_logged_in_one_line(rt: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    _, jobs = create_batch(rt, [ImageRequest(prompt=f"p{i}") for i in range(50)])
    broker = DownBroker()
    with caplog.at_level(logging.WARNING, logger="imagegen.producer"):
        publish_submits(broker, jobs)
    assert broker.tries == 1
    [record] = [r for r in caplog.records if r.name == "imagegen.producer"]
    assert "50 queued job(s)" in record.getMessage() and "reconciler will release them" in record.getMessage()
    assert record.exc_info is None  # no traceback for an outage the design absorbs
    with rt.session() as s:
        assert all(repo.get_job(s, j.id).status == "queued" for j in jobs)  # type: ignore[union-attr]
