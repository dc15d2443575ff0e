"""OpenTelemetry traces (issue 18): spans reach a real local OTLP/HTTP receiver.

TraceMem runs as operators run it (``scripts/serve.sh`` and ``scripts/worker.sh``) with only the
standard ``OTEL_*`` environment set. The receiver is an HTTP server in this test that decodes what
the exporter POSTs to ``/v1/traces`` (OTLP protobuf). One approval request must give one trace:
the Django request, its SQL, the Celery publish, the worker's task run and its outgoing webhook
POST — with TraceMem's ids as attributes and no payload anywhere.
"""

from __future__ import annotations

import base64
import http.server
import json
import secrets
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Group
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from approvals.models import WebhookEndpoint
from decisions import selectors as decision_selectors
from tests.appr_helpers import make_route
from tests.fault_helpers import Process, Receiver, RedisServer, free_port, process_env, wait_for

SECRET_MARKER = "payload-marker-" + secrets.token_hex(6)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


@dataclass
class Span:
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class OTLPReceiver:
    """A local OTLP/HTTP traces endpoint: records every span it is sent."""

    spans: list[Span] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> OTLPReceiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                receiver.record(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def record(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        with self.lock:
            self.raw.append(body)
            for resource_spans in request.resource_spans:
                resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append(
                            Span(
                                name=span.name,
                                kind=span.kind,
                                trace_id=span.trace_id.hex(),
                                span_id=span.span_id.hex(),
                                parent_id=span.parent_span_id.hex(),
                                attributes={a.key: _value(a.value) for a in span.attributes},
                                resource=resource,
                            )
                        )

    def snapshot(self) -> list[Span]:
        with self.lock:
            return list(self.spans)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def otlp() -> Iterator[OTLPReceiver]:
    receiver = OTLPReceiver().start()
    yield receiver
    receiver.close()


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def webhook() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _post(port: int, path: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any], str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(), method="POST"
    )
    request.add_header("Authorization", f"Agent {key}")
    request.add_header("Content-Type", "application/json")
    request.add_header("X-Request-ID", f"otel-test-{secrets.token_hex(4)}")
    with urllib.request.urlopen(request, timeout=20) as response:
        return response.status, json.loads(response.read()), response.headers["X-Request-ID"]


@pytest.mark.django_db(transaction=True)
def test_an_approval_request_is_one_trace_from_the_request_to_the_webhook_with_ids_and_no_payload(
    tmp_path: Path, otlp: OTLPReceiver, redis: RedisServer, webhook: Receiver, make_agent: Any
) -> None:
    WebhookEndpoint.objects.create(
        name="otel_hook",
        url=webhook.url("ok"),
        signing_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    )
    make_route(
        "route_otel",
        group=Group.objects.create(name="otel_approvers"),
        channels=[{"type": "webhook", "endpoint": "otel_hook"}],
    )
    agent, key = make_agent("otel-agent")
    port = free_port()
    env = process_env(
        redis.url,
        TRACEMEM_HOST="127.0.0.1",
        TRACEMEM_PORT=str(port),
        TRACEMEM_WEB_WORKERS="1",
        TRACEMEM_METRICS_DIR=str(tmp_path / "metrics"),
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{otlp.port}",
        OTEL_SERVICE_NAME="tracemem-under-test",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
        OTEL_BSP_SCHEDULE_DELAY="100",
        DB_CONN_MAX_AGE="60",  # kept connections, as production: our hot statements are prepared
    )
    web = Process("serve.sh", tmp_path / "serve.log", env).start(ready="Booting worker")
    worker = Process("worker.sh", tmp_path / "worker.log", env, ["deliveries"]).start(ready=" ready.")
    try:
        status, created, _ = _post(
            port,
            "/api/v1/decisions",
            key,
            {
                "intent": "ops.trace.check",
                "automation_mode": "autonomous",
                "metadata": {"note": SECRET_MARKER},
            },
        )
        assert status == 201
        decision_id = created["decision_id"]
        status, asked, request_id = _post(
            port,
            f"/api/v1/decisions/{decision_id}/approvals",
            key,
            {"approval_route_id": "route_otel", "message": SECRET_MARKER},
        )
        assert status == 201
        wait_for(lambda: bool(webhook.successes()), 20, "the webhook")

        def server_span() -> Span | None:
            return next(
                (
                    s
                    for s in otlp.snapshot()
                    if s.kind == 2 and s.attributes.get("tracemem.request_id") == request_id
                ),
                None,
            )

        wait_for(lambda: server_span() is not None, 20, "the request's server span", every=0.2)
        root = server_span()
        assert root is not None

        def in_trace() -> list[Span]:
            return [s for s in otlp.snapshot() if s.trace_id == root.trace_id]

        # The worker's spans arrive after its batch delay: wait for the webhook POST's client span.
        wait_for(
            lambda: any(s.kind == 3 and s.resource.get("tracemem.role") == "worker" for s in in_trace()),
            20,
            "the worker's outgoing HTTP span in the same trace",
            every=0.2,
        )
    finally:
        worker.stop()
        web.stop()

    spans = in_trace()
    assert root.attributes["tracemem.decision_id"] == decision_id
    assert root.attributes["tracemem.agent_id"] == agent.agent_id
    assert root.attributes["tracemem.approval_id"] == asked["approval_id"]
    assert root.attributes.get("http.route") or root.name.startswith("POST")
    assert root.resource["service.name"] == "tracemem-under-test"
    assert root.resource["deployment.environment"] == "test"
    assert root.resource["tracemem.role"] == "web"
    # psycopg: the request's SQL, as children of the request.
    sql = [
        s
        for s in spans
        if s.attributes.get("db.system") == "postgresql" or s.attributes.get("db.system.name") == "postgresql"
    ]
    assert sql and all(s.resource["tracemem.role"] in ("web", "worker") for s in sql)
    assert any(s.parent_id == root.span_id for s in sql)
    # Our own prepared hot statements too (tracemem_core/postgresql): the decision's lock, say.
    statements = [str(s.attributes.get("db.statement") or s.attributes.get("db.query.text")) for s in sql]
    assert any(text.startswith(decision_selectors._LOCK_SQL.split(" FROM ")[0]) for text in statements), (
        statements
    )
    # Celery: the publish in the web process and the run in the worker, in this one trace.
    celery_spans = [s for s in spans if "approvals.deliver_delivery" in s.name]
    assert {s.resource["tracemem.role"] for s in celery_spans} == {"web", "worker"}
    # The webhook POST (httpx), made by the worker, to the local receiver.
    client = [s for s in spans if s.kind == 3 and s.resource["tracemem.role"] == "worker"]
    assert any(
        str(webhook.port) in str(s.attributes.get("url.full") or s.attributes.get("http.url")) for s in client
    )
    # Ids only: neither the metadata nor the approval message is in any span the receiver got.
    assert all(SECRET_MARKER.encode() not in body for body in otlp.raw)


def test_tracing_is_off_without_an_otlp_endpoint() -> None:
    from tracemem_core import telemetry

    assert telemetry.enabled() is False  # the suite's environment sets no OTEL_* endpoint
    assert telemetry.setup("web") is False
