"""Per-agent request rate limit for the agent doors (REST and MCP): docs/contract/errors.md ``429 rate_limited``.

One budget per agent across both doors (:mod:`tracemem_core.rate_limit`: the windows, the counts in
the shared cache, the per-process fallback while it is down). Each request is counted once:
authentication counts it when it checks a remembered agent key (one round trip to Redis for both,
``agents.keycache.confirm``) and leaves the count on the request (:func:`keep_count`); otherwise
(a key checked in the database, the OAuth door) the throttle counts it. The 429 is decided here.
Humans (reviewers, admins) are not throttled here.
"""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from tracemem_core import metrics, rate_limit
from tracemem_core.actor import Actor

_COUNTED = "_tracemem_rate_counted"


def counts_at_authentication(request: Request) -> bool:
    """Whether this request's view enforces the agent rate limit, so authentication may count it."""
    view = (request.parser_context or {}).get("view")
    return view is not None and any(issubclass(c, AgentRateThrottle) for c in view.throttle_classes)


def keep_count(request: Request, counted: rate_limit.Counted) -> None:
    """Authentication counted this request: the throttle uses that count instead of taking one."""
    setattr(request, _COUNTED, counted)


def over_limit(agent_id: str, counted: rate_limit.Counted | None, door: str) -> int | None:
    """Seconds to wait if this request of ``agent_id`` is over its rate limit, else None. ``counted``:
    authentication's count of it (:func:`keep_count`); without one the request is counted here."""
    if counted is None:
        window = rate_limit.agent_window(agent_id)
        if window is None:
            return None
        counted = rate_limit.count(window)
    if counted.count > counted.window.allowed:
        metrics.RATE_LIMITED.labels(door).inc()
        return counted.window.retry_after
    return None


class AgentRateThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        actor = request.auth
        if not isinstance(actor, Actor) or actor.agent is None:
            return True
        door = "mcp" if request.path.startswith("/mcp") else "rest"
        wait = over_limit(actor.agent.agent_id, getattr(request, _COUNTED, None), door)
        if wait is None:
            return True
        self.retry_after = wait
        return False

    def wait(self) -> float | None:
        return getattr(self, "retry_after", None)
