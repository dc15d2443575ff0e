"""Senders for the three notification channels. Called by the outbox service, never by a door.

Each sender raises :class:`DeliveryError` with a message that is safe to store and show (no
tokens, no signing secrets, no response bodies that might echo them).

Everything a channel sends is redacted once more right here (:func:`redacted_for_sending`, and
``redact_text`` on the rendered email), whatever was stored: the last line of defence should a
text ever reach the outbox unredacted. Only our own signed email link is put in afterwards.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

import httpx
from django.contrib.auth.models import User
from django.core.mail import EmailMultiAlternatives, get_connection
from django.template.loader import render_to_string
from standardwebhooks import Webhook

from approvals import conf
from approvals.models import Approval, ApprovalState, Channel, SlackIntegration, WebhookEndpoint
from approvals.selectors import frozen_rules, second_factor_required, vote_refusal
from approvals.services.email_links import email_link_issue
from tracemem_core import outbound
from tracemem_core.redaction import redact, redact_text
from tracemem_core.timefmt import iso_z

if TYPE_CHECKING:
    from approvals.models import Delivery


class DeliveryError(Exception):
    """A retryable delivery failure; the message is stored on the delivery and shown to people."""


def send(delivery: Delivery) -> dict[str, Any]:
    if delivery.channel == Channel.EMAIL:
        return send_email(delivery)
    if delivery.channel == Channel.SLACK:
        return send_slack(delivery)
    if delivery.channel == Channel.WEBHOOK:
        return send_webhook(delivery)
    raise DeliveryError(f"unknown channel {delivery.channel!r}")


# Outbound messages are not cut to the 1000 characters of stored values; they are already short.
_OUTBOUND_MAX_STRING = 100_000
# Stands in for the personal email link while the rendered email is redacted.
_LINK_PLACEHOLDER = "tracemem-email-link-placeholder"


def redacted_for_sending(value: Any) -> Any:
    """``value`` (a JSON message) with every secret-looking part redacted, just before it is sent."""
    return redact(value, field="notification", max_string=_OUTBOUND_MAX_STRING)


def request_summary(approval: Approval) -> dict[str, Any]:
    """The redacted facts every channel shows; title and message were redacted when stored."""
    decision = approval.decision
    return {
        "approval_id": approval.approval_id,
        "decision_id": decision.decision_id,
        "intent": decision.intent,
        "automation_mode": decision.automation_mode,
        "agent": {"agent_id": decision.agent.agent_id, "name": decision.agent.name},
        "title": approval.title,
        "message": approval.message,
        "route_id": approval.route.route_id,
        "required_approvals": approval.required_approvals,
        "require_rationale": approval.require_rationale,
        # The rules as frozen at request time; who owns the agent stays inside TraceMem.
        "rules": {k: v for k, v in frozen_rules(approval).items() if k != "agent_owner"},
        "requested_at": iso_z(approval.requested_at),
        "expires_at": iso_z(approval.expires_at),
        "review_url": conf.review_url(approval),
    }


# --- email ------------------------------------------------------------------------------------


def email_recipients(delivery: Delivery) -> list[User]:
    """Users named in ``to`` (email or username), else the approval's group, else the superusers;
    only those who may vote on this approval (never the agent's owner unless the route allows it).

    The group is the one frozen when the approval was requested, not the route's current one.
    """

    approval = delivery.approval
    users = User.objects.filter(is_active=True).exclude(email="")
    wanted = delivery.target.get("to")
    if isinstance(wanted, str):
        wanted = [wanted]
    if wanted:
        chosen = [
            u for u in users if u.email.lower() in {w.lower() for w in wanted} or u.get_username() in wanted
        ]
    elif approval.approver_group_id is not None:
        chosen = list(users.filter(groups=approval.approver_group_id))
    else:
        chosen = list(users.filter(is_superuser=True))
    # A link lets its holder vote, so it only goes to people who could vote anyway.
    return [u for u in chosen if vote_refusal(u, approval) is None]


def _render_email(template: str, context: dict[str, Any], link: str) -> str:
    """The rendered email, redacted as a whole (escaping can hide a secret from the context's own
    redaction), with the reviewer's personal link put in afterwards."""
    rendered = render_to_string(template, {**context, "confirm_url": _LINK_PLACEHOLDER})
    return redact_text(rendered).replace(_LINK_PLACEHOLDER, link)


def send_email(delivery: Delivery) -> dict[str, Any]:
    approval = delivery.approval
    recipients = email_recipients(delivery)
    if not recipients:
        raise DeliveryError("no eligible approver with an email address on this route")
    already = set(delivery.external_ref.get("sent_to", []))
    sent = list(already)
    summary = redacted_for_sending(request_summary(approval))
    try:
        connection = get_connection(timeout=conf.http_timeout_seconds())
        for user in recipients:
            if user.pk in already:
                continue
            # Whoever must use two-factor sign-in gets the review page, not a link that votes.
            browser_only = second_factor_required(user)
            if browser_only:
                link = conf.review_url(approval)
            else:
                link = f"{conf.public_url()}/approvals/email/{email_link_issue(approval=approval, user=user)}"
            context = {**summary, "reviewer": user.get_username(), "browser_only": browser_only}
            message = EmailMultiAlternatives(
                subject=redact_text(f"[TraceMem] {approval.title}"),
                body=_render_email("email/approval_request.txt", context, link),
                to=[user.email],
                connection=connection,
                headers={"X-TraceMem-Delivery": delivery.delivery_id},
            )
            message.attach_alternative(
                _render_email("email/approval_request.html", context, link), "text/html"
            )
            message.send()
            sent.append(user.pk)
    except OSError as exc:
        # Remember who already got theirs so a retry does not mail them twice.
        type(delivery).objects.filter(pk=delivery.pk).update(
            external_ref={**delivery.external_ref, "sent_to": sent}
        )
        raise DeliveryError(f"email could not be sent: {type(exc).__name__}") from None
    return {"sent_to": sent}


# --- Slack ------------------------------------------------------------------------------------


def slack_integration(name: str | None) -> SlackIntegration:
    qs = SlackIntegration.objects.all()
    integration = qs.filter(name=name).first() if name else qs.first()
    if integration is None:
        raise DeliveryError(f"Slack integration {name or '(any)'} is not configured")
    return integration


def _http(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One HTTP request of a delivery (webhook or Slack): connected within
    ``TRACEMEM_DELIVERY_CONNECT_TIMEOUT`` and over, answer read to the end, within
    ``TRACEMEM_DELIVERY_HTTP_TIMEOUT`` in total, however slowly the receiver drips its answer."""
    total = conf.http_timeout_seconds()
    with outbound.deadline(total):
        return http_client().request(
            method, url, timeout=httpx.Timeout(total, connect=conf.connect_timeout_seconds()), **kwargs
        )


def _late(exc: httpx.TimeoutException) -> str:
    return f"did not answer within {conf.http_timeout_seconds():g} s ({type(exc).__name__})"


def slack_call(
    integration: SlackIntegration,
    method: str,
    *,
    payload: dict[str, Any] | None = None,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Call one Slack Web API method (JSON POST, or GET with ``query``) through the checked client;
    Slack's answer when ``ok``, else :class:`DeliveryError` (never the token, never Slack's body)."""
    base = (
        integration.api_base_url if integration.api_base_url.endswith("/") else integration.api_base_url + "/"
    )
    headers = {"authorization": f"Bearer {integration.bot_token}"}
    try:
        if query is not None:
            response = _http("GET", base + method, params=query, headers=headers)
        else:
            body = json.dumps(payload or {})
            headers["content-type"] = "application/json; charset=utf-8"
            response = _http("POST", base + method, content=body, headers=headers)
    except outbound.OutboundRefused as exc:
        raise DeliveryError(
            f"Slack integration {integration.name!r} was not contacted: {exc.message}"
        ) from None
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"Slack {_late(exc)}") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"Slack could not be reached: {type(exc).__name__}") from None
    try:
        answer = response.json() if response.status_code == 200 else None
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise DeliveryError(f"Slack answered {method} with HTTP {response.status_code} and no JSON result")
    if not answer.get("ok"):
        raise DeliveryError(f"Slack refused {method}: {answer.get('error', 'unknown')}")
    return answer


