"""Shared set-up for the reviewer UI tests: a route, a reviewers group, a policy, an approval."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from agents.models import Agent
from approvals.models import Approval, ApprovalRoute
from approvals.services import requests as approval_requests
from decisions import services as decision_services
from decisions.models import Decision
from policies import selectors as policy_selectors
from policies.services import authoring as policy_authoring
from policies.services import evaluation as policy_evaluation
from tracemem_core.actor import Actor

SYSTEM = Actor.system("ui-test")
SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c"
PASSWORD = "pw-reviewer-123"

REFUND_POLICY: dict[str, Any] = {
    "name": "Refund policy",
    "inputs_schema": {"type": "object", "properties": {"amount": {"type": "number"}}, "required": ["amount"]},
    "rules": [
        {
            "name": "small_ok",
            "when": "inputs.amount < 100",
            "outcome": "allow",
            "message": "small refunds are fine",
        },
        {
            "name": "large_needs_human",
            "when": "inputs.amount >= 100",
            "outcome": "requires_exception",
            "message": "refunds of 100 or more need a human",
        },
    ],
    "exception_route_id": "route_refunds",
}


def reviewers_group() -> Group:
    group, _ = Group.objects.get_or_create(name="refund-reviewers")
    # Reviewers may also open the decision explorer.
    group.permissions.add(
        Permission.objects.get(codename="view_decision", content_type__app_label="decisions")
    )
    return group


def make_route(*, required: int = 1, rationale: bool = False, allow_owner: bool = False) -> ApprovalRoute:
    route, _ = ApprovalRoute.objects.update_or_create(
        route_id="route_refunds",
        defaults={
            "name": "Refund reviewers",
            "channels": [],
            "approver_group": reviewers_group(),
            "required_approvals": required,
            "require_rationale": rationale,
            "allow_agent_owner": allow_owner,
        },
    )
    return route


def make_reviewer(username: str) -> Any:
    user = get_user_model().objects.create_user(username, password=PASSWORD)
    user.groups.add(reviewers_group())
    return user


def publish_refund_policy(agent: Agent) -> None:
    if policy_selectors.latest_version("refund_policy") is None:
        policy_authoring.policy_create(actor=SYSTEM, policy_id="refund_policy", definition=REFUND_POLICY)
        policy_authoring.policy_publish(actor=SYSTEM, policy_id="refund_policy")
    policy_authoring.policy_grant(actor=SYSTEM, policy_id="refund_policy", agent_id=agent.agent_id)


def decision_needing_approval(agent: Agent, *, intent: str = "customer.refund") -> tuple[Decision, Approval]:
    """Through the services (the doors are tested elsewhere): create, evaluate, request approval."""
    actor = Actor.for_agent(agent)
    publish_refund_policy(agent)
    decision = decision_services.decision_create(
        actor=actor,
        intent=intent,
        automation_mode="autonomous",
        metadata={"api_key": SECRET, "ticket": "T-42"},
    )
    result = policy_evaluation.decision_evaluate(
        actor=actor, decision_id=decision.decision_id, policy_id="refund_policy", inputs={"amount": 250}
    )
    assert result["outcome"] == "requires_exception"
    approval = approval_requests.decision_request_approval(
        actor=actor,
        decision_id=decision.decision_id,
        title="Refund 250 EUR",
        message="Customer T-42 asks for 250",
    )
    decision.refresh_from_db()
    return decision, approval
