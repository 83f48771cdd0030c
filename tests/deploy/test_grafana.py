"""docs/grafana-dashboard.json: importable, and every query names metrics and labels that exist.

The metrics are taken from the code that serves them: the api's collectors (read against a real
database and Redis), the worker's ``imagegen.metrics``, and Flower's ``PrometheusMetrics``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from config.settings import Settings
from imagegen import devstack
from imagegen import metrics as worker_metrics
from imagegen.api.metrics import build_registry
from imagegen.runtime import Runtime

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
#: PromQL words that are not metric names.
_PROMQL = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "le"}


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def known(ops_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, set[str]]]:
    """Sample name → label names, for every metric the api, the workers and Flower serve."""
    out: dict[str, set[str]] = {}
    redis_proc, redis_url = devstack.start_redis()
    home = tmp_path_factory.mktemp("grafana-home")
    rt = Runtime.create(Settings(database_url=ops_database_url, redis_url=redis_url, imagegen_home=home))
    try:
        text = generate_latest(build_registry(lambda: rt)).decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                out.setdefault(sample.name, set()).update(sample.labels)
    finally:
        rt.close()
        redis_proc.stop()
    from flower.events import get_prometheus_metrics

    flower = get_prometheus_metrics()
    objects = [*vars(worker_metrics).values(), *vars(flower).values()]
    for metric in objects:
        if not isinstance(metric, MetricWrapperBase):
            continue
        for suffix in _SUFFIXES[str(metric._type)]:
            labels = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
            out[metric._name + suffix] = labels
    assert {"imagegen_jobs", "imagegen_providers_paused", "imagegen_queue_depth", "flower_events_total"} <= set(out)
    yield out


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_importable_shape(dashboard: dict[str, Any]) -> None:
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] and dashboard["title"] and dashboard["id"] is None
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not mine & cells, f"panel {panel['title']!r} overlaps another"
        cells |= mine
    for panel in panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}" and target["expr"].strip()


def _selectors(expr: str) -> Iterator[tuple[str, set[str]]]:
    """``(metric name, labels used in its selector)`` for each metric in a PromQL expression."""
    for match in re.finditer(r"\b([a-z_:][a-z0-9_:]*)\s*(\{[^}]*\})?", expr):
        name, selector = match.group(1), match.group(2) or ""
        if not name.startswith(("imagegen_", "flower_")):
            continue
        yield name, set(re.findall(r"([a-z_][a-z0-9_]*)\s*(?:=~|!~|!=|=)", selector))


def test_queries_use_existing_metrics_and_labels(dashboard: dict[str, Any], known: dict[str, set[str]]) -> None:
    used: set[str] = set()
    for panel in panels(dashboard):
        for target in panel["targets"]:
            expr = target["expr"]
            assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
            metrics = list(_selectors(expr))
            assert metrics, f"{panel['title']}: no metric in {expr}"
            grouped = {
                label.strip()
                for group in re.findall(r"\bby\s*\(([^)]*)\)", expr)
                for label in group.split(",")
                if label.strip()
            }
            for name, labels in metrics:
                assert name in known, f"{panel['title']}: no metric {name}"
                assert labels <= known[name], f"{panel['title']}: {name} has no label {labels - known[name]}"
                used.add(name)
            available = set().union(*(known[n] for n, _ in metrics))
            assert grouped <= available, f"{panel['title']}: grouping by {grouped - available}"
    # The metrics the runbook's alerts rely on are on the dashboard.
    for name in ("imagegen_jobs", "imagegen_providers_paused", "imagegen_queue_depth", "flower_worker_online"):
        assert name in used
    assert any(n.startswith("flower_task_runtime_seconds") for n in used)
    assert any(n.startswith("flower_events") for n in used)
    assert _PROMQL.isdisjoint(used)


def test_provider_variable_reads_a_real_label(dashboard: dict[str, Any], known: dict[str, set[str]]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    query = variables["provider"]["definition"]
    metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)", query).groups()  # type: ignore[union-attr]
    assert label in known[metric]
