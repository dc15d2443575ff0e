"""``with agent_client.decision(...) as d``: commit on success, abort on an exception (which propagates,
its text never sent), abort when the server refuses the commit, nothing more when closed inside."""

from __future__ import annotations

import pytest
from tracemem_client import ApprovalRequired, Client, InvalidArgument

from decisions.models import Decision as DecisionRow
from tests.client_helpers import event_types

pytest_plugins = ["tests.client_fixtures"]  # fixtures: seeded, agent_client
pytestmark = pytest.mark.django_db(transaction=True)


def test_block_that_ends_normally_commits_with_its_summary(agent_client: Client) -> None:
    with agent_client.decision(
        intent="code.refactor.execute",
        automation_mode="autonomous",
        metadata={"component": "user-service"},
        reason="extracted auth logic",
    ) as d:
        d.add_context({"step": "extracting_auth_logic"})
        assert d.evaluate("code_change_policy_v1", inputs={"change_type": "feature"})["outcome"] == "allow"
        d.add_context({"step": "done"}, summary="finished")

    assert d.closed is not None and d.closed["status"] == "committed"
    trace = agent_client.decision_trace_all(d.decision_id)
    assert trace["status"] == "committed"
    assert [e["type"] for e in trace["events"]] == ["created", "context", "evaluate", "context", "close"]
    assert trace["events"][-1]["payload"]["action"] == "commit"
    assert trace["events"][-1]["payload"]["reason"] == "extracted auth logic"


def test_block_that_raises_aborts_and_the_exception_propagates_without_its_text(agent_client: Client) -> None:
    secret_text = "db password is hunter2"
    with (
        pytest.raises(KeyError) as raised,
        agent_client.decision(intent="code.refactor.execute", automation_mode="autonomous") as d,
    ):
        d.add_context({"step": 1})
        raise KeyError(secret_text)

    assert raised.value.args == (secret_text,)
    trace = agent_client.decision_trace_all(d.decision_id)
    assert trace["status"] == "aborted"
    assert event_types(agent_client, d.decision_id) == ["created", "context", "close"]
    assert trace["events"][-1]["payload"]["reason"] == "KeyError raised in the decision block"
    assert "hunter2" not in str(trace)


def test_a_refused_commit_aborts_and_raises_the_refusal(agent_client: Client) -> None:
    # propose mode: committing needs a granted approval, which this block never asked for.
    with (
        pytest.raises(ApprovalRequired) as refused,
        agent_client.decision(intent="code.refactor.execute", automation_mode="propose") as d,
    ):
        d.add_context({"step": 1})

    assert refused.value.status == 409
    assert agent_client.decision_get(d.decision_id)["status"] == "aborted"
    close = agent_client.decision_trace_all(d.decision_id)["events"][-1]
    assert close["payload"]["reason"] == "commit refused: [approval_required]"


def test_closing_inside_the_block_is_final(agent_client: Client) -> None:
    with agent_client.decision(intent="code.refactor.execute", automation_mode="autonomous") as d:
        d.abort(reason="nothing to do")
    assert event_types(agent_client, d.decision_id) == ["created", "close"]
    assert agent_client.decision_get(d.decision_id)["status"] == "aborted"


def test_a_refused_create_raises_before_the_block_runs(agent_client: Client) -> None:
    ran = []
    with (
        pytest.raises(InvalidArgument) as refused,
        agent_client.decision(intent="Bad Intent", automation_mode="autonomous"),
    ):
        ran.append(True)
    assert ran == [] and refused.value.field == "intent"
    assert DecisionRow.objects.count() == 0
