"""``@governed`` governs a real function against a running server (issue 16): the allowed path, the
deny path (the function never runs), the requires_exception path (a reviewer approves, then it
runs), rejection, timeout, the function's own exception, and each refusal naming its step."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tracemem_client import (
    ApprovalRejected,
    ApprovalTimedOut,
    Client,
    GovernanceError,
    GovernanceRefused,
    governed,
)

from decisions.models import Decision as DecisionRow
from tests.client_helpers import APPROVED_CALL, AnswerWhenAsked, Seeded, event_types

pytest_plugins = ["tests.client_fixtures"]  # fixtures: seeded, agent_client
pytestmark = pytest.mark.django_db(transaction=True)


def make_refactor(agent_client: Client, calls: list[tuple[str, str]], **options: Any) -> Any:
    options.setdefault("automation_mode", "autonomous")

    @governed(agent_client, intent="code.refactor.execute", policy="code_change_policy_v1", **options)
    def refactor(component: str, change_type: str) -> str:
        calls.append((component, change_type))
        return f"{change_type} of {component} done"

    return refactor


def test_allowed_call_runs_the_function_records_its_result_and_commits(agent_client: Client) -> None:
    calls: list[tuple[str, str]] = []
    refactor = make_refactor(agent_client, calls)

    done = refactor.with_decision("user-service", change_type="bugfix")

    assert done.value == "bugfix of user-service done"
    assert calls == [("user-service", "bugfix")]
    decision_id = done.decision.decision_id
    assert event_types(agent_client, decision_id) == ["created", "evaluate", "context", "close"]
    trace = agent_client.decision_trace_all(decision_id)
    created, evaluated, context, close = trace["events"]
    assert created["payload"]["metadata"] == {"function": f"{__name__}.make_refactor.<locals>.refactor"}
    assert evaluated["payload"]["outcome"] == "allow"
    assert evaluated["payload"]["inputs"] == {"component": "user-service", "change_type": "bugfix"}
    assert context["payload"]["context"] == {"result": "bugfix of user-service done"}
    assert close["payload"]["action"] == "commit"
    assert trace["status"] == "committed"
    # Called plainly, it returns the function's value.
    assert refactor("billing", "docs") == "docs of billing done"


def test_denied_call_never_runs_the_function_and_aborts(agent_client: Client) -> None:
    calls: list[tuple[str, str]] = []
    refactor = make_refactor(agent_client, calls)

    with pytest.raises(GovernanceRefused) as refused:
        refactor("user-service", "delete")

    assert calls == []
    error = refused.value
    assert (error.step, error.outcome, error.rule) == ("evaluate", "deny", "no_destructive_changes")
    assert (error.policy_id, error.policy_version) == ("code_change_policy_v1", 1)
    assert "destructive changes are not made by agents" in str(error)
    assert str(error).startswith("[evaluate] policy code_change_policy_v1 v1 answered deny")
    assert error.function_ran is False and error.decision_id is not None
    decision = agent_client.decision_get(error.decision_id)
    assert decision["status"] == "aborted"
    assert event_types(agent_client, error.decision_id) == ["created", "evaluate", "close"]
    close = agent_client.decision_trace_all(error.decision_id)["events"][-1]
    assert close["payload"]["action"] == "abort"
    assert close["payload"]["reason"] == "policy code_change_policy_v1 denied (rule no_destructive_changes)"


def test_requires_exception_waits_for_the_reviewer_then_runs(seeded: Seeded, agent_client: Client) -> None:
    calls: list[tuple[str, str]] = []
    refactor = make_refactor(agent_client, calls, approval_title="Refactoring Approval Required")

    with AnswerWhenAsked(seeded, "approve", "refactor reviewed") as reviewer_thread:
        done = refactor.with_decision("user-service", "refactor")

    assert calls == [("user-service", "refactor")]
    assert reviewer_thread.answered is not None and reviewer_thread.answered["status"] == "approved"
    assert reviewer_thread.answered["title"] == "Refactoring Approval Required"
    assert reviewer_thread.answered["message"] == "refactors need a reviewer's approval"
    decision_id = done.decision.decision_id
    assert event_types(agent_client, decision_id) == APPROVED_CALL
    assert agent_client.decision_get(decision_id)["status"] == "committed"


def test_mode_that_needs_a_grant_asks_for_approval_even_when_the_policy_allows(
    seeded: Seeded, agent_client: Client
) -> None:
    calls: list[tuple[str, str]] = []
    refactor = make_refactor(agent_client, calls, automation_mode="propose")

    with AnswerWhenAsked(seeded, "approve", "fine"):
        done = refactor.with_decision("user-service", "bugfix")

    assert calls == [("user-service", "bugfix")]
    types = event_types(agent_client, done.decision.decision_id)
    assert types == APPROVED_CALL
    requested = agent_client.decision_trace_all(done.decision.decision_id)["events"][2]
    assert "propose mode, which needs an approval" in requested["payload"]["message"]


def test_rejection_names_the_reviewer_and_rationale_and_the_function_never_runs(
    seeded: Seeded, agent_client: Client
) -> None:
    calls: list[tuple[str, str]] = []
    refactor = make_refactor(agent_client, calls)

    with (
        AnswerWhenAsked(seeded, "reject", "not during the freeze"),
        pytest.raises(ApprovalRejected) as rejected,
    ):
        refactor("user-service", "refactor")

    assert calls == []
    error = rejected.value
    assert (error.step, error.status, error.rationale) == ("approval", "rejected", "not during the freeze")
    assert [voter["name"] for voter in error.rejected_by] == ["admin"]
    assert "was rejected by admin: not during the freeze" in str(error)
    assert agent_client.decision_get(error.decision_id or "")["status"] == "aborted"
    assert event_types(agent_client, error.decision_id or "")[-4:] == [
        "approval_requested",
        "approval_vote",
        "approval_resolved",
        "close",
    ]


def test_no_answer_within_the_timeout_aborts_and_cancels_the_approval(agent_client: Client) -> None:
    calls: list[tuple[str, str]] = []
    refactor = make_refactor(agent_client, calls, approval_timeout=1.0)

    started = time.monotonic()
    with pytest.raises(ApprovalTimedOut) as timed_out:
        refactor("user-service", "refactor")

    assert 1.0 <= time.monotonic() - started < 15
    assert calls == []
    error = timed_out.value
    assert (error.step, error.timeout) == ("wait", 1.0)
    decision = agent_client.decision_get(error.decision_id or "")
    assert (decision["status"], decision["approval_status"]) == ("aborted", None)
    resolved = [
        e for e in agent_client.iter_trace_events(error.decision_id or "") if e["type"] == "approval_resolved"
    ]
    assert resolved[-1]["payload"]["outcome"] == "cancelled"


def test_the_functions_own_exception_propagates_and_aborts_without_its_text(agent_client: Client) -> None:
    class DeployFailed(Exception):
        pass

    secret_text = "password=hunter2 for db-prod"
    failure = DeployFailed(secret_text)

    @governed(agent_client, intent="code.deploy.execute", policy="code_change_policy_v1")
    def deploy(change_type: str) -> None:
        raise failure

    with pytest.raises(DeployFailed) as raised:
        deploy.with_decision("feature")

    assert raised.value is failure
    [row] = DecisionRow.objects.filter(intent="code.deploy.execute")
    trace = agent_client.decision_trace_all(row.decision_id)
    assert trace["status"] == "aborted"
    assert (
        trace["events"][-1]["payload"]["reason"] == f"DeployFailed raised by {__name__}.{deploy.__qualname__}"
    )
    assert secret_text not in str(trace)


def test_an_argument_that_is_not_json_is_refused_before_anything_is_sent(agent_client: Client) -> None:
    @governed(agent_client, intent="code.refactor.execute", policy="code_change_policy_v1")
    def refactor(change_type: str, connection: object) -> None:
        raise AssertionError("must not run")

    with pytest.raises(GovernanceError) as refused:
        refactor("bugfix", object())

    assert refused.value.step == "inputs" and refused.value.decision_id is None
    assert "argument 'connection' of" in str(refused.value) and "exclude=('connection',)" in str(
        refused.value
    )
    assert DecisionRow.objects.count() == 0

    # exclude= leaves it out; the policy sees the rest.
    @governed(
        agent_client, intent="code.refactor.execute", policy="code_change_policy_v1", exclude=["connection"]
    )
    def refactor_excluding(change_type: str, connection: object) -> str:
        return "ok"

    done = refactor_excluding.with_decision("bugfix", object())
    evaluate = agent_client.decision_trace_all(done.decision.decision_id)["events"][1]
    assert evaluate["payload"]["inputs"] == {"change_type": "bugfix"}


def test_inputs_mapping_methods_and_defaults_bind_by_name(agent_client: Client) -> None:
    class Service:
        name = "user-service"

        @governed(agent_client, intent="code.refactor.execute", policy="code_change_policy_v1")
        def change(self, change_type: str, component: str = "default-component", **extra: Any) -> str:
            return f"{self.name}:{change_type}:{component}:{extra}"

    done = Service().change.with_decision("docs", ticket="T-1")
    assert done.value == "user-service:docs:default-component:{'ticket': 'T-1'}"
    evaluate = agent_client.decision_trace_all(done.decision.decision_id)["events"][1]
    assert evaluate["payload"]["inputs"] == {
        "change_type": "docs",
        "component": "default-component",
        "ticket": "T-1",
    }

    @governed(
        agent_client,
        intent="code.refactor.execute",
        policy="code_change_policy_v1",
        inputs=lambda files, kind: {"change_type": kind, "component": files[0].split("/")[0]},
    )
    def touch(files: list[str], kind: str) -> int:
        return len(files)

    done_touch = touch.with_decision(["api/a.py", "api/b.py"], kind="test")
    assert done_touch.value == 2
    evaluate = agent_client.decision_trace_all(done_touch.decision.decision_id)["events"][1]
    assert evaluate["payload"]["inputs"] == {"change_type": "test", "component": "api"}


def test_a_server_refusal_names_the_step_and_carries_the_servers_code(agent_client: Client) -> None:
    calls: list[str] = []

    @governed(agent_client, intent="code.refactor.execute", policy="no_such_policy_v1")
    def change(change_type: str) -> None:
        calls.append(change_type)

    with pytest.raises(GovernanceError) as failed:
        change("bugfix")

    error = failed.value
    assert calls == []
    assert error.step == "evaluate" and error.cause is not None
    assert error.code == error.cause.code == "permission_denied"  # unknown and ungranted look alike
    assert str(error).startswith("[evaluate] evaluate failed: [permission_denied]")
    assert agent_client.decision_get(error.decision_id or "")["status"] == "aborted"

    @governed(agent_client, intent="Not An Intent", policy="code_change_policy_v1")
    def bad_intent(change_type: str) -> None:
        calls.append(change_type)

    with pytest.raises(GovernanceError) as failed_create:
        bad_intent("bugfix")
    assert (failed_create.value.step, failed_create.value.code) == ("create", "invalid_argument")
    assert failed_create.value.decision_id is None and calls == []


def test_a_result_that_is_not_json_is_recorded_by_its_type_only(agent_client: Client) -> None:
    class Handle:
        def __repr__(self) -> str:
            return "Handle(token=tmem_secret)"

    @governed(agent_client, intent="code.refactor.execute", policy="code_change_policy_v1")
    def make(change_type: str) -> Handle:
        return Handle()

    done = make.with_decision("feature")
    context = agent_client.decision_trace_all(done.decision.decision_id)["events"][2]
    assert context["payload"]["context"]["result"]["type"].endswith("Handle")
    assert "tmem_secret" not in str(context)


def test_async_functions_are_refused_at_decoration(agent_client: Client) -> None:
    with pytest.raises(TypeError, match="synchronous"):

        @governed(agent_client, intent="code.refactor.execute")
        async def change() -> None:
            return None
