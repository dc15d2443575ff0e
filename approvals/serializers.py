"""Result objects of the approval tools: one shape, returned by MCP and REST alike."""

from __future__ import annotations

from typing import Any

from approvals.models import (
    Approval,
    ApprovalRoute,
    ApprovalState,
    Delivery,
    DeliveryStatus,
    SlackIntegration,
    WebhookEndpoint,
)
from approvals.selectors import (
    approval_as_reported,
    deliveries_of,
    latest_approval_of,
    route_definition,
    routes_naming,
)
from approvals.services.channels import request_summary
from tracemem_core.outbound import public_url
from tracemem_core.timefmt import iso_z


def delivery_out(approval: Approval, deliveries: list[Delivery] | None = None) -> dict[str, Any]:
    """``{status, channels: [{channel, status}], note}``: pending while any channel is pending,
    failed when any channel gave up, else delivered; cancelled when the approval was cancelled."""
    rows = deliveries if deliveries is not None else deliveries_of(approval)
    statuses = [d.status for d in rows]
    if approval.status == ApprovalState.CANCELLED:
        # Only reviewers see this: decision_get shows no delivery once approval_status is null.
        status = DeliveryStatus.CANCELLED
        note = (
            "the decision was closed before anyone decided; the approval was cancelled and unsent "
            "notifications were dropped"
        )
    elif not rows:
        status = DeliveryStatus.DELIVERED
        note = "the route has no notification channels; reviewers find the request in the review queue"
    elif DeliveryStatus.PENDING in statuses:
        status = DeliveryStatus.PENDING
        note = "notifications are queued; the decision waits for a reviewer either way — call decision_wait"
    elif DeliveryStatus.FAILED in statuses:
        status = DeliveryStatus.FAILED
        failed = ", ".join(d.channel for d in rows if d.status == DeliveryStatus.FAILED)
        note = f"delivery failed on {failed}; reviewers still see the request in the review queue"
    else:
        status = DeliveryStatus.DELIVERED
        note = "reviewers were notified; call decision_wait until approval_status changes"
    return {
        "status": str(status),
        "channels": [{"channel": d.channel, "status": d.status} for d in rows],
        "note": note,
    }


def requested_out(approval: Approval) -> dict[str, Any]:
    return {
        "approval_id": approval.approval_id,
        "status": approval.status,
        "expires_at": iso_z(approval.expires_at),
        "route_id": approval.route.route_id,
        "delivery": delivery_out(approval),
    }


def delivery_for_decision(decision_id: str) -> dict[str, Any] | None:
    """``delivery`` of the pending (else latest) approval, for ``decision_get``; None if never asked."""
    approval = latest_approval_of(decision_id)
    return None if approval is None else delivery_out(approval)


def approval_out(approval: Approval) -> dict[str, Any]:
    """What a reviewer sees: the redacted request, the votes and the delivery details."""
    approval = approval_as_reported(approval)
    deliveries = deliveries_of(approval)
    return {
        # The same redacted facts every channel shows, plus where the approval stands now.
        **request_summary(approval),
        "status": approval.status,
        "resolved_at": iso_z(approval.resolved_at),
        "votes": [
            {
                "voter": {"id": f"user_{vote.user_id}", "name": vote.user.get_username()},
                "vote": vote.choice,
                "channel": vote.channel,
                "rationale": vote.rationale,
                "at": iso_z(vote.created_at),
            }
            for vote in approval.votes.select_related("user").order_by("created_at")
        ],
        "delivery": {
            **delivery_out(approval, deliveries),
            "details": [
                {
                    "delivery_id": d.delivery_id,
                    "channel": d.channel,
                    "status": d.status,
                    "attempts": d.attempts,
                    "next_attempt_at": iso_z(d.next_attempt_at)
                    if d.status == DeliveryStatus.PENDING
                    else None,
                    "last_error": d.last_error or None,
                    "delivered_at": iso_z(d.delivered_at),
                }
                for d in deliveries
            ],
        },
    }


def route_out(route: ApprovalRoute) -> dict[str, Any]:
    return route_definition(route)


def webhook_endpoint_out(endpoint: WebhookEndpoint, routes: list[str]) -> dict[str, Any]:
    """A webhook endpoint as admins see it: the URL without credentials or query, whether its
    signing secret is set (never the secret), and the routes that name it."""
    return {
        "name": endpoint.name,
        "url": public_url(endpoint.url),
        "has_signing_secret": bool(endpoint.signing_secret),
        "routes": routes,
    }


def slack_integration_out(integration: SlackIntegration, routes: list[str]) -> dict[str, Any]:
    return {
        "name": integration.name,
        "type": "slack",
        "api_base_url": public_url(integration.api_base_url),
        "has_bot_token": bool(integration.bot_token),
        "has_signing_secret": bool(integration.signing_secret),
        "routes": routes,
    }


def webhook_endpoints_out(endpoints: list[WebhookEndpoint]) -> list[dict[str, Any]]:
    users = routes_naming("webhook", "endpoint")
    return [webhook_endpoint_out(e, users.get(e.name, [])) for e in endpoints]


def slack_integrations_out(integrations: list[SlackIntegration]) -> list[dict[str, Any]]:
    users = routes_naming("slack", "integration")
    return [slack_integration_out(i, users.get(i.name, [])) for i in integrations]
