"""The per-agent request budget (docs/contract/errors.md ``429 rate_limited``): its windows and counts.

One budget per agent across the agent doors (REST and MCP), counted in fixed windows in the shared
cache with an atomic increment (Redis in production, so every web worker and host shares the
count). Usually the count rides on authentication's own round trip (``agents.keycache.confirm``);
:func:`count` takes it otherwise. ``tracemem_site.throttling`` decides the 429 from it.

The store being down never fails a request (docs/contract/approvals.md: an outage delays, never
refuses): the count falls back to this process alone until the store answers again
(``tracemem_core.shared_cache``), so an agent keeps a limit, at worst one budget per web process.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured

from tracemem_core.shared_cache import guarded

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_FALLBACK = "counting the rate limit per-process"


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


@dataclass(frozen=True)
class Window:
    """The fixed window an agent's request falls in: its counter and when the next one starts."""

    key: str  # the counter's cache key, one per agent and window
    seconds: int
    allowed: int
    retry_after: int  # whole seconds until the next window

    @property
    def lifetime(self) -> int:
        # Only has to outlast the window: every window has a key of its own.
        return self.seconds + 1


@dataclass(frozen=True)
class Counted:
    """A request counted in its window: ``count`` requests so far, this one included."""

    window: Window
    count: int


def agent_window(agent_id: str) -> Window | None:
    """The window a request of ``agent_id`` made now counts in; None when the limit is off."""
    limit = parse_rate(str(getattr(settings, "TRACEMEM_AGENT_RATE_LIMIT", "") or ""))
    if limit is None:
        return None
    allowed, seconds = limit
    now = time.time()
    return Window(
        key=f"tracemem:rate:{agent_id}:{seconds}:{int(now // seconds)}",
        seconds=seconds,
        allowed=allowed,
        retry_after=max(1, math.ceil(seconds - now % seconds)),
    )


def count(window: Window) -> Counted:
    """Count one request in ``window``: in the shared cache, or in this process while it is down."""
    shared = guarded("rate_limit", lambda: count_shared(window.key, window.lifetime), fallback=_FALLBACK)
    return Counted(window, shared if shared is not None else _local.count(window.key, window.lifetime))


def count_shared(key: str, lifetime: int) -> int:
    """Increment ``key`` in the shared cache, creating it for ``lifetime`` seconds; the new count.
    Raises when the cache does (callers go through :func:`~tracemem_core.shared_cache.guarded`)."""
    # The backend itself: ``django.core.cache.cache`` is a proxy, never a RedisCache.
    cache = caches["default"]
    if isinstance(cache, RedisCache):
        # One round trip (issue 17): INCR creates the key at 1; EXPIRE (re)sets its lifetime.
        full_key = cache.make_and_validate_key(key)
        pipe = cache._cache.get_client(full_key, write=True).pipeline(transaction=False)
        pipe.incr(full_key)
        pipe.expire(full_key, lifetime)
        value, _ = pipe.execute()
        return int(value)
    cache.add(key, 0, timeout=lifetime)
    try:
        return int(cache.incr(key))
    except ValueError:  # the key expired between add and incr
        cache.set(key, 1, timeout=lifetime)
        return 1


class _LocalCounts:
    """Fixed-window counts in this process only: the fallback while the shared store is down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, float]] = {}

    def count(self, key: str, lifetime: int) -> int:
        now = time.time()
        with self._lock:
            if len(self._counts) > 10_000:  # drop finished windows now and then
                self._counts = {k: v for k, v in self._counts.items() if v[1] > now}
            value, expires = self._counts.get(key, (0, now + lifetime))
            self._counts[key] = (value + 1, expires)
            return value + 1


_local = _LocalCounts()
