"""Per-agent request rate limit for the agent doors (REST and MCP): docs/contract/errors.md ``429 rate_limited``.

One budget per agent across both doors, counted in fixed windows in the shared cache with an atomic
increment (Redis in production, so every gunicorn worker and host shares the count; two cache
round trips per request, whatever the limit). Humans (reviewers, admins) are not throttled here.

The store being down never fails a request (docs/contract/approvals.md: an outage delays, never refuses): the count
falls back to this process alone until the store answers again (``tracemem_core.shared_cache``), so
an agent keeps a limit, at worst one budget per web process, and every call still goes through.
"""

from __future__ import annotations

import math
import threading
import time
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from tracemem_core import metrics
from tracemem_core.actor import Actor
from tracemem_core.shared_cache import guarded

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@lru_cache(maxsize=8)
def parse_rate(rate: str) -> tuple[int, int] | None:
    """``"1200/minute"`` → (1200, 60); ``"off"``, ``"0"`` or empty → None (no limit)."""
    text = rate.strip().lower()
    if text in ("", "0", "off", "none"):
        return None
    count, _, period = text.partition("/")
    seconds = _PERIODS.get(period.rstrip("s"))
    if not (count.isascii() and count.isdigit()) or int(count) < 1 or seconds is None:
        raise ImproperlyConfigured(
            f"TRACEMEM_AGENT_RATE_LIMIT must look like 1200/minute (second|minute|hour|day) or off; got {rate!r}"
        )
    return int(count), seconds


class AgentRateThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        actor = request.auth
        limit = parse_rate(str(getattr(settings, "TRACEMEM_AGENT_RATE_LIMIT", "") or ""))
        if limit is None or not isinstance(actor, Actor) or actor.agent is None:
            return True
        agent = actor.agent
        allowed, window = limit
        now = time.time()
        key = f"tracemem:rate:{agent.agent_id}:{window}:{int(now // window)}"
        count = guarded("rate_limit", lambda: _count_shared(key, window), fallback=_FALLBACK)
        if count is None:
            count = _local.count(key, window, now)
        self.retry_after = max(1, math.ceil(window - now % window))
        if count > allowed:
            metrics.RATE_LIMITED.labels("mcp" if request.path.startswith("/mcp") else "rest").inc()
            return False
        return True

    def wait(self) -> float | None:
        return getattr(self, "retry_after", None)


_FALLBACK = "counting the rate limit per-process"


def _count_shared(key: str, window: int) -> int:
    # The backend itself: ``django.core.cache.cache`` is a proxy, never a RedisCache.
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        # One round trip (issue 17): INCR creates the window's key at 1; EXPIRE (re)sets its lifetime,
        # which only has to outlast the window, since every window has a key of its own.
        full_key = cache.make_and_validate_key(key)
        pipe = cache._cache.get_client(full_key, write=True).pipeline(transaction=False)
        pipe.incr(full_key)
        pipe.expire(full_key, window + 1)
        count, _ = pipe.execute()
        return int(count)
    cache.add(key, 0, timeout=window + 1)
    try:
        return int(cache.incr(key))
    except ValueError:  # the window's key expired between add and incr
        cache.set(key, 1, timeout=window + 1)
        return 1


class _LocalCounts:
    """Fixed-window counts in this process only: the fallback while the shared store is down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}

    def count(self, key: str, window: int, now: float) -> int:
        with self._lock:
            if len(self._counts) > 10_000:  # drop finished windows now and then
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            count, expires = self._counts.get(key, (0, now + window + 1))
            self._counts[key] = (count + 1, expires)
            return count + 1


_local = _LocalCounts()
