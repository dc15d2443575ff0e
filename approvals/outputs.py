"""Result shape of ``decision_request_approval`` (documentation: tracemem_site/outputs.py)."""

from __future__ import annotations

from decisions.outputs import Delivery
from tracemem_core.outputs import JsonObject, Output


class ApprovalRequested(Output):
    approval_id: str
    status: str
    expires_at: str | None
    route_id: str
    delivery: Delivery


# --- reviewer and admin API ------------------------------------------------------------------


class AgentRef(Output):
    agent_id: str
    name: str


class Voter(Output):
    id: str
    name: str


class Vote(Output):
    voter: Voter
    vote: str
    channel: str
    rationale: str | None
    at: str


class DeliveryDetail(Output):
    delivery_id: str
    channel: str
    status: str
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    delivered_at: str | None


class ReviewDelivery(Delivery):
    details: list[DeliveryDetail]


class ApprovalOut(Output):
    approval_id: str
    decision_id: str
    intent: str
    automation_mode: str
    agent: AgentRef
    title: str
    message: str
    route_id: str
    required_approvals: int
    require_rationale: bool
    rules: JsonObject
    requested_at: str
    expires_at: str | None
    review_url: str
    status: str
    resolved_at: str | None
    votes: list[Vote]
    delivery: ReviewDelivery


class ApprovalList(Output):
    approvals: list[ApprovalOut]
    count: int


class RouteOut(Output):
    route_id: str
    name: str
    channels: list[JsonObject]
    approver_group: str | None
    required_approvals: int
    require_rationale: bool
    expires_in_seconds: int
    allow_agent_owner: bool
    default: bool


class RouteList(Output):
    routes: list[RouteOut]


class WebhookEndpointOut(Output):
    name: str
    url: str
    has_signing_secret: bool
    routes: list[str]


class WebhookEndpointList(Output):
    webhook_endpoints: list[WebhookEndpointOut]


class SlackIntegrationOut(Output):
    name: str
    type: str
    api_base_url: str
    has_bot_token: bool
    has_signing_secret: bool
    routes: list[str]


class SlackIntegrationList(Output):
    integrations: list[SlackIntegrationOut]
