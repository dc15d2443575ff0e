"""OpenTelemetry traces, configured from the standard ``OTEL_*`` environment (docs/operations.md).

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set and
``OTEL_SDK_DISABLED`` is not true. When on, each process (gunicorn worker: ``tracemem_site.wsgi``;
Celery worker and beat: ``tracemem_site.celery``'s signals) exports spans over OTLP/HTTP
(protobuf) for Django requests, psycopg queries, Celery publishes and task runs (one trace from the
request that queued a notification to the worker that sent it) and outgoing HTTP (httpx: webhooks
and data sources; urllib: Slack). Everything else — service name, resource attributes, headers,
timeouts, the sampler — is the SDK's own reading of ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_TRACES_SAMPLER`` and friends.

Spans carry ids, never payloads: :func:`annotate` adds ``tracemem.decision_id`` /
``tracemem.agent_id`` / ``tracemem.approval_id``; SQL statements are recorded without their
parameters (psycopg binds them separately), and request bodies are never recorded.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from opentelemetry import trace

from tracemem_core.env import env_bool

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_configured: str | None = None


def enabled() -> bool:
    if env_bool("OTEL_SDK_DISABLED", False):
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def active() -> bool:
    """Whether this process traces (``setup`` installed the instrumentations)."""
    return _configured is not None


def _check_protocol() -> None:
    protocols = {
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", ""),
        "OTEL_EXPORTER_OTLP_PROTOCOL": os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", ""),
    }
    for name, value in protocols.items():
        if value.strip() and value.strip() != "http/protobuf":
            raise ImproperlyConfigured(
                f"{name}={value.strip()!r} is not supported: TraceMem exports OTLP over HTTP (http/protobuf, "
                "usually port 4318); unset it or set http/protobuf"
            )


def setup(role: str) -> bool:
    """Install the tracer provider and the instrumentations once per process; True if it did."""
    global _configured
    if not enabled():
        return False
    with _lock:
        if _configured is not None:
            return False
        _check_protocol()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.django import DjangoInstrumentor
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
        from opentelemetry.instrumentation.urllib import URLLibInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        attributes = {"tracemem.role": role}
        if not os.environ.get("OTEL_SERVICE_NAME"):
            attributes["service.name"] = "tracemem"
        provider = TracerProvider(resource=Resource.create(attributes))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        DjangoInstrumentor().instrument(tracer_provider=provider)
        PsycopgInstrumentor().instrument(
            tracer_provider=provider, enable_commenter=False, skip_dep_check=True
        )
        CeleryInstrumentor().instrument(tracer_provider=provider)
        HTTPXClientInstrumentor().instrument(tracer_provider=provider)
        URLLibInstrumentor().instrument(tracer_provider=provider)
        _configured = role
        logger.info("OpenTelemetry traces on (%s): exporting over OTLP/HTTP", role)
        return True


def shutdown() -> None:
    """Flush spans still queued (a worker that stops must not drop its last spans)."""
    provider = trace.get_tracer_provider()
    flush = getattr(provider, "shutdown", None)
    if _configured is not None and flush is not None:
        flush()


def annotate(
    *, decision_id: str | None = None, agent_id: str | None = None, approval_id: str | None = None
) -> None:
    """Put TraceMem's ids on the current span (a no-op when tracing is off). Ids only, never data."""
    span = trace.get_current_span()
    if not span.is_recording():
        return
    for key, value in (
        ("tracemem.decision_id", decision_id),
        ("tracemem.agent_id", agent_id),
        ("tracemem.approval_id", approval_id),
    ):
        if value:
            span.set_attribute(key, str(value))


def traced_cursor_class(connection: Any, cursor_class: type[Any]) -> type[Any]:
    """``cursor_class`` as psycopg's instrumentation traces a connection's own cursors (a span per
    statement), when traces are on; ``cursor_class`` itself when they are off. For cursors built
    outside the connection's cursor factory (tracemem_core.postgresql's prepared statements). The
    traced class is made once per connection, with the connection's attributes on its spans."""
    if _configured is None:
        return cursor_class
    traced: type[Any] | None = getattr(connection, "_tracemem_traced_cursor", None)
    if traced is None or not issubclass(traced, cursor_class):
        import psycopg
        from opentelemetry.instrumentation import psycopg as otel_psycopg

        instrumentor = otel_psycopg.PsycopgInstrumentor
        integration = otel_psycopg.DatabaseApiIntegration(
            otel_psycopg.__name__,
            instrumentor._DATABASE_SYSTEM,
            connection_attributes=instrumentor._CONNECTION_ATTRIBUTES,
            version=otel_psycopg.__version__,
            tracer_provider=trace.get_tracer_provider(),
            connect_module=cast(Any, psycopg),
        )
        integration.get_connection_attributes(connection)
        traced = otel_psycopg._new_cursor_factory(db_api=integration, base_factory=cursor_class)
        connection._tracemem_traced_cursor = traced
    return traced
