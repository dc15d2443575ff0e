"""Per-agent request rate limit for the agent doors (REST and MCP): SPEC §4 ``429 rate_limited``.

One budget per agent across both doors, counted in fixed windows in the shared cache with an atomic
increment (Redis in production, so every gunicorn worker and host shares the count; two cache
round trips per request, whatever the limit). Humans (reviewers, admins) are not throttled here.
"""

from __future__ import annotations

import math
import time
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from agents.models import Agent

_PERIODS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@lru_cache(maxsize=8)
def parse_rate(rate: str) -> tuple[int, int] | None:
    """``"1200/minute"`` → (1200, 60); ``"off"``, ``"0"`` or empty → None (no limit)."""
    text = rate.strip().lower()
    if text in ("", "0", "off", "none"):
        return None
    count, _, period = text.partition("/")
    seconds = _PERIODS.get(period.rstrip("s"))
    if not count.isdigit() or int(count) < 1 or seconds is None:
        raise ImproperlyConfigured(
            f"TRACEMEM_AGENT_RATE_LIMIT must look like 1200/minute (second|minute|hour|day) or off; got {rate!r}"
        )
    return int(count), seconds


class AgentRateThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        agent = request.user
        limit = parse_rate(str(getattr(settings, "TRACEMEM_AGENT_RATE_LIMIT", "") or ""))
        if limit is None or not isinstance(agent, Agent):
            return True
        allowed, window = limit
        now = time.time()
        key = f"tracemem:rate:{agent.agent_id}:{window}:{int(now // window)}"
        cache.add(key, 0, timeout=window + 1)
        try:
            count = cache.incr(key)
        except ValueError:  # the window's key expired between add and incr
            cache.set(key, 1, timeout=window + 1)
            count = 1
        self.retry_after = max(1, math.ceil(window - now % window))
        return count <= allowed

    def wait(self) -> float | None:
        return getattr(self, "retry_after", None)
