"""The server's error codes (docs/contract/errors.md) as exceptions, plus what can go wrong on the way there.

Every refusal from the server is a :class:`TraceMemError` whose ``code`` is the stable code of the
error body ``{"error": {"code", "message", "details"}}``; catch the subclass you can handle::

    try:
        client.decision_write(...)
    except ApprovalRequired:
        ...  # request an approval, wait, try again
"""

from __future__ import annotations

from typing import Any


class TraceMemError(Exception):
    """A refusal or failure of a call. ``str(error)`` is ``"[code] message"``, like the server's."""

    code: str = "error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}
        #: HTTP status of the answer; None when no answer came (:class:`TransportError`).
        self.status = status

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class InvalidArgument(TraceMemError):
    """400 (413 for a body too large): ``details["field"]`` names the argument at fault."""

    code = "invalid_argument"

    @property
    def field(self) -> str | None:
        field = self.details.get("field")
        return field if isinstance(field, str) else None


class Unauthenticated(TraceMemError):
    """401: ``details["reason"]`` is missing, malformed, unknown, expired, revoked or agent_disabled."""

    code = "unauthenticated"


class PermissionDenied(TraceMemError):
    code = "permission_denied"


class PurposeNotAllowed(TraceMemError):
    code = "purpose_not_allowed"


class PolicyDenied(TraceMemError):
    code = "policy_denied"


class NotFound(TraceMemError):
    """404, also for another agent's decision (the server never says which exist)."""

    code = "not_found"


class InvalidState(TraceMemError):
    code = "invalid_state"


class Conflict(TraceMemError):
    code = "conflict"


class ApprovalRequired(TraceMemError):
    code = "approval_required"


class _RetryAfter(TraceMemError):
    @property
    def retry_after(self) -> float | None:
        """Seconds the server asked us to wait (``Retry-After``, else ``details.retry_after``)."""
        value = self.details.get("retry_after")
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class RateLimited(_RetryAfter):
    """429: this agent's request budget is spent; nothing was applied. See ``retry_after``."""

    code = "rate_limited"


class Unavailable(_RetryAfter):
    """503: a dependency of the server is down and the call was NOT applied; safe to retry."""

    code = "unavailable"


class TransportError(TraceMemError):
    """No usable answer came back (connection refused, timeout, broken response).

    ``maybe_applied`` is False when the request never reached the server (it could not connect),
    True when it may have been processed (the answer was lost), so a non-idempotent call must not be
    repeated blindly.
    """

    code = "transport_error"

    def __init__(self, message: str, *, maybe_applied: bool) -> None:
        super().__init__(message, details={"maybe_applied": maybe_applied})
        self.maybe_applied = maybe_applied


class UnsupportedByServer(TraceMemError):
    """The server is older than the interface this method needs (e.g. batch context)."""

    code = "unsupported_by_server"


ERRORS_BY_CODE: dict[str, type[TraceMemError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        Unauthenticated,
        PermissionDenied,
        PurposeNotAllowed,
        PolicyDenied,
        NotFound,
        InvalidState,
        Conflict,
        ApprovalRequired,
        RateLimited,
        Unavailable,
    )
}


def error_from_response(status: int, body: Any, retry_after: float | None) -> TraceMemError:
    """The exception for an error answer: by the body's code, else a plain :class:`TraceMemError`."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        code = error["code"]
        message = str(error.get("message") or code)
        raw_details = error.get("details")
        details = dict(raw_details) if isinstance(raw_details, dict) else {}
    else:
        # Not TraceMem's error body (a proxy's page, an unknown route on an older server).
        code = f"http_{status}"
        message = f"HTTP {status} without a TraceMem error body"
        details = {}
    if retry_after is not None:
        details["retry_after"] = retry_after
    cls = ERRORS_BY_CODE.get(code, TraceMemError)
    return cls(message, code=code, details=details, status=status)


# --- the @governed decorator's refusals --------------------------------------------------------


class GovernanceError(Exception):
    """A governed call did not complete; ``step`` says where it stopped and ``str()`` says why.

    Steps, in order: ``inputs`` (the arguments could not become policy inputs; nothing was sent),
    ``create``, ``evaluate`` (or ``context``, recording the arguments when there is no policy),
    ``approval`` (asking whether one is needed, requesting it, or the reviewer's answer), ``wait``,
    ``record`` (recording the result), ``close``. ``function_ran`` is True only for ``record`` and
    ``close``: the function's side effects happened and ``result`` holds what it returned.
    ``cause`` is the server's refusal when there was one (its ``code``, ``message``, ``details``).
    Unless ``function_ran``, the decision was aborted (``abort_error`` is set if that failed too).
    """

    def __init__(
        self,
        message: str,
        *,
        step: str,
        decision_id: str | None,
        cause: TraceMemError | None = None,
        function_ran: bool = False,
        result: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.step = step
        self.decision_id = decision_id
        self.cause = cause
        self.function_ran = function_ran
        self.result = result
        self.abort_error: TraceMemError | None = None

    @property
    def code(self) -> str | None:
        """The server's error code when the server refused (``cause.code``)."""
        return self.cause.code if self.cause is not None else None

    def __str__(self) -> str:
        where = f" (decision {self.decision_id})" if self.decision_id else ""
        return f"[{self.step}] {self.message}{where}"


class GovernanceRefused(GovernanceError):
    """The policy answered ``deny``: the function did not run."""

    def __init__(
        self,
        message: str,
        *,
        decision_id: str,
        outcome: str,
        rule: str | None,
        policy_id: str,
        policy_version: int | None,
    ) -> None:
        super().__init__(message, step="evaluate", decision_id=decision_id)
        self.outcome = outcome
        self.rule = rule
        self.policy_id = policy_id
        self.policy_version = policy_version


class ApprovalRejected(GovernanceError):
    """A reviewer rejected the approval, or it expired (``status``): the function did not run."""

    def __init__(
        self,
        message: str,
        *,
        decision_id: str,
        approval_id: str | None,
        status: str,
        rationale: str | None,
        rejected_by: list[dict[str, Any]],
    ) -> None:
        super().__init__(message, step="approval", decision_id=decision_id)
        self.approval_id = approval_id
        self.status = status
        self.rationale = rationale
        self.rejected_by = rejected_by


class ApprovalTimedOut(GovernanceError):
    """Nobody answered within ``timeout`` seconds: the approval was cancelled, the function did not run."""

    def __init__(self, message: str, *, decision_id: str, approval_id: str | None, timeout: float) -> None:
        super().__init__(message, step="wait", decision_id=decision_id)
        self.approval_id = approval_id
        self.timeout = timeout
