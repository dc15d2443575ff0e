"""The agent client: every tool of docs/contract/tools.md/docs/contract/interfaces.md as a method over the REST mapping of docs/contract/errors.md.

Method names are the tool names, arguments are the tool's arguments (the decision id first), and
each returns the tool's result object. Refusals raise the :mod:`tracemem_client.errors` family.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote

import httpx

from tracemem_client._http import DEFAULT_TIMEOUT, HTTP
from tracemem_client.errors import InvalidArgument, TraceMemError, UnsupportedByServer
from tracemem_client.types import (
    Approval,
    ApprovalList,
    ApprovalRequested,
    AutomationMode,
    Capabilities,
    CloseAction,
    ContextAdded,
    ContextsAdded,
    DecisionClosed,
    DecisionCreated,
    DecisionInfo,
    Evaluation,
    Product,
    ProductList,
    ReadResult,
    Receipt,
    RecordCategory,
    RecordResult,
    SearchResult,
    Trace,
    TraceEvent,
    WaitResult,
    WriteResult,
)

API = "/api/v1"
WAIT_MAX_SECONDS = 50  # docs/contract/interfaces.md: decision_wait's timeout_seconds is at most 50


def _segment(value: str) -> str:
    """An id as one path segment: ``/`` or ``..`` in it cannot reach another endpoint."""
    if not isinstance(value, str) or not value:
        raise InvalidArgument("an id must be a non-empty string", details={"value": repr(value)})
    return quote(value, safe="")


def _drop_none(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


class _Base:
    def __init__(self, base_url: str, authorization: str, **options: Any) -> None:
        self._http = HTTP(base_url, authorization, **options)

    @property
    def base_url(self) -> str:
        return self._http.base_url

    def close(self) -> None:
        """Close the connection pool (also done by ``with Client(...) as client:``)."""
        self._http.close()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: Mapping[str, Any] | None = None, **kw: Any) -> Any:
        return self._http.request("GET", API + path, params=params, **kw)

    def _post(self, path: str, body: Mapping[str, Any], **kw: Any) -> Any:
        return self._http.request("POST", API + path, json=dict(body), **kw)


class Client(_Base):
    """An agent's connection to TraceMem, authenticated with its agent key (``tmem_…``).

    >>> client = Client("https://tracemem.example.com", os.environ["TRACEMEM_API_KEY"])
    >>> client.capabilities_get()["name"]

    ``timeout`` is the per-request timeout in seconds (``decision_wait`` adds its own wait on top).
    ``retries`` (default 0) enables the safe retries described in :mod:`tracemem_client._http`;
    ``max_retry_wait`` caps how long one ``Retry-After`` may make a call sleep.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = 0,
        max_retry_wait: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise ValueError("api_key is required (an agent key, tmem_…)")
        super().__init__(
            base_url,
            f"Agent {api_key}",
            timeout=timeout,
            retries=retries,
            max_retry_wait=max_retry_wait,
            transport=transport,
            sleep=sleep,
        )
        # None: not known yet; False: the server has no /wait endpoint, poll decision_get instead.
        self._native_wait: bool | None = None

    @classmethod
    def from_env(cls, **options: Any) -> Client:
        """A client from ``TRACEMEM_URL`` and ``TRACEMEM_API_KEY``."""
        url = os.environ.get("TRACEMEM_URL")
        key = os.environ.get("TRACEMEM_API_KEY")
        if not url or not key:
            raise ValueError("set TRACEMEM_URL and TRACEMEM_API_KEY")
        return cls(url, key, **options)

    def __enter__(self) -> Client:
        return self

    # --- discovery ---------------------------------------------------------------------------

    def capabilities_get(self) -> Capabilities:
        """Who this key is, which products and policies it may use, and the server's version."""
        return cast(Capabilities, self._get("/capabilities"))

    def products_list(self, purpose: str | None = None) -> ProductList:
        return cast(ProductList, self._get("/products", {"purpose": purpose}))

    def product_get(self, product: str) -> Product:
        return cast(Product, self._get(f"/products/{_segment(product)}"))

    # --- envelope ----------------------------------------------------------------------------

    def decision_create(
        self,
        intent: str,
        automation_mode: AutomationMode,
        *,
        actor: str | None = None,
        instance: str | None = None,
        version: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> DecisionCreated:
        body = _drop_none(
            intent=intent,
            automation_mode=automation_mode,
            actor=actor,
            instance=instance,
            version=version,
            metadata=dict(metadata) if metadata is not None else None,
        )
        return cast(DecisionCreated, self._post("/decisions", body))

    def decision_add_context(
        self, decision_id: str, context: Mapping[str, Any], *, summary: str | None = None
    ) -> ContextAdded:
        body = _drop_none(context=dict(context), summary=summary)
        return cast(ContextAdded, self._post(f"/decisions/{_segment(decision_id)}/context", body))

    def decision_add_contexts(self, decision_id: str, contexts: Sequence[Mapping[str, Any]]) -> ContextsAdded:
        """Batch context (docs/contract/interfaces.md): up to 100 objects in one call and one transaction.

        Raises :class:`UnsupportedByServer` on a server older than batch context. There is
        deliberately no silent fallback to one call per object: that would not be all-or-nothing.
        """
        path = f"/decisions/{_segment(decision_id)}/context"
        try:
            return cast(ContextsAdded, self._post(path, {"contexts": [dict(c) for c in contexts]}))
        except InvalidArgument as exc:
            allowed = exc.details.get("allowed")
            if exc.field == "contexts" and isinstance(allowed, list) and "contexts" not in allowed:
                raise UnsupportedByServer(
                    f"{self.base_url} does not take batch context (contexts=[...], docs/contract/interfaces.md); upgrade "
                    "the server, or call decision_add_context once per object",
                    status=exc.status,
                ) from exc
            raise

    def decision_get(self, decision_id: str) -> DecisionInfo:
        return cast(DecisionInfo, self._get(f"/decisions/{_segment(decision_id)}"))

    def decision_trace(
        self, decision_id: str, *, after_seq: int | None = None, limit: int | None = None
    ) -> Trace:
        """One page of the trace: events with ``seq > after_seq``, at most ``limit`` of them.

        ``next_after_seq`` is the cursor of the next page (None on the last). A server older than
        trace pages returns every event and no cursor; :meth:`iter_trace_events` handles both.
        """
        params = {"after_seq": after_seq, "limit": limit}
        return cast(Trace, self._get(f"/decisions/{_segment(decision_id)}/trace", params))

    def _trace_pages(self, decision_id: str, after_seq: int, page_size: int | None) -> Iterator[Trace]:
        """Each page with only the events after the cursor (an older server ignores ``after_seq``
        and returns everything, in one page without ``next_after_seq``)."""
        cursor = after_seq
        while True:
            page = self.decision_trace(decision_id, after_seq=cursor or None, limit=page_size)
            page["events"] = [event for event in page["events"] if event["seq"] > cursor]
            yield page
            next_cursor = page.get("next_after_seq")
            if next_cursor is None:
                return
            if next_cursor <= cursor:
                raise TraceMemError(
                    f"the server's trace cursor did not advance (after_seq {cursor} → {next_cursor})",
                    code="bad_response",
                )
            cursor = next_cursor

    def iter_trace_events(
        self, decision_id: str, *, after_seq: int = 0, page_size: int | None = None
    ) -> Iterator[TraceEvent]:
        """Every event after ``after_seq``, in order, walking the pages."""
        for page in self._trace_pages(decision_id, after_seq, page_size):
            yield from page["events"]

    def decision_trace_all(self, decision_id: str, *, page_size: int | None = None) -> Trace:
        """The whole trace as one object: the decision as of the last page, and every event."""
        pages = list(self._trace_pages(decision_id, 0, page_size))
        whole = pages[-1]  # there is always a first page
        whole["events"] = [event for page in pages for event in page["events"]]
        whole.pop("next_after_seq", None)
        return whole

    def decision_close(
        self,
        decision_id: str,
        action: CloseAction,
        *,
        summary: str | None = None,
        reason: str | None = None,
    ) -> DecisionClosed:
        body = _drop_none(action=action, summary=summary, reason=reason)
        return cast(DecisionClosed, self._post(f"/decisions/{_segment(decision_id)}/close", body))

    def decision_receipt(self, decision_id: str) -> Receipt:
        return cast(Receipt, self._get(f"/decisions/{_segment(decision_id)}/receipt"))

    def receipt_keys(self) -> list[dict[str, Any]]:
        """The server's published receipt keys (``/.well-known/tracemem/receipt-keys``, public)."""
        return cast(list[dict[str, Any]], self._http.request("GET", "/.well-known/tracemem/receipt-keys"))

    # --- waiting -----------------------------------------------------------------------------

    def decision_wait(self, decision_id: str, timeout_seconds: float = 25) -> WaitResult:
        """Block until the decision's approval leaves ``pending`` (or its status changes), or until
        ``timeout_seconds`` (≤ 50) pass; ``timed_out`` says which.

        Uses ``GET /api/v1/decisions/{id}/wait`` (docs/contract/interfaces.md). Against a server without that endpoint
        it polls ``decision_get`` with backoff (0.5 s growing to 5 s) instead, with the same result.
        If no approval is pending when called, it returns at once.
        """
        if isinstance(timeout_seconds, bool) or not 0 <= timeout_seconds <= WAIT_MAX_SECONDS:
            raise InvalidArgument(
                f"timeout_seconds must be between 0 and {WAIT_MAX_SECONDS}; for longer waits call "
                "wait_for_approval or call decision_wait again",
                details={"field": "timeout_seconds"},
            )
        if self._native_wait is not False:
            try:
                result = self._get(
                    f"/decisions/{_segment(decision_id)}/wait",
                    # Whole seconds, rounded up: what a server that takes an integer accepts.
                    {"timeout_seconds": math.ceil(timeout_seconds)},
                    timeout=self._http.timeout + math.ceil(timeout_seconds),
                )
                self._native_wait = True
                return cast(WaitResult, result)
            except TraceMemError as exc:
                if self._native_wait or exc.status not in (404, 405):
                    raise
                # 404 is an unknown decision, or a server without the endpoint: decision_get tells.
                self.decision_get(decision_id)
                self._native_wait = False
        return self._poll_wait(decision_id, timeout_seconds)

    def _poll_wait(self, decision_id: str, timeout_seconds: float) -> WaitResult:
        deadline = time.monotonic() + timeout_seconds
        first = self.decision_get(decision_id)
        current = first
        delay = 0.5
        while current["approval_status"] == "pending" and current["status"] == first["status"]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return cast(WaitResult, {**current, "timed_out": True})
            self._http.sleep(min(delay, remaining))
            delay = min(delay * 1.5, 5.0)
            current = self.decision_get(decision_id)
        return cast(WaitResult, {**current, "timed_out": False})

    def wait_for_approval(self, decision_id: str, *, timeout: float | None = 900.0) -> WaitResult:
        """Call :meth:`decision_wait` until the approval leaves ``pending`` or ``timeout`` seconds
        pass (None: until the server resolves it, e.g. by the approval's own expiry)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            step = float(WAIT_MAX_SECONDS) if deadline is None else deadline - time.monotonic()
            result = self.decision_wait(decision_id, max(0.0, min(step, WAIT_MAX_SECONDS)))
            if result["approval_status"] != "pending":
                return cast(WaitResult, {**result, "timed_out": False})
            if deadline is not None and time.monotonic() >= deadline:
                return cast(WaitResult, {**result, "timed_out": True})

    # --- data --------------------------------------------------------------------------------

    def decision_read(
        self,
        decision_id: str,
        product: str,
        purpose: str,
        *,
        query: Mapping[str, Any] | None = None,
        allow_multiple: bool = False,
    ) -> ReadResult:
        body = _drop_none(
            product=product,
            purpose=purpose,
            query=dict(query) if query is not None else None,
            allow_multiple=allow_multiple,
        )
        return cast(ReadResult, self._post(f"/decisions/{_segment(decision_id)}/read", body))

    def decision_write(
        self,
        decision_id: str,
        product: str,
        purpose: str,
        mutation: Mapping[str, Any],
        *,
        operation: str | None = None,
        keys: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        idempotency_key: str | None = None,
    ) -> WriteResult:
        """A write through a data product. With an ``idempotency_key`` the call is safe to repeat,
        so it is also retried after a lost answer when ``retries`` is on."""
        if keys is not None:
            keys = dict(keys) if isinstance(keys, Mapping) else [dict(k) for k in keys]
        body = _drop_none(
            product=product,
            purpose=purpose,
            mutation=dict(mutation),
            operation=operation,
            keys=keys,
            idempotency_key=idempotency_key,
        )
        return cast(
            WriteResult,
            self._post(
                f"/decisions/{_segment(decision_id)}/write", body, idempotent=idempotency_key is not None
            ),
        )

    # --- policy and approval -----------------------------------------------------------------

    def decision_evaluate(
        self,
        decision_id: str,
        policy_id: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        inputs_ref: str | None = None,
    ) -> Evaluation:
        body = _drop_none(
            policy_id=policy_id, inputs=dict(inputs) if inputs is not None else None, inputs_ref=inputs_ref
        )
        return cast(Evaluation, self._post(f"/decisions/{_segment(decision_id)}/evaluate", body))

    def decision_request_approval(
        self,
        decision_id: str,
        *,
        title: str | None = None,
        message: str | None = None,
        approval_route_id: str | None = None,
        require_rationale: bool | None = None,
        expires_in_seconds: int | None = None,
    ) -> ApprovalRequested:
        body = _drop_none(
            title=title,
            message=message,
            approval_route_id=approval_route_id,
            require_rationale=require_rationale,
            expires_in_seconds=expires_in_seconds,
        )
        return cast(ApprovalRequested, self._post(f"/decisions/{_segment(decision_id)}/approvals", body))

    # --- engineering decisions ---------------------------------------------------------------

    def decision_record(
        self,
        title: str,
        category: RecordCategory,
        context: str,
        decision: str,
        rationale: str,
        *,
        alternatives_considered: Any = None,
        tags: Sequence[str] | None = None,
        constraints: Any = None,
        consequences: Any = None,
        supersedes: str | None = None,
    ) -> RecordResult:
        body = _drop_none(
            title=title,
            category=category,
            context=context,
            decision=decision,
            rationale=rationale,
            alternatives_considered=alternatives_considered,
            tags=list(tags) if tags is not None else None,
            constraints=constraints,
            consequences=consequences,
            supersedes=supersedes,
        )
        return cast(RecordResult, self._post("/records", body))

    def decision_search(
        self,
        *,
        query: str | None = None,
        category: RecordCategory | None = None,
        tags: Sequence[str] | None = None,
        status: str | None = None,
        limit: int | None = None,
    ) -> SearchResult:
        """This agent's engineering decision records (``decision_record``), newest first."""
        params = _drop_none(
            query=query,
            category=category,
            tags=",".join(tags) if tags else None,
            status=status,
            limit=limit,
        )
        return cast(SearchResult, self._get("/records", params))

    # --- the decision as an object ------------------------------------------------------------

    def open_decision(
        self,
        intent: str,
        automation_mode: AutomationMode,
        *,
        metadata: Mapping[str, Any] | None = None,
        actor: str | None = None,
        instance: str | None = None,
        version: str | None = None,
    ) -> Decision:
        """Create a decision and return it as a :class:`Decision` (you close it)."""
        created = self.decision_create(
            intent, automation_mode, metadata=metadata, actor=actor, instance=instance, version=version
        )
        return Decision(self, created)

    def decision(
        self,
        intent: str,
        automation_mode: AutomationMode,
        *,
        metadata: Mapping[str, Any] | None = None,
        actor: str | None = None,
        instance: str | None = None,
        version: str | None = None,
        summary: str | None = None,
        reason: str | None = None,
    ) -> DecisionBlock:
        """``with client.decision(intent=..., automation_mode=...) as d:`` — see :class:`DecisionBlock`."""
        return DecisionBlock(
            self,
            dict(
                intent=intent,
                automation_mode=automation_mode,
                metadata=metadata,
                actor=actor,
                instance=instance,
                version=version,
            ),
            summary=summary,
            reason=reason,
        )


class Decision:
    """One decision, with the envelope tools bound to its id. Returned by
    :meth:`Client.open_decision` and by ``with client.decision(...) as d``."""

    def __init__(self, client: Client, created: DecisionCreated) -> None:
        self.client = client
        self.created = created
        self.decision_id = created["decision_id"]
        #: The close result once this object closed the decision (commit or abort).
        self.closed: DecisionClosed | None = None

    def __repr__(self) -> str:
        return f"<Decision {self.decision_id}{' closed' if self.closed else ''}>"

    def add_context(self, context: Mapping[str, Any], *, summary: str | None = None) -> ContextAdded:
        return self.client.decision_add_context(self.decision_id, context, summary=summary)

    def add_contexts(self, contexts: Sequence[Mapping[str, Any]]) -> ContextsAdded:
        return self.client.decision_add_contexts(self.decision_id, contexts)

    def get(self) -> DecisionInfo:
        return self.client.decision_get(self.decision_id)

    def trace(self) -> Trace:
        return self.client.decision_trace_all(self.decision_id)

    def events(self) -> Iterator[TraceEvent]:
        return self.client.iter_trace_events(self.decision_id)

    def evaluate(
        self, policy_id: str, *, inputs: Mapping[str, Any] | None = None, inputs_ref: str | None = None
    ) -> Evaluation:
        return self.client.decision_evaluate(
            self.decision_id, policy_id, inputs=inputs, inputs_ref=inputs_ref
        )

    def request_approval(self, **options: Any) -> ApprovalRequested:
        return self.client.decision_request_approval(self.decision_id, **options)

    def wait(self, timeout_seconds: float = 25) -> WaitResult:
        return self.client.decision_wait(self.decision_id, timeout_seconds)

    def wait_for_approval(self, *, timeout: float | None = 900.0) -> WaitResult:
        return self.client.wait_for_approval(self.decision_id, timeout=timeout)

    def read(self, product: str, purpose: str, **options: Any) -> ReadResult:
        return self.client.decision_read(self.decision_id, product, purpose, **options)

    def write(self, product: str, purpose: str, mutation: Mapping[str, Any], **options: Any) -> WriteResult:
        return self.client.decision_write(self.decision_id, product, purpose, mutation, **options)

    def receipt(self) -> Receipt:
        return self.client.decision_receipt(self.decision_id)

    def commit(self, *, summary: str | None = None, reason: str | None = None) -> DecisionClosed:
        self.closed = self.client.decision_close(self.decision_id, "commit", summary=summary, reason=reason)
        return self.closed

    def abort(self, *, reason: str | None = None, summary: str | None = None) -> DecisionClosed:
        self.closed = self.client.decision_close(self.decision_id, "abort", summary=summary, reason=reason)
        return self.closed


def _note(exc: BaseException, text: str) -> None:
    add_note = getattr(exc, "add_note", None)  # Python 3.11+
    if add_note is not None:
        add_note(text)


class DecisionBlock:
    """Opens a decision on ``__enter__`` and closes it on ``__exit__``.

    * The block ends normally → ``commit`` (with ``summary``/``reason`` given to
      :meth:`Client.decision` or set on the block's ``summary``/``reason`` attributes). If the
      server refuses the commit (e.g. ``approval_required`` in ``propose`` mode without a grant),
      the decision is aborted — nobody else will close it once the block is over — and the
      refusal is raised.
    * The block raises → ``abort``, and the exception propagates unchanged. The abort reason
      names the exception's *type* only (``"ValueError raised in the decision block"``), never its
      text: messages often carry data (customer names, SQL, tokens in URLs) that the server's
      redaction cannot recognise. Record what matters with ``d.add_context`` (redacted by the
      server) before raising.
    * Closed inside the block (``d.commit()`` / ``d.abort()``) → nothing more is done.
    """

    def __init__(
        self,
        client: Client,
        create: dict[str, Any],
        *,
        summary: str | None = None,
        reason: str | None = None,
    ) -> None:
        self._client = client
        self._create = create
        self.summary = summary
        self.reason = reason
        self.decision: Decision | None = None

    def __enter__(self) -> Decision:
        self.decision = self._client.open_decision(**self._create)
        return self.decision

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        decision = self.decision
        if decision is None or decision.closed is not None:
            return
        if exc is not None:
            try:
                decision.abort(reason=f"{type(exc).__name__} raised in the decision block")
            except TraceMemError as abort_error:
                _note(exc, f"tracemem: aborting {decision.decision_id} failed too: {abort_error}")
            return
        try:
            decision.commit(summary=self.summary, reason=self.reason)
        except TraceMemError as refused:
            if refused.status is not None and 400 <= refused.status < 500:
                try:
                    decision.abort(reason=f"commit refused: [{refused.code}]")
                    _note(refused, f"tracemem: {decision.decision_id} was aborted because commit was refused")
                except TraceMemError as abort_error:
                    _note(refused, f"tracemem: aborting {decision.decision_id} failed too: {abort_error}")
            raise


class ReviewerClient(_Base):
    """A person's connection (personal access token ``tmpat_…``) to the approvals API (docs/contract/admin.md).

    Takes the same keyword options as :class:`Client` (``timeout``, ``retries``, ...).
    """

    def __init__(self, base_url: str, token: str, **options: Any) -> None:
        if not token:
            raise ValueError("token is required (a personal access token, tmpat_…)")
        super().__init__(base_url, f"Token {token}", **options)

    def __enter__(self) -> ReviewerClient:
        return self

    def approvals_list(self, status: str | None = "pending") -> ApprovalList:
        return cast(ApprovalList, self._get("/approvals", {"status": status}))

    def approval_get(self, approval_id: str) -> Approval:
        return cast(Approval, self._get(f"/approvals/{_segment(approval_id)}"))

    def approval_approve(self, approval_id: str, rationale: str | None = None) -> Approval:
        body = _drop_none(rationale=rationale)
        return cast(Approval, self._post(f"/approvals/{_segment(approval_id)}/approve", body))

    def approval_reject(self, approval_id: str, rationale: str | None = None) -> Approval:
        body = _drop_none(rationale=rationale)
        return cast(Approval, self._post(f"/approvals/{_segment(approval_id)}/reject", body))


__all__ = ["Client", "Decision", "DecisionBlock", "ReviewerClient"]
