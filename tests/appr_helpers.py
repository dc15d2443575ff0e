"""Shared builders for the approvals tests (routes, reviewers with tokens, decisions via REST)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from agents.services import tokens as agent_tokens
from approvals.models import ApprovalRoute
from tracemem_core.actor import Actor


@dataclass
class Reviewer:
    user: Any
    token: str

    def post(self, path: str, data: dict[str, Any] | None = None) -> Any:
        return Client().post(
            path, data or {}, content_type="application/json", HTTP_AUTHORIZATION=f"Token {self.token}"
        )

    def get(self, path: str) -> Any:
        return Client().get(path, HTTP_AUTHORIZATION=f"Token {self.token}")

    def approve(self, approval_id: str, rationale: str | None = None) -> Any:
        body = {} if rationale is None else {"rationale": rationale}
        return self.post(f"/api/v1/approvals/{approval_id}/approve", body)

    def reject(self, approval_id: str, rationale: str | None = None) -> Any:
        body = {} if rationale is None else {"rationale": rationale}
        return self.post(f"/api/v1/approvals/{approval_id}/reject", body)


def make_reviewer(username: str, group: Group | None = None, *, superuser: bool = False) -> Reviewer:
    model = get_user_model()
    if superuser:
        user = model.objects.create_superuser(username, f"{username}@example.com", "pw-unused-123")
    else:
        user = model.objects.create_user(username, f"{username}@example.com", "pw-unused-123")
    if group is not None:
        user.groups.add(group)
    issued = agent_tokens.personal_token_create(actor=Actor.system(), user=user)
    return Reviewer(user=user, token=issued.secret)


def make_route(route_id: str = "route_finance", **fields: Any) -> ApprovalRoute:
    group = fields.pop("group", None)
    if group is None:
        group, _ = Group.objects.get_or_create(name=f"{route_id}_approvers")
    return ApprovalRoute.objects.create(route_id=route_id, name=route_id, approver_group=group, **fields)


def open_decision(api: Any, mode: str = "autonomous") -> str:
    response = api.post("/api/v1/decisions", {"intent": "finance.refund.issue", "automation_mode": mode})
    assert response.status_code == 201, response.content
    return response.json()["decision_id"]


def request_approval(api: Any, decision_id: str, **body: Any) -> Any:
    return api.post(f"/api/v1/decisions/{decision_id}/approvals", body)
