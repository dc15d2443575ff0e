"""The policy pages: staff only, draft editor validation, diff, test console and replay."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from decisions import services as decision_services
from policies import selectors
from policies.services import authoring as policy_authoring
from policies.services import evaluation as policy_evaluation
from tests.perm_helpers import make_staff
from tracemem_core.actor import Actor

SYSTEM = Actor.system("test")
RULES = [
    {
        "name": "refactor",
        "when": 'inputs.change_type == "refactor"',
        "outcome": "requires_exception",
        "message": "m",
    }
]


@pytest.fixture
def staff_client(db: Any) -> Client:
    client = Client()
    client.force_login(make_staff("ada", password="pw"))
    return client


def test_pages_need_staff(db: Any) -> None:
    client = Client()
    assert client.get("/policies/").status_code == 302  # to login
    client.force_login(get_user_model().objects.create_user("bob", password="pw"))
    assert client.get("/policies/").status_code == 403


def test_create_edit_publish_through_pages(staff_client: Client) -> None:
    response = staff_client.post("/policies/create/", {"policy_id": "code_v1", "name": "Code"})
    assert response.status_code == 302 and response["Location"] == "/policies/code_v1/edit/"
    form = {
        "name": "Code",
        "description": "",
        "inputs_schema": "",
        "rules": '[{"name": "r", "when": "inputs.x ==", "outcome": "deny"}]',
        "default_outcome": "deny",
    }
    saved = staff_client.post("/policies/code_v1/edit/", form, follow=True)
    assert "publishing would refuse it: rule &#x27;r&#x27;" in saved.content.decode()
    assert selectors.draft_of("code_v1").rules[0]["when"] == "inputs.x =="
    refused = staff_client.post("/policies/code_v1/publish/", follow=True)
    assert "line 1, column 12" in refused.content.decode()
    assert selectors.latest_published("code_v1") is None
    bad_json = staff_client.post("/policies/code_v1/edit/", {**form, "rules": "[{"})
    assert bad_json.status_code == 200 and "not valid JSON" in bad_json.content.decode()
    form["rules"] = '[{"name": "r", "when": "inputs.x == 1", "outcome": "deny"}]'
    staff_client.post("/policies/code_v1/edit/", form)
    staff_client.post("/policies/code_v1/publish/")
    assert selectors.latest_published("code_v1").rules[0]["when"] == "inputs.x == 1"
    staff_client.post("/policies/code_v1/edit/", {**form, "name": "Code 2"})
    page = staff_client.get("/policies/code_v1/").content.decode()
    assert (
        "<del>-  &quot;name&quot;: &quot;Code&quot;,</del>" in page
        and "<ins>+  &quot;name&quot;: &quot;Code 2&quot;,</ins>" in page
    )


def test_console_tests_draft_and_replays_flips(staff_client: Client, make_agent: Any) -> None:
    agent, _ = make_agent()
    policy_authoring.policy_create(
        actor=SYSTEM, policy_id="code_v1", definition={"name": "C", "rules": RULES}
    )
    policy_authoring.policy_publish(actor=SYSTEM, policy_id="code_v1")
    policy_authoring.policy_grant(actor=SYSTEM, policy_id="code_v1", agent_id=agent.agent_id)
    actor = Actor.for_agent(agent)
    decision = decision_services.decision_create(
        actor=actor, intent="code.refactor.execute", automation_mode="propose"
    )
    flipped = policy_evaluation.decision_evaluate(
        actor=actor, decision_id=decision.decision_id, policy_id="code_v1", inputs={"change_type": "refactor"}
    )
    policy_evaluation.decision_evaluate(
        actor=actor, decision_id=decision.decision_id, policy_id="code_v1", inputs={"change_type": "docs"}
    )
    policy_authoring.policy_draft_save(
        actor=SYSTEM, policy_id="code_v1", definition={"name": "C", "rules": [], "default_outcome": "deny"}
    )
    test_page = staff_client.post(
        "/policies/code_v1/console/", {"inputs": '{"change_type": "refactor"}', "action": "test"}
    )
    assert 'status-deny">deny<' in test_page.content.decode()
    replay = staff_client.post(
        "/policies/code_v1/console/", {"inputs": "", "limit": "10", "action": "replay"}
    )
    html = replay.content.decode()
    assert "1 of 2 evaluations would flip" in html and decision.decision_id in html
    assert flipped["outcome"] == "requires_exception"
    detail = staff_client.get("/policies/code_v1/").content.decode()
    assert detail.count(f'href="/decisions/{decision.decision_id}/"') == 2  # recent evaluations
    staff_client.post(f"/policies/code_v1/grants/{agent.agent_id}/revoke/")
    assert not selectors.agent_may_evaluate(agent, "code_v1")
