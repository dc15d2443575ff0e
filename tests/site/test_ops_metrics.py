"""``GET /metrics`` (docs/contract/interfaces.md, issue 18): who may scrape it, and what it shows after a real workflow.

The workflow test runs TraceMem as operators do — ``scripts/serve.sh`` with two gunicorn workers and
``scripts/worker.sh`` on a Redis of the test's own — so one scrape must add up the counts of every
web worker and of the Celery worker that sent the notification (prometheus-client multiprocess
mode). The receiver is a real local HTTP server.
"""

from __future__ import annotations

import base64
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from approvals.models import Delivery, WebhookEndpoint
from tests.appr_helpers import make_reviewer, make_route
from tests.fault_helpers import Process, Receiver, RedisServer, free_port, process_env, wait_for
from tracemem_core import metrics

TOKEN = "metrics-" + secrets.token_hex(16)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition: {(name, sorted labels): value}."""
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


def total(scraped: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum over every sample of ``name`` whose labels include ``labels``."""
    return sum(
        v
        for (n, ls), v in scraped.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


# --- who may scrape -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_refuses_a_scraper_without_the_token_or_an_allowed_address(settings: Any) -> None:
    settings.TRACEMEM_METRICS_TOKEN = TOKEN
    settings.TRACEMEM_METRICS_ALLOW = ["10.9.0.0/16"]
    client = Client()
    refused = client.get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert refused.status_code == 403
    assert "TRACEMEM_METRICS_TOKEN" in refused.content.decode()
    assert refused["WWW-Authenticate"] == 'Bearer realm="tracemem-metrics"'
    wrong = client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 403
    assert b"tracemem_" not in wrong.content


@pytest.mark.django_db
def test_metrics_answers_the_token_from_anywhere_and_an_allowed_address_without_it(settings: Any) -> None:
    settings.TRACEMEM_METRICS_TOKEN = TOKEN
    settings.TRACEMEM_METRICS_ALLOW = ["10.9.0.0/16"]
    client = Client()
    with_token = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert with_token.status_code == 200
    assert with_token["Content-Type"].startswith("text/plain; version=")
    assert "tracemem_requests_total" in with_token.content.decode()
    from_network = client.get("/metrics", REMOTE_ADDR="10.9.4.2")
    assert from_network.status_code == 200


@pytest.mark.django_db
def test_metrics_with_neither_setting_is_closed_in_production(settings: Any) -> None:
    settings.TRACEMEM_METRICS_TOKEN = ""
    settings.TRACEMEM_METRICS_ALLOW = []  # the production default (DATABASE_URL set)
    assert Client().get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403


@pytest.mark.django_db
def test_a_rate_limited_call_is_counted_by_door(settings: Any, api: Any) -> None:
    settings.TRACEMEM_AGENT_RATE_LIMIT = "2/minute"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    before = metrics.value("tracemem_rate_limited_total", door="rest")
    statuses = [api.get("/api/v1/capabilities").status_code for _ in range(4)]
    assert statuses.count(429) >= 1
    assert metrics.value("tracemem_rate_limited_total", door="rest") == before + statuses.count(429)


# --- the workflow, scraped --------------------------------------------------------------------------


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _http(port: int, method: str, path: str, *, headers: dict[str, str], body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    for name, content in headers.items():
        request.add_header(name, content)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    text = raw.decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


@pytest.mark.django_db(transaction=True)
def test_metrics_scraped_after_a_workflow_show_decision_approval_and_delivery_counters(
    tmp_path: Path, redis: RedisServer, receiver: Receiver, make_agent: Any
) -> None:
    group = Group.objects.create(name="ops_approvers")
    WebhookEndpoint.objects.create(
        name="ops_hook",
        url=receiver.url("ok"),
        signing_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    )
    make_route("route_ops", group=group, channels=[{"type": "webhook", "endpoint": "ops_hook"}])
    reviewer = make_reviewer("ops-reviewer", group)
    _, key = make_agent("ops-agent")

    port = free_port()
    env = process_env(
        redis.url,
        TRACEMEM_HOST="127.0.0.1",
        TRACEMEM_PORT=str(port),
        TRACEMEM_WEB_WORKERS="2",
        TRACEMEM_METRICS_DIR=str(tmp_path / "metrics"),  # fresh counts: exact values below
        TRACEMEM_METRICS_TOKEN=TOKEN,
        TRACEMEM_METRICS_ALLOW="",
    )
    web = Process("serve.sh", tmp_path / "serve.log", env).start(ready="Booting worker", count=2)
    worker = Process("worker.sh", tmp_path / "worker.log", env, ["deliveries"]).start(ready=" ready.")
    try:
        agent = {"Authorization": f"Agent {key}"}
        scrape_headers = {"Authorization": f"Bearer {TOKEN}"}

        def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            status, text = _http(port, "GET", "/metrics", headers=scrape_headers)
            assert status == 200, text
            return samples(text)

        assert _http(port, "GET", "/metrics", headers={})[0] == 403
        before = scrape()
        assert value(before, "tracemem_decisions_total", status="open") == 0

        status, created = _http(
            port,
            "POST",
            "/api/v1/decisions",
            headers=agent,
            body={"intent": "ops.metrics.check", "automation_mode": "autonomous"},
        )
        assert status == 201, created
        decision_id = created["decision_id"]
        assert (
            _http(
                port,
                "POST",
                f"/api/v1/decisions/{decision_id}/context",
                headers=agent,
                body={"context": {"step": "one"}},
            )[0]
            == 201
        )
        status, asked = _http(
            port,
            "POST",
            f"/api/v1/decisions/{decision_id}/approvals",
            headers=agent,
            body={"approval_route_id": "route_ops"},
        )
        assert status == 201, asked
        approval_id = asked["approval_id"]
        wait_for(lambda: bool(receiver.successes()), 20, "the webhook to arrive")
        wait_for(
            lambda: Delivery.objects.get(approval_id=approval_id).status == "delivered",
            10,
            "the delivery to settle",
        )

        waiting = scrape()
        assert value(waiting, "tracemem_approvals_pending") == 1
        assert value(waiting, "tracemem_decisions_in_flight", status="needs_approval") == 1
        assert value(waiting, "tracemem_approvals_requested_total", route="route_ops") == 1
        # Counted by the Celery worker, a process of its own, and seen through the web's /metrics.
        assert value(waiting, "tracemem_delivery_attempts_total", channel="webhook", result="ok") == 1
        assert value(waiting, "tracemem_deliveries_total", channel="webhook", outcome="delivered") == 1
        assert value(waiting, "tracemem_delivery_attempt_duration_seconds_count", channel="webhook") == 1
        assert value(waiting, "tracemem_delivery_latency_seconds_count", channel="webhook") == 1
        assert value(waiting, "tracemem_outbox_backlog", channel="webhook") == 0

        status, voted = _http(
            port,
            "POST",
            f"/api/v1/approvals/{approval_id}/approve",
            headers={"Authorization": f"Token {reviewer.token}"},
            body={"rationale": "looks right"},
        )
        assert status == 200, voted
        status, closed = _http(
            port, "POST", f"/api/v1/decisions/{decision_id}/close", headers=agent, body={"action": "commit"}
        )
        assert status == 200, closed
        after = scrape()
    finally:
        worker.stop()
        web.stop()

    for decision_status in ("open", "needs_approval", "approved", "committed"):
        assert value(after, "tracemem_decisions_total", status=decision_status) == 1, decision_status
    assert value(after, "tracemem_decision_duration_seconds_count", status="committed") == 1
    assert value(after, "tracemem_approvals_resolved_total", outcome="approved") == 1
    assert value(after, "tracemem_approval_resolution_seconds_count", outcome="approved") == 1
    assert value(after, "tracemem_approval_votes_total", choice="approve", channel="api") == 1
    assert value(after, "tracemem_approvals_pending") == 0
    assert value(after, "tracemem_decisions_in_flight", status="needs_approval") == 0
    # Requests by door and operation, added up over both gunicorn workers: the agent's four REST
    # calls and the reviewer's vote, each exactly once.
    assert total(after, "tracemem_requests_total", door="rest") == 5
    assert (
        value(after, "tracemem_requests_total", door="rest", operation="decision-create", status="201") == 1
    )
    assert total(after, "tracemem_request_duration_seconds_count", door="rest") == 5
    assert value(after, "tracemem_state_source_up", source="decisions.apps.decisions_state") == 1


def test_the_grafana_dashboard_plots_only_metrics_tracemem_exports() -> None:
    import re
    from pathlib import Path

    from prometheus_client import REGISTRY

    dashboard = json.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text()
    )
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"\b(tracemem_[a-z_]+)", expr)}
    exported = {s.name for family in REGISTRY.collect() for s in family.samples} | {
        family.name for family in REGISTRY.collect()
    }
    state = {
        "tracemem_decisions_in_flight",
        "tracemem_approvals_pending",
        "tracemem_approval_oldest_pending_age_seconds",
        "tracemem_outbox_backlog",
        "tracemem_heartbeat_timestamp_seconds",
        "tracemem_state_source_up",
    }
    declared = (
        exported | state | {f"{name}_bucket" for name in exported} | {f"{name}_total" for name in exported}
    )
    assert used and used <= declared, sorted(used - declared)
    assert len(dashboard["panels"]) == len({p["id"] for p in dashboard["panels"]})


