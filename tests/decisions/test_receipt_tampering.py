"""Receipts issued once, and tampering by the PostgreSQL superuser detected (issue 11, finding 3:
"closed decisions and receipts can change without detection")."""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.apps import apps
from django.core.management import CommandError, call_command
from django.test import Client

from decisions import receipts, services
from decisions.models import Decision, Receipt, TraceEvent
from receiptlog.models import LogLeaf
from receiptlog.tasks import log_tick
from tests.conftest import AgentClient, superuser_sql
from tests.decisions.test_receipt import SEED_A, key_a, run_cli  # noqa: F401 - key_a: autouse fixture
from tests.mcp_helpers import mcp_calls
from tracemem_core.actor import Actor
from tracemem_verify.log import LEAF_FIELDS
from tracemem_verify.receipt import sign_receipt_data, verify_receipt, verify_trace_against


def _closed(api: AgentClient, action: str) -> str:
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    assert api.post(f"/api/v1/decisions/{did}/context", {"context": {"step": 1}}).status_code == 201
    assert api.post(f"/api/v1/decisions/{did}/close", {"action": action}).status_code == 200
    return did


def _write(tmp_path: Path, name: str, value: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return str(path)


def _keys(tmp_path: Path) -> str:
    return _write(tmp_path, "keys.json", Client().get("/.well-known/tracemem/receipt-keys").json())


def _verify_with_trace(tmp_path: Path, receipt: Any, trace: Any) -> Any:
    """``python -m tracemem_verify receipt --trace trace --keys <the published keys>``."""
    return run_cli(
        _write(tmp_path, "r.json", receipt),
        "--trace",
        _write(tmp_path, "t.json", trace),
        "--keys",
        _keys(tmp_path),
    )


def _verify_traces(capsys: Any) -> str:
    with pytest.raises(CommandError, match="1 of 1 decisions fail verification"):
        call_command("verify_traces")
    return capsys.readouterr().err


@pytest.mark.django_db
@pytest.mark.parametrize(("action", "status"), [("commit", "committed"), ("abort", "aborted")])
def test_the_receipt_is_stored_at_close_and_signs_the_close_action(
    api: AgentClient, action: str, status: str
) -> None:
    did = _closed(api, action)
    stored = Receipt.objects.get(decision_id=did)
    decision = Decision.objects.get(pk=did)
    assert stored.receipt_data["close_action"] == action and stored.receipt_data["status"] == status
    assert stored.receipt_data["event_count"] == decision.event_count == 3
    assert stored.receipt_data["trace_head"] == decision.trace_head
    close = TraceEvent.objects.get(decision_id=did, seq=3)
    assert decision.closed_at == close.timestamp and stored.signed_at >= close.timestamp


@pytest.mark.django_db(transaction=True)
def test_decision_receipt_is_byte_identical_on_every_fetch_through_both_doors(
    live_server: Any, make_agent: Any
) -> None:
    _, key = make_agent("receipt-agent")
    api = AgentClient(key)
    did = _closed(api, "commit")
    first = api.get(f"/api/v1/decisions/{did}/receipt").content
    time.sleep(0.01)  # a receipt signed on demand would carry another signed_at
    assert api.get(f"/api/v1/decisions/{did}/receipt").content == first
    receipt = json.loads(first)
    assert receipt["signed_at"] == receipts.receipt_out(Receipt.objects.get(decision_id=did))["signed_at"]
    over_mcp = mcp_calls(live_server, key, [("decision_receipt", {"decision_id": did})] * 2)
    assert over_mcp == [(False, receipt), (False, receipt)]
    # The evidence pack carries the same stored receipt (its signed bytes are receipt_data's RFC 8785 form).
    issued = {k: v for k, v in receipt.items() if k in LEAF_FIELDS}
    assert api.get(f"/api/v1/decisions/{did}/evidence").json()["receipt"] == issued
    # Once a checkpoint covers it, the answer gains its inclusion proof; the receipt itself is unchanged.
    assert receipt["inclusion_status"] == "pending"
    log_tick()
    later = api.get(f"/api/v1/decisions/{did}/receipt").json()
    assert later["inclusion_status"] == "included"
    assert {k: v for k, v in later.items() if k in LEAF_FIELDS} == issued
    assert mcp_calls(live_server, key, [("decision_receipt", {"decision_id": did})]) == [(False, later)]


@pytest.mark.django_db
def test_a_record_is_issued_its_receipt_when_it_is_written(agent_actor: Actor) -> None:
    from decisions import records

    record = records.decision_record(
        actor=agent_actor,
        title="Use PgBouncer",
        category="infra",
        context="c",
        decision="d",
        rationale="r",
    )
    receipt = receipts.receipt_stored(record.decision)
    assert receipt is not None and receipt["receipt_data"]["close_action"] == "record"
    events = [e for e in TraceEvent.objects.filter(decision=record.decision)]
    from decisions.selectors import event_as_dict

    assert verify_trace_against(receipt["receipt_data"], [event_as_dict(e) for e in events]).ok


@pytest.mark.django_db(transaction=True)
def test_a_status_flip_by_the_superuser_is_reported_by_both_verifiers(
    make_agent: Any, tmp_path: Path, capsys: Any
) -> None:
    """The finding: ``UPDATE decisions_decision SET status='committed'`` on an aborted decision."""
    _, key = make_agent("flip-agent")
    api = AgentClient(key)
    did = _closed(api, "abort")
    receipt_before = api.get(f"/api/v1/decisions/{did}/receipt").content
    superuser_sql("UPDATE decisions_decision SET status = 'committed' WHERE decision_id = %s", params=[did])

    err = _verify_traces(capsys)
    assert (
        f"decision {did}: its row says committed but its close event (seq 3) says aborted (action abort)"
        in err
    )
    assert f"decision {did}: its receipt says status 'aborted' but its row says 'committed'" in err
    # The receipt was issued at close: the flip does not reach it.
    assert api.get(f"/api/v1/decisions/{did}/receipt").content == receipt_before
    pack = api.get(f"/api/v1/decisions/{did}/evidence").json()
    result = run_cli(_write(tmp_path, "pack.json", pack), "--keys", _keys(tmp_path))
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "FAIL: pack section decision: status 'committed' differs from the signed receipt_data status 'aborted'"
    )


