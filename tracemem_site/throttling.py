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


class AgentRateThrottle(BaseThrottle):
    def allow_request(self, request: Request, view: Any) -> bool:
        actor = request.auth
        if not isinstance(actor, Actor) or actor.agent is None:
            return True
        counted: rate_limit.Counted | None = getattr(request, _COUNTED, None)
        if counted is None:
            window = rate_limit.agent_window(actor.agent.agent_id)
            if window is None:
                return True
            counted = rate_limit.count(window)
        self.retry_after = counted.window.retry_after
        if counted.count > counted.window.allowed:
            metrics.RATE_LIMITED.labels("mcp" if request.path.startswith("/mcp") else "rest").inc()
            return False
        return True

    def wait(self) -> float | None:
        return getattr(self, "retry_after", None)