@pytest.mark.django_db
def test_mcp_requests_are_counted_by_tool_and_an_unknown_tool_name_is_not_echoed(agent_and_key: Any) -> None:
    _, key = agent_and_key
    labels = {"door": "mcp", "operation": "mcp:tools/call:capabilities_get", "status": "200"}
    unknown = {"door": "mcp", "operation": "mcp:tools/call:unknown", "status": "200"}
    before, before_unknown = (
        metrics.value("tracemem_requests_total", **labels),
        metrics.value("tracemem_requests_total", **unknown),
    )
    for name in ("capabilities_get", "no_such_tool_" + secrets.token_hex(3)):
        response = Client().post(
            "/mcp",
            json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": {}}}
            ),
            content_type="application/json",
            HTTP_ACCEPT="application/json, text/event-stream",
            HTTP_AUTHORIZATION=f"Agent {key}",
        )
        assert response.status_code == 200
    assert metrics.value("tracemem_requests_total", **labels) == before + 1
    assert metrics.value("tracemem_requests_total", **unknown) == before_unknown + 1


def test_a_bad_metrics_allow_entry_is_refused_naming_it(settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from tracemem_site.metrics_view import allowed_networks

    settings.TRACEMEM_METRICS_ALLOW = ["10.0.0.0/8", "not-a-network"]
    with pytest.raises(ImproperlyConfigured, match="TRACEMEM_METRICS_ALLOW: 'not-a-network'"):
        allowed_networks()


@pytest.mark.django_db
def test_a_forged_forwarded_for_does_not_pass_the_address_check(settings: Any) -> None:
    """Issue 18 (audit): without a trusted proxy, X-Forwarded-For is the caller's own claim."""
    settings.TRACEMEM_METRICS_TOKEN = TOKEN
    settings.TRACEMEM_METRICS_ALLOW = ["10.9.0.0/16"]
    settings.TRACEMEM_TRUSTED_PROXY_COUNT = 0
    forged = Client().get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="10.9.4.2")
    assert forged.status_code == 403


@pytest.mark.django_db
def test_metrics_show_how_long_the_oldest_pending_approval_has_waited(settings: Any, make_agent: Any) -> None:
    """Issue 18 (audit): approvals pending and their age, read at scrape time."""
    from datetime import timedelta

    from django.utils import timezone

    from approvals.models import Approval
    from tests.ui_scenario import decision_needing_approval
    from tests.ui_scenario import make_route as make_refund_route

    settings.TRACEMEM_METRICS_TOKEN = TOKEN
    make_refund_route()
    agent, _ = make_agent("waiting-agent")
    _, older = decision_needing_approval(agent)
    decision_needing_approval(agent, intent="customer.refund.second")
    Approval.objects.filter(pk=older.pk).update(requested_at=timezone.now() - timedelta(hours=2))
    scraped = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert scraped.status_code == 200
    got = samples(scraped.content.decode())
    assert value(got, "tracemem_approvals_pending") == 2
    assert 7200 <= value(got, "tracemem_approval_oldest_pending_age_seconds") < 7200 + 60
