"""Prometheus metrics (docs/contract/interfaces.md: ``GET /metrics``), counted where things happen.

Counters and histograms are prometheus-client objects declared once here, so every name an
operator sees (and ``docs/grafana-dashboard.json`` plots) is in one list. Code counts with the
objects, or with :func:`incr` by name; state changes count on commit (:func:`on_commit`), so a
rolled-back transaction is never counted.

Processes: with ``PROMETHEUS_MULTIPROC_DIR`` set (``scripts/serve.sh``, ``worker.sh`` and ``beat.sh``
set it to ``$TRACEMEM_METRICS_DIR/<kind>``: ``web``, ``worker-deliveries``, ``worker-tasks``,
``beat``), each gunicorn worker and Celery worker writes its samples to files there and
``/metrics`` adds up every file under ``TRACEMEM_METRICS_DIR`` (prometheus-client's multiprocess
mode), so one scrape of any web process shows the whole host: requests served by every web worker and deliveries sent by the Celery workers. Without it
(``make run``, tests) the counts are this process's own, which on the embedded default is everything
(tasks run inline). Gauges of current state (approvals pending, outbox backlog, decisions by status,
the beat's heartbeat) are read at scrape time from the database and the cache by the sources the
apps register (:func:`register_state`), never kept in a process.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Callable, Iterable, Iterator

from django.db import transaction
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# Request latency: most calls take milliseconds; decision_wait may hold a request for up to 50 s.
_REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# Human-scale waits: an approval is resolved in seconds to days.
_HUMAN_BUCKETS = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600, 7 * 24 * 3600)
_NETWORK_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUESTS = Counter(
    "tracemem_requests_total",
    "HTTP requests answered, by door (rest, mcp, html, admin, other), operation and status code",
    ["door", "operation", "status"],
)
REQUEST_SECONDS = Histogram(
    "tracemem_request_duration_seconds",
    "Time to answer an HTTP request, by door and operation",
    ["door", "operation"],
    buckets=_REQUEST_BUCKETS,
)
RATE_LIMITED = Counter(
    "tracemem_rate_limited_total", "Agent requests refused with 429 rate_limited", ["door"]
)
DECISIONS = Counter(
    "tracemem_decisions_total",
    "Decisions entering each status (open, needs_approval, approved, rejected, committed, aborted)",
    ["status"],
)
DECISION_SECONDS = Histogram(
    "tracemem_decision_duration_seconds",
    "Time from opening a decision to closing it, by final status",
    ["status"],
    buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
)
POLICY_EVALUATIONS = Counter(
    "tracemem_policy_evaluations_total", "Policy evaluations recorded, by outcome", ["outcome"]
)
APPROVALS_REQUESTED = Counter(
    "tracemem_approvals_requested_total", "Approval requests opened, by route", ["route"]
)
APPROVALS_RESOLVED = Counter(
    "tracemem_approvals_resolved_total",
    "Approval requests resolved, by outcome (approved, rejected, expired, cancelled)",
    ["outcome"],
)
APPROVAL_SECONDS = Histogram(
    "tracemem_approval_resolution_seconds",
    "Time from an approval request to its resolution, by outcome",
    ["outcome"],
    buckets=_HUMAN_BUCKETS,
)
APPROVAL_VOTES = Counter(
    "tracemem_approval_votes_total", "Votes cast, by choice and channel", ["choice", "channel"]
)
DELIVERY_ATTEMPTS = Counter(
    "tracemem_delivery_attempts_total",
    "Notification send attempts, by channel and result (ok, error)",
    ["channel", "result"],
)
DELIVERY_ATTEMPT_SECONDS = Histogram(
    "tracemem_delivery_attempt_duration_seconds",
    "Time one notification send attempt took (the receiver's answer included), by channel",
    ["channel"],
    buckets=_NETWORK_BUCKETS,
)
DELIVERIES = Counter(
    "tracemem_deliveries_total",
    "Notifications settled, by channel and outcome (delivered, failed)",
    ["channel", "outcome"],
)
DELIVERY_ATTEMPTS_USED = Histogram(
    "tracemem_delivery_attempts_used",
    "Attempts a settled notification took, by channel and outcome",
    ["channel", "outcome"],
    buckets=(1, 2, 3, 4, 5, 6, 8, 10, 15, 20),
)
DELIVERY_LATENCY = Histogram(
    "tracemem_delivery_latency_seconds",
    "Time from queueing a notification to its receiver accepting it, by channel",
    ["channel"],
    buckets=_NETWORK_BUCKETS + (60, 300, 900, 3600),
)
DELIVERY_DEFERRED = Counter(
    "tracemem_delivery_deferred_total",
    "Delivery looks put off without an attempt (destination busy or failing, row locked)",
    ["reason"],
)
CACHE_ERRORS = Counter(
    "tracemem_cache_errors_total", "Shared cache (Redis) calls that failed, by use", ["use"]
)
BROKER_ERRORS = Counter(
    "tracemem_broker_errors_total", "Task publishes to the broker (Redis) that failed, by use", ["use"]
)
DEPENDENCY_ERRORS = Counter(
    "tracemem_dependency_errors_total",
    "Calls answered 503 unavailable because a dependency was down, by dependency",
    ["dependency"],
)
TICKS = Counter("tracemem_ticks_total", "Runs of the periodic tick (approval expiry, re-dispatch)")

_BY_NAME: dict[str, Counter] = {
    f"{counter._name}_total": counter
    for counter in (
        RATE_LIMITED,
        DELIVERY_DEFERRED,
        CACHE_ERRORS,
        BROKER_ERRORS,
        DEPENDENCY_ERRORS,
    )
}


def incr(name: str, amount: int = 1, **labels: str) -> None:
    """Count ``name`` (a ``*_total`` counter declared above) now."""
    counter = _BY_NAME[name]
    (counter.labels(**labels) if labels else counter).inc(amount)


def value(name: str, **labels: str) -> float:
    """This process's count of a counter or histogram sample (tests)."""
    return REGISTRY.get_sample_value(name, labels) or 0


