"""Heartbeats of the periodic schedule: is beat ticking, and are its ticks being run?

``beat`` is stamped by the beat process each time it queues a task (and when it starts);
``tick`` by whoever runs ``approvals.tick`` (a worker, or ``manage.py tick`` on the embedded
default). Each stamp is a file under ``TRACEMEM_VAR_DIR/heartbeat/`` (its modification time: the
docker-compose beat healthcheck reads it without starting Django, ``scripts/heartbeat_check.py``)
and a key in the shared cache (so web processes on other hosts see it too). ``/readyz`` and
``/metrics`` report both (``tracemem_heartbeat_timestamp_seconds{process="beat"|"tick"}``).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from tracemem_core.shared_cache import guarded

logger = logging.getLogger(__name__)

NAMES = ("beat", "tick")
_in_beat = False


def _path(name: str) -> Path:
    return Path(settings.VAR_DIR) / "heartbeat" / name


def stamp(name: str) -> None:
    now = time.time()
    try:
        path = _path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{now:.3f}\n")
    except OSError as exc:
        logger.warning("could not write the %s heartbeat file: %s", name, exc)
    guarded(
        "heartbeat", lambda: cache.set(f"tracemem:heartbeat:{name}", now, timeout=None), fallback="file only"
    )


def last(name: str) -> float | None:
    """When ``name`` was last stamped (Unix time), the newer of the file and the shared cache."""
    seen: list[float] = []
    try:
        seen.append(_path(name).stat().st_mtime)
    except OSError:
        pass
    cached = guarded("heartbeat", lambda: cache.get(f"tracemem:heartbeat:{name}"), fallback="file only")
    if isinstance(cached, int | float):
        seen.append(float(cached))
    return max(seen) if seen else None


def beat_started() -> None:
    global _in_beat
    _in_beat = True
    stamp("beat")


def beat_published() -> None:
    """After any task publish: a stamp only in the beat process (web processes publish too)."""
    if _in_beat:
        stamp("beat")


def report() -> dict[str, float | None]:
    """Seconds since each heartbeat (None: never seen)."""
    now = time.time()
    result: dict[str, float | None] = {}
    for name in NAMES:
        at = last(name)
        result[name] = None if at is None else round(max(0.0, now - at), 1)
    return result
