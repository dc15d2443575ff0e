"""The HTML door through the Django test client: login, CSRF, dashboard, explorer, agents and keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from agents.models import Agent, AgentKey
from decisions import services as decision_services
from decisions.models import Decision
from tests.perm_helpers import make_staff
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(db: Any) -> Any:
    return make_staff("staffer", password="pw-staffer-1")


@pytest.fixture
def staff_client(staff: Any) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def _decision(agent: Agent, intent: str = "customer.refund", **extra: Any) -> Decision:
    return decision_services.decision_create(
        actor=Actor.for_agent(agent), intent=intent, automation_mode="propose", **extra
    )


@pytest.mark.parametrize("path", ["/", "/decisions/", "/agents/", "/review/"])
def test_logged_out_user_is_sent_to_login(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next={path}"


def test_login_with_password_then_logout_by_post(client: Client, staff: Any) -> None:
    page = client.get("/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    response = client.post("/login/", {"username": "staffer", "password": "pw-staffer-1"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


def test_wrong_password_is_refused_with_a_message(client: Client, staff: Any) -> None:
    response = client.post("/login/", {"username": "staffer", "password": "nope"})
    assert response.status_code == 200
    assert b"did not match" in response.content
    assert "_auth_user_id" not in client.session


def test_state_changing_post_without_csrf_token_is_refused(staff: Any) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    response = client.post("/agents/create/", {"name": "sneaky"})
    assert response.status_code == 403
    assert not Agent.objects.filter(name="sneaky").exists()


def test_get_on_a_state_changing_url_is_not_allowed(staff_client: Client) -> None:
    assert staff_client.get("/agents/create/").status_code == 405
    assert not Agent.objects.exists()


def test_dashboard_counts_open_and_resolved_decisions(
    staff_client: Client, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    agent, _ = make_agent("dash-agent")
    _decision(agent)
    closed = _decision(agent, intent="customer.other")
    decision_services.decision_close(
        actor=Actor.for_agent(agent), decision_id=closed.decision_id, action="abort"
    )
    response = staff_client.get("/")
    assert response.status_code == 200
    stats = response.context["stats"]
    assert (stats.open_decisions, stats.pending_approvals, stats.resolved_today) == (1, 0, 1)
    assert sum(d["aborted"] for d in stats.per_day) == 1
    assert sum(d["in_flight"] for d in stats.per_day) == 1
    assert b"<svg" in response.content


def test_decision_explorer_filters_by_intent_prefix_and_status(
    staff_client: Client, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    agent, _ = make_agent("explorer-agent")
    refund = _decision(agent, intent="customer.refund")
    other = _decision(agent, intent="infra.deploy")
    response = staff_client.get("/decisions/", {"intent": "customer."})
    ids = [d.decision_id for d in response.context["page"].object_list]
    assert ids == [refund.decision_id]
    response = staff_client.get("/decisions/", {"q": "deploy", "status": "open"})
    assert [d.decision_id for d in response.context["page"].object_list] == [other.decision_id]
    response = staff_client.get("/decisions/", {"has_approval": "yes", "from": "not-a-date"})
    assert response.status_code == 200 and list(response.context["page"].object_list) == []


def test_decision_page_shows_hashes_verified_badge_and_redacted_metadata(
    staff_client: Client, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    agent, _ = make_agent("detail-agent")
    secret = "sk-live-abcdefghijklmnopqrstuvwx"
    decision = _decision(agent, metadata={"api_key": secret, "ticket": "T-1"})
    response = staff_client.get(f"/decisions/{decision.decision_id}/")
    body = response.content.decode()
    assert response.status_code == 200
    assert secret not in body and "[redacted]" in body
    assert "Chain verified" in body and decision.trace_head in body
    export = staff_client.get(f"/decisions/{decision.decision_id}/export.json")
    data = export.json()
    assert data["decision_id"] == decision.decision_id
    assert [e["hash"] for e in data["events"]] == [decision.trace_head]
    assert secret not in export.content.decode()


def test_user_without_view_permission_gets_404_for_a_decision(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    agent, _ = make_agent("hidden-agent")
    decision = _decision(agent)
    nobody = get_user_model().objects.create_user("nobody", password="x")
    client = Client()
    client.force_login(nobody)
    assert client.get(f"/decisions/{decision.decision_id}/").status_code == 404
    assert list(client.get("/decisions/").context["page"].object_list) == []


def test_staff_creates_agent_and_key_is_shown_exactly_once(staff_client: Client) -> None:
    response = staff_client.post("/agents/create/", {"name": "billing-bot"})
    agent = Agent.objects.get(name="billing-bot")
    assert response["Location"] == f"/agents/{agent.agent_id}/"
    response = staff_client.post(f"/agents/{agent.agent_id}/keys/", {"name": "prod"})
    assert response.status_code == 302
    page = staff_client.get(f"/agents/{agent.agent_id}/")
    secret = page.context["issued"]["secret"]
    assert secret.startswith("tmem_") and secret in page.content.decode()
    assert f"export TRACEMEM_API_KEY={secret}" in page.content.decode()  # filled-in client config
    assert "~/.codex/config.toml" in page.content.decode()
    assert page["Cache-Control"] == "no-store"
    again = staff_client.get(f"/agents/{agent.agent_id}/")
    assert secret not in again.content.decode()
    key = AgentKey.objects.get(agent=agent)
    assert key.name == "prod" and key.state() == "active"


def test_key_form_proposes_a_name_no_key_of_the_agent_has(staff_client: Client) -> None:
    """Issue 18: the issue-key form never proposes a name this agent's keys already use."""
    staff_client.post("/agents/create/", {"name": "naming-bot"})
    agent = Agent.objects.get(name="naming-bot")

    def proposed() -> str:
        body = staff_client.get(f"/agents/{agent.agent_id}/").content.decode()
        return body.split('name="name" value="', 1)[1].split('"', 1)[0]

    assert proposed() == "default"
    staff_client.post(f"/agents/{agent.agent_id}/keys/", {"name": proposed()})
    assert proposed() == "key-2"
    staff_client.post(f"/agents/{agent.agent_id}/keys/", {"name": proposed()})
    assert proposed() == "key-3"
    assert sorted(AgentKey.objects.filter(agent=agent).values_list("name", flat=True)) == ["default", "key-2"]


