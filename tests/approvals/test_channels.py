"""Delivery over real local servers: SMTP (aiosmtpd), a webhook receiver and a stand-in Slack API."""

from __future__ import annotations

import base64
import email
import json
import re
import secrets
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from aiosmtpd.controller import Controller
from django.test import Client
from django.utils import timezone
from slack_sdk.signature import SignatureVerifier
from standardwebhooks import Webhook

from approvals.models import Approval, Delivery, EmailLink, SlackIntegration, Vote, WebhookEndpoint
from approvals.services import outbox as approval_outbox
from approvals.tasks import update_slack_messages
from decisions.models import TraceEvent
from tests.appr_helpers import make_reviewer, make_route, open_decision, request_approval
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db
WORKER = Actor.system("test-worker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp(settings: Any) -> Iterator[Recorder]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", port, False
    yield recorder
    controller.stop()


def deliver_all(approval_id: str) -> list[Delivery]:
    for delivery in Delivery.objects.filter(approval_id=approval_id):
        approval_outbox.delivery_attempt(actor=WORKER, delivery_id=delivery.delivery_id)
    return list(Delivery.objects.filter(approval_id=approval_id).order_by("created_at"))


def confirm_link(raw: bytes) -> tuple[str, str, str]:
    message = email.message_from_bytes(raw)
    parts = {
        p.get_content_type(): p.get_payload(decode=True).decode()
        for p in message.walk()
        if not p.is_multipart()
    }
    text, html = parts["text/plain"], parts["text/html"]
    path = re.search(r"https?://[^/\s]+(/approvals/email/[^\s\"<]+)", text).group(1)
    return path, text, html


def test_email_link_confirms_through_post_once_and_refuses_reuse_tamper_and_expiry(
    api: Any, smtp: Recorder, settings: Any
) -> None:
    route = make_route("route_finance", channels=[{"type": "email"}])
    alice = make_reviewer("alice", route.approver_group)
    decision_id = open_decision(api)
    approval_id = request_approval(
        api,
        decision_id,
        approval_route_id="route_finance",
        title="Refund 900 EUR",
        message="please check; key sk-hunter2hunter2hunter2hunter2",
    ).json()["approval_id"]
    [delivery] = deliver_all(approval_id)
    assert delivery.status == "delivered" and delivery.attempts == 1
    [(rcpt, raw)] = smtp.messages
    assert rcpt == ["alice@example.com"]
    path, text, html = confirm_link(raw)
    assert "Refund 900 EUR" in text and "Refund 900 EUR" in html
    assert "hunter2" not in raw.decode(errors="replace")

    browser = Client(enforce_csrf_checks=True)
    page = browser.get(path)
    assert page.status_code == 200 and b"Refund 900 EUR" in page.content and b"Approve" in page.content
    assert Approval.objects.get(pk=approval_id).status == "pending"  # GET resolves nothing
    no_csrf = browser.post(path, {"decision": "approve"})
    assert no_csrf.status_code == 403 and not Vote.objects.exists()

    tampered = browser.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"))
    assert tampered.status_code == 403 and b"not valid" in tampered.content

    max_age = settings.TRACEMEM_EMAIL_LINK_MAX_AGE
    settings.TRACEMEM_EMAIL_LINK_MAX_AGE = -1
    assert b"expired" in browser.get(path).content
    settings.TRACEMEM_EMAIL_LINK_MAX_AGE = max_age

    csrf = browser.cookies["csrftoken"].value
    done = browser.post(path, {"decision": "approve", "rationale": "ok by mail", "csrfmiddlewaretoken": csrf})
    assert done.status_code == 200 and b"approved" in done.content
    [vote] = Vote.objects.all()
    assert (vote.user_id, vote.channel, vote.rationale) == (alice.user.pk, "email", "ok by mail")
    assert api.get(f"/api/v1/decisions/{decision_id}").json()["approval_status"] == "approved"

    again = browser.post(path, {"decision": "reject", "csrfmiddlewaretoken": csrf})
    assert again.status_code == 403 and b"already used" in again.content
    assert Vote.objects.count() == 1 and EmailLink.objects.get().used_at is not None


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def test_webhook_is_signed_per_standard_webhooks_and_webhook_id_is_the_delivery_id(
    api: Any, httpserver: Any
) -> None:
    secret = whsec()
    WebhookEndpoint.objects.create(name="ops", url=httpserver.url_for("/hook"), signing_secret=secret)
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    make_route("route_finance", channels=[{"type": "webhook", "endpoint": "ops"}])
    decision_id = open_decision(api)
    approval_id = request_approval(
        api,
        decision_id,
        approval_route_id="route_finance",
        message="token: ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    ).json()["approval_id"]
    [delivery] = deliver_all(approval_id)
    assert delivery.status == "delivered"
    [(request, _)] = httpserver.log
    headers = {k.lower(): v for k, v in request.headers.items()}
    payload = Webhook(secret).verify(request.get_data(as_text=True), headers)
    assert headers["webhook-id"] == delivery.delivery_id == payload["delivery_id"]
    assert payload["type"] == "approval.requested"
    assert (payload["approval_id"], payload["decision_id"], payload["route_id"]) == (
        approval_id,
        decision_id,
        "route_finance",
    )
    assert payload["resolve_url"].endswith(f"/api/v1/approvals/{approval_id}/resolve")
    assert "ghp_" not in request.get_data(as_text=True)
    with pytest.raises(Exception):  # noqa: B017 - any verification error
        Webhook(whsec()).verify(request.get_data(as_text=True), headers)
    got = api.get(f"/api/v1/decisions/{decision_id}").json()
    assert got["delivery"] == {
        "status": "delivered",
        "channels": [{"channel": "webhook", "status": "delivered"}],
        "note": got["delivery"]["note"],
    }
    [event] = TraceEvent.objects.filter(decision_id=decision_id, type="delivery")
    assert event.payload["status"] == "delivered" and event.payload["delivery_id"] == delivery.delivery_id


def test_webhook_answering_500_is_retried_with_backoff_then_marked_failed(
    api: Any, httpserver: Any, settings: Any
) -> None:
    settings.TRACEMEM_DELIVERY_MAX_ATTEMPTS = 3
    settings.TRACEMEM_DELIVERY_BACKOFF_MS = 1000
    secret = whsec()
    WebhookEndpoint.objects.create(name="ops", url=httpserver.url_for("/hook"), signing_secret=secret)
    httpserver.expect_request("/hook").respond_with_data("boom", status=500)
    make_route("route_finance", channels=[{"type": "webhook", "endpoint": "ops"}])
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    delivery = Delivery.objects.get(approval_id=approval_id)

    first = approval_outbox.delivery_attempt(actor=WORKER, delivery_id=delivery.delivery_id)
    assert first is not None and (first.status, first.retry_in_ms) == ("pending", 1000)
    # Not due yet: a second attempt right away does nothing (backoff is respected).
    assert approval_outbox.delivery_attempt(actor=WORKER, delivery_id=delivery.delivery_id) is None
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    second = approval_outbox.delivery_attempt(actor=WORKER, delivery_id=delivery.delivery_id)
    assert (second.status, second.retry_in_ms) == ("pending", 2000)
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now())
    third = approval_outbox.delivery_attempt(actor=WORKER, delivery_id=delivery.delivery_id)
    assert third.status == "failed"

    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == (
        "failed",
        3,
        "webhook receiver answered HTTP 500",
    )
    assert [e.get("retry_in_ms") for e in delivery.attempt_log] == [1000, 2000, None]
    assert len(httpserver.log) == 3
    assert {r.headers["webhook-id"] for r, _ in httpserver.log} == {delivery.delivery_id}
    assert secret not in delivery.last_error
    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    assert approval_outbox.delivery_attempt(actor=WORKER, delivery_id=delivery.delivery_id) is None  # final
    got = api.get(f"/api/v1/decisions/{decision_id}").json()
    assert got["delivery"]["status"] == "failed"
    assert got["delivery"]["channels"] == [{"channel": "webhook", "status": "failed"}]
    assert got["status"] == "needs_approval"  # a failed notification never resolves anything
    [event] = TraceEvent.objects.filter(decision_id=decision_id, type="delivery")
    assert (event.payload["status"], event.payload["attempts"]) == ("failed", 3)


def signed_slack_post(secret: str, payload: dict[str, Any], *, forge: bool = False) -> Any:
    body = urlencode({"payload": json.dumps(payload)})
    timestamp = str(int(time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    if forge:
        signature = SignatureVerifier("not-the-secret").generate_signature(timestamp=timestamp, body=body)
    return Client().post(
        "/integrations/slack/interactions",
        body,
        content_type="application/x-www-form-urlencoded",
        HTTP_X_SLACK_REQUEST_TIMESTAMP=timestamp,
        HTTP_X_SLACK_SIGNATURE=signature,
    )


def test_slack_message_buttons_forged_press_refused_signed_press_votes_and_message_updated(
    api: Any, httpserver: Any
) -> None:
    SlackIntegration.objects.create(
        name="main",
        bot_token="xoxb-test-1",
        signing_secret="sl4ck-s3cret",
        api_base_url=httpserver.url_for("/api/"),
    )
    httpserver.expect_request("/api/chat.postMessage").respond_with_json(
        {"ok": True, "channel": "C1", "ts": "17.1"}
    )
    httpserver.expect_request("/api/users.info").respond_with_json(
        {"ok": True, "user": {"id": "U1", "profile": {"email": "Alice@Example.com"}}}
    )
    httpserver.expect_request("/api/chat.update").respond_with_json({"ok": True})
    route = make_route("route_finance", channels=[{"type": "slack", "integration": "main", "channel": "C1"}])
    alice = make_reviewer("alice", route.approver_group)
    decision_id = open_decision(api)
    approval_id = request_approval(
        api, decision_id, approval_route_id="route_finance", title="Ship it?"
    ).json()["approval_id"]
    [delivery] = deliver_all(approval_id)
    assert delivery.status == "delivered" and delivery.external_ref["ts"] == "17.1"
    posted_request = httpserver.log[0][0]
    assert posted_request.path == "/api/chat.postMessage"
    assert posted_request.headers["Authorization"] == "Bearer xoxb-test-1"
    posted = posted_request.get_json()
    assert posted["channel"] == "C1"
    buttons = posted["blocks"][1]["elements"]
    assert [(b["action_id"], b["value"]) for b in buttons] == [
        ("approve", approval_id),
        ("reject", approval_id),
    ]

    press = {
        "type": "block_actions",
        "user": {"id": "U1"},
        "actions": [{"action_id": "approve", "value": approval_id}],
    }
    forged = signed_slack_post("sl4ck-s3cret", press, forge=True)
    assert forged.status_code == 401 and not Vote.objects.exists()
    assert Approval.objects.get(pk=approval_id).status == "pending"

    ok = signed_slack_post("sl4ck-s3cret", press)
    assert ok.status_code == 200 and "approved" in ok.json()["text"]
    [vote] = Vote.objects.all()
    assert (vote.user_id, vote.channel) == (alice.user.pk, "slack")
    assert update_slack_messages.apply(args=[approval_id]).get() == 1
    update = next(r for r, _ in httpserver.log if r.path == "/api/chat.update").get_json()
    assert (update["channel"], update["ts"]) == ("C1", "17.1")
    assert "approved" in json.dumps(update["blocks"]) and "actions" not in [
        b["type"] for b in update["blocks"]
    ]
