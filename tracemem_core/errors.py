"""The one family of domain errors (docs/contract/errors.md).

``str(exc)`` is ``"[code] message"``: the MCP door hands it to the agent verbatim, the REST door
renders ``{"error": {"code", "message", "details"}}`` with the status below. Messages are written
for whoever reads them: what was wrong and what to do next. They never contain secrets: anything
in them that looks like one is redacted when the error is made (``redaction.redact_strings``).
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "internal"
    http_status = 500

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        # Messages often quote what the caller sent (a purpose, an id, a value a policy choked on):
        # whatever looks like a secret is replaced here, once for every door, log line and trace.
        from tracemem_core.redaction import redact_strings

        message = redact_strings(message)
        super().__init__(message)
        self.message = message
        self.details = redact_strings(details) if details else {}

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidArgument(DomainError):
    code = "invalid_argument"
    http_status = 400

    def __init__(
        self, message: str, *, field: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        merged = dict(details or {})
        if field is not None:
            merged.setdefault("field", field)
        super().__init__(message, details=merged)
        self.field = field


class Unauthenticated(DomainError):
    code = "unauthenticated"
    http_status = 401


class PermissionDenied(DomainError):
    code = "permission_denied"
    http_status = 403


class PurposeNotAllowed(DomainError):
    code = "purpose_not_allowed"
    http_status = 403


class PolicyDenied(DomainError):
    code = "policy_denied"
    http_status = 403


class NotFound(DomainError):
    code = "not_found"
    http_status = 404


class InvalidState(DomainError):
    code = "invalid_state"
    http_status = 409


class Conflict(DomainError):
    code = "conflict"
    http_status = 409


class ApprovalRequired(DomainError):
    code = "approval_required"
    http_status = 409


class RateLimited(DomainError):
    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after: int, details: dict[str, Any] | None = None) -> None:
        super().__init__(message, details={**(details or {}), "retry_after": retry_after})
        self.retry_after = retry_after


class Unavailable(DomainError):
    """A dependency (the database) is down; the call was not applied and may be repeated.

    ``applied`` is False when the transaction certainly rolled back, ``"unknown"`` when the
    connection was lost while committing (then the caller must look before repeating).
    """

    code = "unavailable"
    http_status = 503

    def __init__(self, message: str, *, retry_after: int, applied: bool | str = False) -> None:
        super().__init__(message, details={"retry_after": retry_after, "applied": applied})
        self.retry_after = retry_after