def slack_blocks(approval: Approval, outcome: str | None = None) -> list[dict[str, Any]]:
    summary = request_summary(approval)
    text = (
        f"*{summary['title']}*\n{summary['message']}\n"
        f"Agent `{summary['agent']['name']}` · intent `{summary['intent']}` · decision `{summary['decision_id']}`\n"
        f"<{summary['review_url']}|Open in TraceMem> · expires {summary['expires_at']}"
    )
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]
    if outcome is None:
        blocks.append(
            {
                "type": "actions",
                "block_id": f"tracemem:{approval.approval_id}",
                "elements": [
                    {
                        "type": "button",
                        "action_id": "approve",
                        "style": "primary",
                        "text": {"type": "plain_text", "text": "Approve"},
                        "value": approval.approval_id,
                    },
                    {
                        "type": "button",
                        "action_id": "reject",
                        "style": "danger",
                        "text": {"type": "plain_text", "text": "Reject"},
                        "value": approval.approval_id,
                    },
                ],
            }
        )
    else:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": f"*Outcome:* {outcome}"}]})
    return blocks


def send_slack(delivery: Delivery) -> dict[str, Any]:
    integration = slack_integration(delivery.target.get("integration"))
    channel = delivery.target.get("channel")
    if not channel:
        raise DeliveryError("the route's Slack channel entry has no 'channel'")
    approval = delivery.approval
    response = slack_call(
        integration,
        "chat.postMessage",
        payload={
            "channel": channel,
            "text": redact_text(f"Approval requested: {approval.title}"),
            "blocks": redacted_for_sending(slack_blocks(approval)),
            "metadata": {
                "event_type": "tracemem_approval",
                "event_payload": {"delivery_id": delivery.delivery_id},
            },
        },
    )
    return {
        "integration": integration.name,
        "channel": response.get("channel", channel),
        "ts": response.get("ts"),
    }