def on_commit(count: Callable[[], None]) -> None:
    """Count when the current transaction commits (at once outside one); never fails the caller."""

    def safely() -> None:
        try:
            count()
        except Exception:  # a metric must never break the operation it measures
            logger.exception("counting a metric failed")

    transaction.on_commit(safely)


# --- state read at scrape time ------------------------------------------------------------------

StateSource = Callable[[], Iterable[Metric]]
_state_sources: list[StateSource] = []


def register_state(source: StateSource) -> None:
    """``source()`` yields gauge families of current state (database, cache) on every scrape."""
    if source not in _state_sources:
        _state_sources.append(source)


def gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


class _StateCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "tracemem_state_source_up", "Whether each state source answered this scrape", labels=["source"]
        )
        for source in _state_sources:
            name = f"{source.__module__}.{source.__name__}"
            try:
                families = list(source())
            except Exception as exc:  # the database being down must not hide the counters
                logger.warning("metrics state source %s failed: %s", name, type(exc).__name__)
                up.add_metric([name], 0)
                continue
            up.add_metric([name], 1)
            yield from families
        yield up


# --- multiprocess mode --------------------------------------------------------------------------


def multiprocess_root() -> str | None:
    """Where every process's sample files are, when multiprocess mode is on: ``TRACEMEM_METRICS_DIR``
    (the entry points give each process kind a sub-directory of it as ``PROMETHEUS_MULTIPROC_DIR``)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return None
    return os.environ.get("TRACEMEM_METRICS_DIR") or directory


class _AllProcessesCollector(Collector):
    """prometheus-client's multiprocess collector over the sample files of every process kind."""

    def __init__(self, root: str) -> None:
        self.root = root

    def collect(self) -> Iterator[Metric]:
        files = sorted(glob.glob(os.path.join(self.root, "**", "*.db"), recursive=True))
        return iter(MultiProcessCollector.merge(files, accumulate=True))


def exposition_registry() -> CollectorRegistry:
    """What ``/metrics`` serves: every process's counters, plus the state gauges."""
    root = multiprocess_root()
    if root is None:
        registry: CollectorRegistry = REGISTRY
    else:
        registry = CollectorRegistry()
        registry.register(_AllProcessesCollector(root))
    if not getattr(registry, "_tracemem_state", False):
        registry.register(_StateCollector())
        registry._tracemem_state = True  # type: ignore[attr-defined]
    return registry
