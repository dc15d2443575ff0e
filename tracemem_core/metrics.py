"""Process-local counters for what operators must see (dependency errors, fallbacks, deferrals).

A deliberately small seam: code counts events with :func:`incr`; tests and the future ``/metrics``
endpoint (SPEC §12) read them with :func:`value` / :func:`snapshot`. Names follow Prometheus
conventions (``*_total``) so an exporter can publish them as they are. Counts live in the process
that made them (each gunicorn worker and Celery worker has its own), as Prometheus counters do.
"""

from __future__ import annotations

import threading
from collections import Counter

_lock = threading.Lock()
_counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()


def _key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


def incr(name: str, amount: int = 1, **labels: str) -> None:
    with _lock:
        _counts[_key(name, labels)] += amount


def value(name: str, **labels: str) -> int:
    with _lock:
        return _counts[_key(name, labels)]


def snapshot() -> dict[tuple[str, tuple[tuple[str, str], ...]], int]:
    """Every counter of this process: ``{(name, ((label, value), ...)): count}``."""
    with _lock:
        return dict(_counts)
