"""One HTTP session with authentication, error mapping and the opt-in retry rules.

Retries (``retries=N``, off by default) repeat a call only when repeating it cannot apply it twice:

* ``429 rate_limited`` and ``503 unavailable``: the server guarantees nothing was applied, so any
  call is repeated, after ``Retry-After`` seconds (or a short backoff when the header is missing);
* the connection could not be made: the request never reached the server, so any call;
* the answer was lost (read timeout, broken connection) or a proxy answered 502/503/504 without
  TraceMem's error body: the call may have been applied, so only idempotent calls are repeated
  (GETs, and ``decision_write`` with an ``idempotency_key``).

A wait longer than ``max_retry_wait`` is not slept through: the error is raised at once with its
``retry_after`` so the caller can schedule the retry itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from tracemem_client import __version__
from tracemem_client.errors import (
    RateLimited,
    TraceMemError,
    TransportError,
    Unavailable,
    error_from_response,
)

_PROXY_STATUSES = (502, 503, 504)
DEFAULT_TIMEOUT = 30.0


def normalise_base_url(base_url: str) -> str:
    """``https://tm.example.com``, with or without a trailing ``/`` or ``/api/v1``."""
    url = base_url.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
    return url


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare from our server; fall back to the backoff


class HTTP:
    def __init__(
        self,
        base_url: str,
        authorization: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 0,
        max_retry_wait: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if retries < 0:
            raise ValueError("retries must be 0 or more")
        self.base_url = normalise_base_url(base_url)
        self.timeout = timeout
        self.retries = retries
        self.max_retry_wait = max_retry_wait
        self.sleep = sleep
        self._client = httpx.Client(
            base_url=self.base_url,
            timeout=timeout,
            transport=transport,
            headers={
                "Authorization": authorization,
                "Accept": "application/json",
                "User-Agent": f"tracemem-client/{__version__}",
            },
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> Any:
        """The JSON body of a 2xx answer, or the :class:`TraceMemError` of any other outcome."""
        if idempotent is None:
            idempotent = method == "GET"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        attempt = 0
        while True:
            outcome = self._once(method, path, json, query, timeout)
            if not isinstance(outcome, TraceMemError):
                return outcome
            delay = self._retry_delay(outcome, attempt, idempotent)
            if delay is None:
                raise outcome
            self.sleep(delay)
            attempt += 1

    def _once(
        self,
        method: str,
        path: str,
        body: Any,
        query: Mapping[str, Any],
        timeout: float | None,
    ) -> Any:
        try:
            response = self._client.request(
                method,
                path,
                json=body,
                params=query or None,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            return TransportError(
                f"cannot connect to {self.base_url}: {exc}; nothing was sent", maybe_applied=False
            )
        except httpx.TransportError as exc:
            return TransportError(
                f"{method} {path} failed after it was sent ({type(exc).__name__}: {exc}); "
                "the server may have applied it — check before repeating a change",
                maybe_applied=True,
            )
        try:
            data = response.json() if response.content else None
        except ValueError:
            data = None
        if response.is_success:
            if data is None and response.content:
                return TraceMemError(
                    f"{method} {path} answered {response.status_code} with a body that is not JSON",
                    code="bad_response",
                    status=response.status_code,
                )
            return data
        error = error_from_response(response.status_code, data, _retry_after(response))
        if error.code.startswith("http_"):
            error.message = (
                f"{method} {path} answered HTTP {response.status_code} without a TraceMem error body; "
                f"is {self.base_url} a TraceMem server (and recent enough for this call)?"
            )
        return error

    def _retry_delay(self, error: TraceMemError, attempt: int, idempotent: bool) -> float | None:
        if attempt >= self.retries:
            return None
        if isinstance(error, RateLimited | Unavailable):
            retryable = True
        elif isinstance(error, TransportError):
            retryable = idempotent or not error.maybe_applied
        else:
            retryable = idempotent and error.status in _PROXY_STATUSES and error.code.startswith("http_")
        if not retryable:
            return None
        hinted = error.retry_after if isinstance(error, RateLimited | Unavailable) else None
        delay = hinted if hinted is not None else min(0.5 * 2**attempt, 8.0)
        return None if delay > self.max_retry_wait else delay
