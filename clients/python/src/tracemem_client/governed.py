"""``@governed``: run a function only when TraceMem allows it, and leave the proof in the trace.

::

    @governed(client, intent="code.refactor.execute", policy="code_change_policy_v1")
    def refactor(component: str, change_type: str) -> str:
        ...

Each call:

1. binds the call's arguments to the function's parameter names (``inspect.signature``) — these
   are the policy inputs (``self``/``cls`` and names in ``exclude`` left out; ``inputs=`` maps them
   yourself). Every input must be JSON-serialisable, else :class:`GovernanceError` (step
   ``inputs``) is raised before anything is sent: an argument is never silently dropped;
2. creates a decision with ``intent``, ``automation_mode`` and ``metadata`` plus
   ``{"function": "<module>.<qualname>"}``;
3. evaluates ``policy`` on the inputs (no policy: the inputs are recorded as a context event);
   ``deny`` aborts the decision and raises :class:`GovernanceRefused` — the function never runs
   (in ``override`` mode a deny asks for an approval instead, which can lift it);
4. when the server says an approval is needed (``approval_required`` after a ``requires_exception``
   outcome, or a mode that needs a grant: ``propose``, ``approve``, ``override``), requests one and
   waits (``decision_wait``) up to ``approval_timeout`` seconds; rejected or expired →
   :class:`ApprovalRejected`, no answer in time → the decision is aborted (which cancels the
   approval) and :class:`ApprovalTimedOut` is raised;
5. runs the function; if it raises, the decision is aborted (the reason names the exception type,
   never its text) and the exception propagates unchanged;
6. records ``{"result": ...}`` as context — the return value if it is JSON-serialisable, else
   ``{"type": ...}`` only (``result_summary=`` decides what is recorded);
7. commits, and returns the function's result.

The trace of an allowed call reads ``created, evaluate, context, close``; with an approval
``created, evaluate, approval_requested, approval_vote, approval_resolved, context, close``.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, ParamSpec, TypeVar

from tracemem_client.client import Client, Decision
from tracemem_client.errors import (
    ApprovalRejected,
    ApprovalTimedOut,
    GovernanceError,
    GovernanceRefused,
    TraceMemError,
)
from tracemem_client.types import AutomationMode, Evaluation

P = ParamSpec("P")
R = TypeVar("R")

_IMPLICIT = ("self", "cls")


@dataclass(frozen=True)
class GovernedCall(Generic[R]):
    """What :meth:`GovernedFunction.with_decision` returns: the value and the closed decision."""

    value: R
    decision: Decision


def _json_ready(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _type_name(value: Any) -> str:
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def default_result_summary(value: Any) -> Any:
    """The return value itself when it is JSON, else only its type (its text might hold secrets)."""
    if _json_ready(value):
        return value
    return {"type": _type_name(value), "note": "not JSON-serialisable; pass result_summary= to record it"}


class GovernedFunction(Generic[P, R]):
    """The decorated function: call it as before; ``with_decision`` also returns the decision."""

    def __init__(
        self,
        fn: Callable[P, R],
        client: Client,
        *,
        intent: str,
        automation_mode: AutomationMode,
        policy: str | None,
        metadata: Mapping[str, Any] | None,
        inputs: Callable[..., Mapping[str, Any]] | None,
        exclude: Sequence[str],
        approval_title: str | None,
        approval_message: str | None,
        approval_route_id: str | None,
        approval_timeout: float | None,
        result_summary: Callable[[Any], Any],
    ) -> None:
        if inspect.iscoroutinefunction(fn):
            raise TypeError("@governed wraps synchronous functions (the client is synchronous)")
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.client = client
        self.intent = intent
        self.automation_mode = automation_mode
        self.policy = policy
        self.metadata = dict(metadata or {})
        self.inputs = inputs
        self.exclude = frozenset(exclude)
        self.approval_title = approval_title
        self.approval_message = approval_message
        self.approval_route_id = approval_route_id
        self.approval_timeout = approval_timeout
        self.result_summary = result_summary
        self.signature = inspect.signature(fn)
        self.name = f"{fn.__module__}.{fn.__qualname__}"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.with_decision(*args, **kwargs).value

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        # Decorating a method: bind like a function would, so ``self`` reaches the function.
        return self if instance is None else _BoundGoverned(self, instance)

    # --- the steps ---------------------------------------------------------------------------

    def policy_inputs(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The policy inputs of one call (raises TypeError for a call the function would refuse)."""
        if self.inputs is not None:
            produced = self.inputs(*args, **kwargs)
            if not isinstance(produced, Mapping):
                raise GovernanceError(
                    f"inputs= must return a mapping, got {_type_name(produced)}",
                    step="inputs",
                    decision_id=None,
                )
            values = dict(produced)
        else:
            bound = self.signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = {}
            for name, value in bound.arguments.items():
                kind = self.signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    values.update({k: v for k, v in value.items() if k not in self.exclude})
                elif name not in self.exclude and name not in _IMPLICIT:
                    values[name] = list(value) if kind is inspect.Parameter.VAR_POSITIONAL else value
        for name, value in values.items():
            if not _json_ready(value):
                raise GovernanceError(
                    f"argument {name!r} of {self.name} ({_type_name(value)}) is not JSON-serialisable, so the "
                    f"policy cannot see it; leave it out with exclude=({name!r},) or map the arguments "
                    "to policy inputs with inputs=lambda ...: {...}",
                    step="inputs",
                    decision_id=None,
                )
        return values

    def with_decision(self, *args: P.args, **kwargs: P.kwargs) -> GovernedCall[R]:
        inputs = self.policy_inputs(*args, **kwargs)
        try:
            decision = self.client.open_decision(
                self.intent, self.automation_mode, metadata={**self.metadata, "function": self.name}
            )
        except TraceMemError as exc:
            raise GovernanceError(
                f"could not create the decision: {exc}", step="create", decision_id=None, cause=exc
            ) from exc
        steps = _Steps(decision, self.name)
        evaluation = None
        policy = self.policy
        if policy is not None:
            evaluation = steps.server("evaluate", lambda: decision.evaluate(policy, inputs=inputs))
            self._refuse_on_deny(steps, evaluation)
        else:
            steps.server(
                "context", lambda: decision.add_context({"function": self.name, "arguments": inputs})
            )
        if self._needs_approval(steps, evaluation):
            self._approve(steps, evaluation)
        try:
            value = self.fn(*args, **kwargs)
        except BaseException as exc:
            steps.abort(f"{type(exc).__name__} raised by {self.name}")
            raise
        steps.function_ran(value)
        record = {"result": self.result_summary(value)}
        steps.server("record", lambda: decision.add_context(record, summary=f"{self.name} returned"))
        steps.server("close", lambda: decision.commit(reason=f"{self.name} ran and returned"))
        return GovernedCall(value, decision)

    def _refuse_on_deny(self, steps: _Steps, evaluation: Evaluation) -> None:
        if evaluation["outcome"] != "deny" or self.automation_mode == "override":
            return
        rule = evaluation["rationale"].get("rule")
        message = evaluation["rationale"].get("message") or "denied"
        error = GovernanceRefused(
            f"policy {evaluation['policy_id']} v{evaluation['policy_version']} answered deny"
            f"{f' (rule {rule})' if rule else ''}: {message}; {self.name} did not run",
            decision_id=steps.decision.decision_id,
            outcome="deny",
            rule=rule,
            policy_id=evaluation["policy_id"],
            policy_version=evaluation["policy_version"],
        )
        steps.refuse(error, f"policy {evaluation['policy_id']} denied{f' (rule {rule})' if rule else ''}")

    def _needs_approval(self, steps: _Steps, evaluation: Evaluation | None) -> bool:
        if evaluation is not None and evaluation["outcome"] == "deny":
            return True  # override mode: only a granted approval lifts the deny
        # The server knows every gate (mode, exception outcomes, earlier grants): ask it.
        return steps.server("approval", steps.decision.get)["approval_required"]

    def _approve(self, steps: _Steps, evaluation: Evaluation | None) -> None:
        decision = steps.decision
        # The policy's message explains an exception or a deny; an "allow" message is no reason to ask.
        reason = (
            evaluation["rationale"].get("message")
            if evaluation is not None and evaluation["outcome"] != "allow"
            else None
        )
        requested = steps.server(
            "approval",
            lambda: decision.request_approval(
                title=self.approval_title or f"Approve {self.name}",
                message=self.approval_message
                or reason
                or f"{self.name} runs in {self.automation_mode} mode, which needs an approval",
                approval_route_id=self.approval_route_id,
            ),
        )
        approval_id = requested["approval_id"]
        waited = steps.server("wait", lambda: decision.wait_for_approval(timeout=self.approval_timeout))
        status = waited["approval_status"]
        if status == "approved":
            return
        if status == "pending":
            steps.refuse(
                ApprovalTimedOut(
                    f"approval {approval_id} was not answered within {self.approval_timeout} s; the decision "
                    f"was aborted and the approval cancelled; {self.name} did not run",
                    decision_id=decision.decision_id,
                    approval_id=approval_id,
                    timeout=self.approval_timeout or 0.0,
                ),
                f"no approval within {self.approval_timeout} s",
            )
        resolution = self._resolution(decision)
        rationale = "; ".join(
            v["rationale"]
            for v in resolution.get("votes", [])
            if v.get("vote") == "reject" and v.get("rationale")
        )
        by = ", ".join(str(v.get("name")) for v in resolution.get("rejected_by", []))
        steps.refuse(
            ApprovalRejected(
                f"approval {approval_id} was {status}{f' by {by}' if by else ''}"
                f"{f': {rationale}' if rationale else ''}; {self.name} did not run",
                decision_id=decision.decision_id,
                approval_id=approval_id,
                status=str(status),
                rationale=rationale or None,
                rejected_by=list(resolution.get("rejected_by", [])),
            ),
            f"approval {status}",
        )

    @staticmethod
    def _resolution(decision: Decision) -> dict[str, Any]:
        """The last ``approval_resolved`` payload (votes, rationale), or {} if it cannot be read."""
        try:
            resolved = [e for e in decision.events() if e["type"] == "approval_resolved"]
        except TraceMemError:
            return {}
        return dict(resolved[-1]["payload"]) if resolved else {}