@pytest.mark.django_db
def test_tracemem_verify_fails_a_receipt_that_disagrees_with_the_close_event(
    api: AgentClient, tmp_path: Path
) -> None:
    """What the old server did after a status flip: sign ``committed`` from the edited row while the
    trace's close event says abort. The receipt verifies; its trace must not."""
    did = _closed(api, "abort")
    receipt = api.get(f"/api/v1/decisions/{did}/receipt").json()
    trace = api.get(f"/api/v1/decisions/{did}/trace").json()
    for forged in (
        {"status": "committed", "close_action": "commit"},
        {"status": "committed"},  # a receipt of the old format, without close_action
    ):
        data = {k: v for k, v in receipt["receipt_data"].items() if k != "close_action"} | forged
        signed = {**receipt, "status": "committed", "receipt_data": data}
        signed["signature"] = sign_receipt_data(Ed25519PrivateKey.from_private_bytes(SEED_A), data)
        result = _verify_with_trace(tmp_path, signed, trace)
        assert result.returncode == 1, result.stdout
        assert result.stdout.strip() == (
            "FAIL: the receipt says status committed but the trace's close event (seq 3) says aborted (action abort)"
        )
    receipt["receipt_data"]["close_action"] = "commit"
    receipt["signature"] = sign_receipt_data(
        Ed25519PrivateKey.from_private_bytes(SEED_A), receipt["receipt_data"]
    )
    result = _verify_with_trace(tmp_path, receipt, trace)
    assert result.stdout.strip() == (
        "FAIL: the receipt says close_action commit but the trace's close event (seq 3) says action abort"
    )


@pytest.mark.django_db(transaction=True)
def test_a_trace_rewound_by_the_superuser_is_reported_by_both_verifiers(
    make_agent: Any, tmp_path: Path, capsys: Any
) -> None:
    """The finding: delete the last event and rewind event_count/trace_head (here: reopening the
    decision, so that row and trace agree with each other again)."""
    _, key = make_agent("rewind-agent")
    api = AgentClient(key)
    did = _closed(api, "commit")
    receipt = api.get(f"/api/v1/decisions/{did}/receipt").json()
    second = TraceEvent.objects.get(decision_id=did, seq=2)
    superuser_sql(
        "DELETE FROM decisions_traceevent WHERE decision_id = %(d)s AND seq = 3",
        "UPDATE decisions_decision SET event_count = 2, trace_head = %(h)s, status = 'open', closed_at = NULL "
        "WHERE decision_id = %(d)s",
        params={"d": did, "h": second.hash},
    )

    err = _verify_traces(capsys)
    assert f"decision {did}: its receipt: trace has 2 events but the receipt pins 3" in err
    assert f"decision {did}: its receipt says status 'committed' but its row says 'open'" in err
    trace = api.get(f"/api/v1/decisions/{did}/trace").json()
    result = _verify_with_trace(tmp_path, receipt, trace)
    assert (
        result.returncode == 1 and result.stdout.strip() == "FAIL: trace has 2 events but the receipt pins 3"
    )
    pack = api.get(f"/api/v1/decisions/{did}/evidence").json()
    # the stored receipt outlives the rewind
    assert pack["receipt"] == {k: v for k, v in receipt.items() if k in LEAF_FIELDS}
    result = run_cli(_write(tmp_path, "pack.json", pack), "--keys", _keys(tmp_path))
    assert (
        result.returncode == 1 and result.stdout.strip() == "FAIL: trace has 2 events but the receipt pins 3"
    )