def slack_update(delivery: Delivery, approval: Approval) -> None:
    ref = delivery.external_ref
    if not ref.get("ts"):
        return
    integration = slack_integration(ref.get("integration"))
    outcomes: dict[str, str] = {
        ApprovalState.APPROVED: "approved",
        ApprovalState.REJECTED: "rejected",
        ApprovalState.EXPIRED: "expired (rejected)",
        ApprovalState.CANCELLED: "cancelled (the decision was closed)",
    }
    outcome = outcomes.get(approval.status, approval.status)
    slack_call(
        integration,
        "chat.update",
        payload={
            "channel": ref["channel"],
            "ts": ref["ts"],
            "text": redact_text(f"{approval.title}: {outcome}"),
            "blocks": redacted_for_sending(slack_blocks(approval, outcome=outcome)),
        },
    )


# --- webhook ----------------------------------------------------------------------------------


_http_client: httpx.Client | None = None
_http_client_lock = threading.Lock()


def http_client() -> httpx.Client:
    """One HTTP client per process, shared by every delivery thread: a new client per request
    costs ~50 ms of CPU building its TLS context, which serialised the whole delivery pool. Every
    connection it opens goes through the outbound rules (``tracemem_core.outbound``)."""
    global _http_client
    with _http_client_lock:
        if _http_client is None:
            _http_client = outbound.http_client(
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50)
            )
        return _http_client


def webhook_payload(delivery: Delivery) -> dict[str, Any]:
    approval = delivery.approval
    return {
        "type": "approval.requested",
        "delivery_id": delivery.delivery_id,
        **request_summary(approval),
        "resolve_url": f"{conf.public_url()}/api/v1/approvals/{approval.approval_id}/resolve",
    }


def send_webhook(delivery: Delivery) -> dict[str, Any]:
    body = json.dumps(redacted_for_sending(webhook_payload(delivery)), separators=(",", ":"))
    return webhook_post(delivery.target.get("endpoint"), delivery.delivery_id, body)


def webhook_post(name: Any, message_id: str, body: str) -> dict[str, Any]:
    """POST ``body`` (JSON text) to the webhook endpoint ``name``, signed per Standard Webhooks with
    ``message_id`` as the webhook id, through the outbound rules; ``{"http_status"}`` on a 2xx, else
    :class:`DeliveryError`. Approval requests and the receipt log's witnesses both send this way."""
    endpoint = WebhookEndpoint.objects.filter(name=name).first() if name else None
    if endpoint is None:
        raise DeliveryError(f"webhook endpoint {name!r} is not configured")
    from django.utils import timezone

    now = timezone.now()
    try:
        signature = Webhook(endpoint.signing_secret).sign(message_id, now, body)
    except Exception:
        raise DeliveryError("the webhook endpoint's signing secret is not a valid whsec_ secret") from None
    headers = {
        "content-type": "application/json",
        # The delivery id is the webhook id: receivers de-duplicate retries by it.
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "user-agent": "TraceMem-Webhooks/1",
    }
    try:
        response = _http("POST", endpoint.url, content=body, headers=headers)
    except outbound.OutboundRefused as exc:
        raise DeliveryError(f"webhook endpoint {name!r} was not contacted: {exc.message}") from None
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"webhook receiver {_late(exc)}") from None
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook receiver unreachable: {type(exc).__name__}") from None
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"webhook receiver answered HTTP {response.status_code}")
    return {"http_status": response.status_code}