class _BoundGoverned:
    """A governed method looked up on an instance."""

    def __init__(self, governed: GovernedFunction[Any, Any], instance: Any) -> None:
        self._governed = governed
        self._instance = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._governed(self._instance, *args, **kwargs)

    def with_decision(self, *args: Any, **kwargs: Any) -> GovernedCall[Any]:
        return self._governed.with_decision(self._instance, *args, **kwargs)


class _Steps:
    """Runs the server calls of one governed call; a refusal aborts the decision and names its step."""

    def __init__(self, decision: Decision, name: str) -> None:
        self.decision = decision
        self.name = name
        self.ran = False
        self.value: Any = None

    def function_ran(self, value: Any) -> None:
        self.ran, self.value = True, value

    def server(self, step: str, call: Callable[[], R]) -> R:
        try:
            return call()
        except TraceMemError as exc:
            if self.ran:
                message = f"{self.name} ran and returned, but the {step} step failed: {exc}"
            else:
                message = f"{step} failed: {exc}; {self.name} did not run"
            error = GovernanceError(
                message,
                step=step,
                decision_id=self.decision.decision_id,
                cause=exc,
                function_ran=self.ran,
                result=self.value,
            )
            refused = exc.status is not None and 400 <= exc.status < 500
            if step == "record":
                # The function ran: say so with a commit, noting the missing record.
                self._close_quietly(error, "commit", "ran; its result could not be recorded")
            elif not self.ran or refused:
                # Nothing ran, or the server refused the commit: the block is over, close it. (A lost
                # answer to the commit may have committed it: then it is left as it is.)
                self._close_quietly(error, "abort", f"[{exc.code}] at the {step} step")
            raise error from exc

    def refuse(self, error: GovernanceError, reason: str) -> NoReturn:
        self._close_quietly(error, "abort", reason)
        raise error

    def abort(self, reason: str) -> None:
        try:
            self.decision.abort(reason=reason)
        except TraceMemError:
            pass  # the caller's own exception is what matters; the decision stays open

    def _close_quietly(self, error: GovernanceError, action: str, reason: str) -> None:
        try:
            if action == "commit":
                self.decision.commit(reason=f"{self.name} {reason}")
            else:
                self.decision.abort(reason=reason)
        except TraceMemError as failed:
            error.abort_error = failed


def governed(
    client: Client,
    *,
    intent: str,
    automation_mode: AutomationMode = "autonomous",
    policy: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    inputs: Callable[..., Mapping[str, Any]] | None = None,
    exclude: Sequence[str] = (),
    approval_title: str | None = None,
    approval_message: str | None = None,
    approval_route_id: str | None = None,
    approval_timeout: float | None = 900.0,
    result_summary: Callable[[Any], Any] = default_result_summary,
) -> Callable[[Callable[P, R]], GovernedFunction[P, R]]:
    """Govern a function with a TraceMem decision per call (see the module docstring)."""

    def decorate(fn: Callable[P, R]) -> GovernedFunction[P, R]:
        return GovernedFunction(
            fn,
            client,
            intent=intent,
            automation_mode=automation_mode,
            policy=policy,
            metadata=metadata,
            inputs=inputs,
            exclude=exclude,
            approval_title=approval_title,
            approval_message=approval_message,
            approval_route_id=approval_route_id,
            approval_timeout=approval_timeout,
            result_summary=result_summary,
        )

    return decorate