def test_staff_rotates_then_revokes_a_key(
    staff_client: Client, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    agent, _ = make_agent("rotating-agent")
    old = AgentKey.objects.get(agent=agent)
    staff_client.post(f"/agents/{agent.agent_id}/keys/{old.key_id}/rotate/", {"grace_seconds": "0"})
    old.refresh_from_db()
    new = AgentKey.objects.get(agent=agent, rotated_from=old)
    assert old.state() == "revoked" and new.state() == "active"
    staff_client.post(f"/agents/{agent.agent_id}/keys/{new.key_id}/revoke/")
    new.refresh_from_db()
    assert new.state() == "revoked"


def test_non_staff_cannot_create_agents_and_sees_why(make_agent: Any) -> None:
    user = get_user_model().objects.create_user("reviewer", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    response = client.post("/agents/create/", {"name": "nope"})
    assert response.status_code == 403
    assert not Agent.objects.filter(name="nope").exists()
    assert "you need the permission agents.manage_agents" in response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_decision_page_flags_a_tampered_trace(
    staff_client: Client, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    from tests.conftest import superuser_sql

    agent, _ = make_agent("tamper-agent")
    decision = _decision(agent)
    superuser_sql(
        'UPDATE decisions_traceevent SET payload = \'{"intent": "something.else"}\' '
        "WHERE decision_id = %s AND seq = 1",
        params=[decision.decision_id],
    )
    body = staff_client.get(f"/decisions/{decision.decision_id}/").content.decode()
    assert (
        "Integrity check failed: broken at seq 1: hash does not match" in body
        and "Chain verified" not in body
    )


def _closed(agent: Agent, action: str) -> Decision:
    decision = _decision(agent)
    return decision_services.decision_close(
        actor=Actor.for_agent(agent), decision_id=decision.decision_id, action=action
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (
            "UPDATE decisions_decision SET status = 'committed' WHERE decision_id = %(d)s",
            "its row says committed but its close event (seq 2) says aborted (action abort)",
        ),
        (
            # With its leaf in the receipt log, which refers to it.
            "WITH leaf AS (DELETE FROM receiptlog_logleaf WHERE decision_id = %(d)s) "
            "DELETE FROM decisions_receipt WHERE decision_id = %(d)s",
            "it is closed but has no stored receipt",
        ),
        (
            "DELETE FROM decisions_traceevent WHERE decision_id = %(d)s AND seq = 2",
            "its row says 2 events",
        ),
    ],
    ids=["status flip", "deleted receipt", "deleted last event"],
)
def test_decision_page_flags_what_verify_traces_finds_not_only_a_broken_chain(
    staff_client: Client, make_agent: Callable[..., tuple[Agent, str]], capsys: Any, tamper: str, problem: str
) -> None:
    """The chain of each tampered decision still recomputes: only the row, the close event and the
    receipt disagree. The page's badge is the same check as ``manage.py verify_traces``."""
    from django.core.management import CommandError, call_command

    from tests.conftest import superuser_sql

    agent, _ = make_agent("tamper-agent")
    decision = _closed(agent, "abort")
    url = f"/decisions/{decision.decision_id}/"
    assert 'status-ok" id="chain-badge"' in staff_client.get(url).content.decode()
    superuser_sql(tamper, params={"d": decision.decision_id})

    body = staff_client.get(url).content.decode()
    assert 'status-broken" id="chain-badge"' in body and "Chain verified" not in body
    assert problem in body
    with pytest.raises(CommandError):
        call_command("verify_traces", "--decision", decision.decision_id)
    assert problem in capsys.readouterr().err