@pytest.mark.django_db(transaction=True)
def test_a_deleted_last_event_is_reported_by_both_verifiers(
    make_agent: Any, tmp_path: Path, capsys: Any
) -> None:
    """The close event removed and nothing else touched: the row and the receipt still say 3 events."""
    _, key = make_agent("lost-event-agent")
    api = AgentClient(key)
    did = _closed(api, "commit")
    receipt = api.get(f"/api/v1/decisions/{did}/receipt").json()
    superuser_sql("DELETE FROM decisions_traceevent WHERE decision_id = %s AND seq = 3", params=[did])

    err = _verify_traces(capsys)
    assert (
        f"decision {did}: its row says 3 events ending at" in err and "but its trace has 2 ending at" in err
    )
    assert f"decision {did}: its receipt: trace has 2 events but the receipt pins 3" in err
    # The row still says 3, so the first page points at a next one, which is empty: pass both.
    first = api.get(f"/api/v1/decisions/{did}/trace").json()
    assert (len(first["events"]), first["next_after_seq"]) == (2, 2)
    rest = api.get(f"/api/v1/decisions/{did}/trace?after_seq=2").json()
    assert (rest["events"], rest["next_after_seq"]) == ([], None)
    result = run_cli(
        _write(tmp_path, "r.json", receipt),
        "--trace",
        _write(tmp_path, "t1.json", first),
        "--trace",
        _write(tmp_path, "t2.json", rest),
        "--keys",
        _keys(tmp_path),
    )
    assert (
        result.returncode == 1 and result.stdout.strip() == "FAIL: trace has 2 events but the receipt pins 3"
    )


@pytest.mark.django_db(transaction=True)
def test_a_deleted_receipt_is_reported_and_never_signed_again(
    make_agent: Any, tmp_path: Path, capsys: Any
) -> None:
    _, key = make_agent("lost-receipt-agent")
    api = AgentClient(key)
    did = _closed(api, "commit")
    # Its leaf in the receipt log refers to it: whoever deletes the receipt deletes that too.
    superuser_sql(
        f"DELETE FROM receiptlog_logleaf WHERE decision_id = '{did}'",
        f"DELETE FROM decisions_receipt WHERE decision_id = '{did}'",
    )
    err = _verify_traces(capsys)
    assert f"decision {did}: it is closed but has no stored receipt" in err
    response = api.get(f"/api/v1/decisions/{did}/receipt")
    assert response.status_code == 409 and response.json()["error"]["code"] == "invalid_state"
    assert "has no stored receipt" in response.json()["error"]["message"]
    assert not Receipt.objects.filter(decision_id=did).exists()
    # The evidence pack of a closed decision without its receipt does not verify offline either.
    pack = api.get(f"/api/v1/decisions/{did}/evidence").json()
    assert pack["decision"]["status"] == "committed" and pack["receipt"] is None
    result = run_cli(_write(tmp_path, "pack.json", pack), "--keys", _keys(tmp_path))
    assert result.returncode == 1, result.stdout


@pytest.mark.django_db
def test_verify_traces_accepts_closed_decisions_with_their_receipts(api: AgentClient, capsys: Any) -> None:
    _closed(api, "commit")
    _closed(api, "abort")
    call_command("verify_traces")
    assert (
        "OK: 2 decisions verified: every hash chain intact, every closed decision" in capsys.readouterr().out
    )


@pytest.mark.django_db
def test_the_migration_issues_the_receipts_of_decisions_closed_before_it(agent_actor: Actor) -> None:
    """Decisions closed before migration 0003 had no stored receipt: the migration signs theirs."""
    decision = services.decision_create(
        actor=agent_actor, intent="code.refactor.execute", automation_mode="autonomous"
    )
    # A close as the old code wrote it: the close event alone (the receipt check is deferred to a
    # commit this test never makes).
    services.trace_append(
        decision=decision,
        type="close",
        actor=agent_actor,
        payload={"action": "abort", "status": "aborted", "summary": None, "reason": None},
    )
    assert not Receipt.objects.filter(decision=decision).exists()
    migration = importlib.import_module("decisions.migrations.0003_trust_triggers_and_receipts")
    migration.issue_missing_receipts(apps, None)
    # ... and the receipt log's migration appends it (a receipt cannot commit without its leaf).
    importlib.import_module("receiptlog.migrations.0002_append_only_log").log_existing_receipts(apps, None)
    assert LogLeaf.objects.filter(receipt_id=decision.pk).exists()
    receipt = receipts.receipt_stored(Decision.objects.get(pk=decision.pk))
    assert receipt is not None and receipt["receipt_data"]["close_action"] == "abort"
    keys = receipts.receipt_keys_published()
    assert verify_receipt(receipt, keys).ok
    from decisions.selectors import decision_events, event_as_dict

    events = [event_as_dict(e) for e in decision_events(decision)]
    assert verify_trace_against(receipt["receipt_data"], events).ok
    migration.issue_missing_receipts(apps, None)  # idempotent
    assert Receipt.objects.filter(decision=decision).count() == 1
