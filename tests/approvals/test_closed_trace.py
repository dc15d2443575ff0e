"""A closed decision's trace never changes (docs/contract/states.md): late votes are refused and late delivery results
stay on the Delivery row, so a receipt issued at close keeps verifying offline."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client, override_settings

from approvals.models import Approval, Delivery, Vote
from approvals.services import outbox as approval_outbox
from decisions import receipts
from decisions.models import Decision, TraceEvent
from decisions.services import decision_close
from tests.appr_helpers import make_reviewer, make_route, open_decision, request_approval
from tracemem_core.actor import Actor

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("test-worker")


@pytest.fixture(autouse=True)
def known_receipt_key() -> Iterator[None]:
    receipts._load_signing_key.cache_clear()
    seed = base64.b64encode(bytes(range(32))).decode()
    with override_settings(TRACEMEM_RECEIPT_KEY=seed, TRACEMEM_RECEIPT_KEY_FILE=""):
        yield
    receipts._load_signing_key.cache_clear()


def _verify_offline(tmp_path: Path, receipt: Any, trace: Any) -> subprocess.CompletedProcess[str]:
    keys = Client().get("/.well-known/tracemem/receipt-keys").json()
    paths = {}
    for name, value in (("receipt", receipt), ("trace", trace), ("keys", keys)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(value))
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
    env["PYTHONPATH"] = str(settings.BASE_DIR)
    return subprocess.run(
        [sys.executable, "-m", "tracemem_verify", str(paths["receipt"]), "--trace", str(paths["trace"])]
        + ["--keys", str(paths["keys"])],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _pending(api: Any, channels: list[dict[str, Any]] | None = None) -> tuple[str, str]:
    make_route("route_finance", channels=channels or [], required_approvals=2)
    decision_id = open_decision(api)
    response = request_approval(api, decision_id, approval_route_id="route_finance")
    assert response.status_code == 201, response.content
    return decision_id, response.json()["approval_id"]


def test_late_delivery_result_stays_on_the_row_and_the_receipt_still_verifies(
    api: Any, agent_actor: Actor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision_id, approval_id = _pending(api, [{"type": "webhook", "endpoint": "ops"}])
    [delivery] = Delivery.objects.filter(approval_id=approval_id)
    taken: dict[str, Any] = {}

    def receiver_slow_while_agent_aborts(row: Delivery) -> dict[str, Any]:
        # The agent gives up while the worker is still talking to the receiver.
        decision_close(actor=agent_actor, decision_id=decision_id, action="abort", reason="too slow")
        taken["receipt"] = api.get(f"/api/v1/decisions/{decision_id}/receipt").json()
        return {"status_code": 200}

    monkeypatch.setattr(approval_outbox.senders, "send", receiver_slow_while_agent_aborts)

    result = approval_outbox.delivery_attempt(actor=SYSTEM, delivery_id=delivery.delivery_id)

    assert result == approval_outbox.AttemptResult("delivered")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("delivered", 1, "")
    assert delivery.external_ref == {"status_code": 200}
    assert delivery.attempt_log[-1]["late"] is True
    receipt = taken["receipt"]
    decision = Decision.objects.get(pk=decision_id)
    assert (decision.event_count, decision.trace_head) == (
        receipt["receipt_data"]["event_count"],
        receipt["receipt_data"]["trace_head"],
    )
    assert not TraceEvent.objects.filter(decision_id=decision_id, type="delivery").exists()
    trace = api.get(f"/api/v1/decisions/{decision_id}/trace").json()
    verdict = _verify_offline(tmp_path, receipt, trace)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr
    assert verdict.stdout.startswith("OK: ")


def test_late_failed_attempt_is_not_retried_and_not_traced(
    api: Any, agent_actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision_id, approval_id = _pending(api, [{"type": "webhook", "endpoint": "ops"}])
    [delivery] = Delivery.objects.filter(approval_id=approval_id)

    def receiver_down_while_agent_aborts(row: Delivery) -> dict[str, Any]:
        decision_close(actor=agent_actor, decision_id=decision_id, action="abort")
        raise approval_outbox.senders.DeliveryError("receiver answered 503")

    monkeypatch.setattr(approval_outbox.senders, "send", receiver_down_while_agent_aborts)

    result = approval_outbox.delivery_attempt(actor=SYSTEM, delivery_id=delivery.delivery_id)

    assert result == approval_outbox.AttemptResult("cancelled")
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("cancelled", "receiver answered 503")
    assert approval_outbox.deliveries_redispatch_due(actor=SYSTEM) == 0
    types = list(
        TraceEvent.objects.filter(decision_id=decision_id).order_by("seq").values_list("type", flat=True)
    )
    assert types == ["created", "approval_requested", "approval_resolved", "close"]
    assert Decision.objects.get(pk=decision_id).event_count == 4


def test_vote_after_abort_is_refused_and_the_receipt_still_verifies(api: Any, tmp_path: Path) -> None:
    decision_id, approval_id = _pending(api)
    reviewer = make_reviewer("rev1", Approval.objects.get(pk=approval_id).route.approver_group)
    assert api.post(f"/api/v1/decisions/{decision_id}/close", {"action": "abort"}).status_code == 200
    receipt = api.get(f"/api/v1/decisions/{decision_id}/receipt").json()

    response = reviewer.approve(approval_id, "late")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_state"
    assert "cancelled" in response.json()["error"]["message"]
    assert Vote.objects.filter(approval_id=approval_id).count() == 0
    trace = api.get(f"/api/v1/decisions/{decision_id}/trace").json()
    verdict = _verify_offline(tmp_path, receipt, trace)
    assert verdict.returncode == 0, verdict.stdout + verdict.stderr


def test_vote_on_a_pending_approval_of_a_closed_decision_is_refused_and_writes_nothing(api: Any) -> None:
    # Data left by older versions: an approval still pending although its decision was aborted.
    decision_id, approval_id = _pending(api)
    assert api.post(f"/api/v1/decisions/{decision_id}/close", {"action": "abort"}).status_code == 200
    Approval.objects.filter(pk=approval_id).update(status="pending", resolved_at=None, resolution_channel="")
    before = Decision.objects.get(pk=decision_id)
    reviewer = make_reviewer("rev1", Approval.objects.get(pk=approval_id).route.approver_group)

    response = reviewer.reject(approval_id, "late")

    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invalid_state"
    assert f"decision {decision_id} is already aborted" in response.json()["error"]["message"]
    after = Decision.objects.get(pk=decision_id)
    assert (after.event_count, after.trace_head, after.status) == (
        before.event_count,
        before.trace_head,
        "aborted",
    )
    assert Vote.objects.filter(approval_id=approval_id).count() == 0
    assert Approval.objects.get(pk=approval_id).status == "pending"


def test_pending_delivery_of_a_committed_decision_is_never_sent(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision_id, approval_id = _pending(api, [{"type": "webhook", "endpoint": "ops"}])
    Approval.objects.filter(pk=approval_id).update(required_approvals=1)
    reviewer = make_reviewer("rev1", Approval.objects.get(pk=approval_id).route.approver_group)
    assert reviewer.approve(approval_id).status_code == 200
    assert api.post(f"/api/v1/decisions/{decision_id}/close", {"action": "commit"}).status_code == 200
    [delivery] = Delivery.objects.filter(approval_id=approval_id)
    assert delivery.status == "pending"  # e.g. still waiting for a retry when the agent committed
    before = Decision.objects.get(pk=decision_id)
    sent: list[str] = []
    monkeypatch.setattr(approval_outbox.senders, "send", lambda row: sent.append(row.delivery_id) or {})

    assert approval_outbox.delivery_attempt(actor=SYSTEM, delivery_id=delivery.delivery_id) is None

    assert sent == []
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("cancelled", 0)
    after = Decision.objects.get(pk=decision_id)
    assert (after.event_count, after.trace_head) == (before.event_count, before.trace_head)
