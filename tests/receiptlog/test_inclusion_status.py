"""Why a receipt has no inclusion proof, said in every door that carries one: ``decision_receipt``
(REST and MCP share it), the evidence pack and ``/inclusion``. "Not in a checkpoint yet" is
``pending``; a damaged log is ``error`` with what is wrong — never a bare null that hides it.

docs/receipts.md, "Proofs through the doors".
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.conftest import AgentClient, superuser_sql
from tests.receiptlog.test_server import (
    checkpoint_now,
    close_decision,
    log_settings,  # noqa: F401 - autouse fixture
)

pytestmark = pytest.mark.django_db(transaction=True)
FIELDS = ("inclusion", "inclusion_status", "inclusion_reason")


def proof_fields(document: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(document[name] for name in FIELDS)


def test_the_pack_and_the_receipt_say_pending_until_a_checkpoint_covers_the_leaf(api: AgentClient) -> None:
    first = close_decision(api)
    checkpoint_now()
    second = close_decision(api)
    pending = (
        None,
        "pending",
        f"decision {second} is leaf 1 of the receipt log, and the latest checkpoint covers 1 leaves: "
        "the worker signs a newer one within seconds; ask again then",
    )
    assert proof_fields(api.get(f"/api/v1/decisions/{second}/evidence").json()) == pending
    assert proof_fields(api.get(f"/api/v1/decisions/{second}/receipt").json()) == pending
    included = api.get(f"/api/v1/decisions/{first}/receipt").json()
    assert included["inclusion_status"] == "included" and included["inclusion_reason"] is None
    assert included["inclusion"]["leaf_index"] == 0 and included["inclusion"]["tree_size"] == 1
    pack = api.get(f"/api/v1/decisions/{first}/evidence").json()
    assert proof_fields(pack) == proof_fields(included)

    # An open decision's pack has no receipt, hence nothing in the log.
    open_id = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    assert proof_fields(api.get(f"/api/v1/decisions/{open_id}/evidence").json()) == (
        None,
        "no_receipt",
        "the decision is not closed yet: it has no receipt, so nothing is in the receipt log",
    )


def test_a_receipt_missing_from_the_log_is_an_error_in_the_pack_and_the_receipt_not_a_null(
    api: AgentClient, caplog: Any
) -> None:
    close_decision(api)
    did = close_decision(api)
    checkpoint_now()
    # The superuser, triggers off, removes the last leaf (what the database otherwise refuses).
    superuser_sql("DELETE FROM receiptlog_logleaf WHERE leaf_index = 1")
    reason = (
        f"the receipt of decision {did} is not in the receipt log, although every receipt is appended in its "
        "close transaction: the log is damaged; an operator should run manage.py log_verify"
    )
    caplog.set_level(logging.ERROR, logger="receiptlog.selectors")
    assert proof_fields(api.get(f"/api/v1/decisions/{did}/evidence").json()) == (None, "error", reason)
    assert proof_fields(api.get(f"/api/v1/decisions/{did}/receipt").json()) == (None, "error", reason)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"receipt log: {reason}"] * 2  # the operator sees it in the logs too
    refused = api.get(f"/api/v1/decisions/{did}/inclusion")
    assert refused.status_code == 409
    assert refused.json()["error"] == {"code": "invalid_state", "message": reason, "details": {}}


def test_a_missing_node_of_the_audit_path_is_an_error_naming_it(api: AgentClient) -> None:
    did = close_decision(api)
    close_decision(api)
    checkpoint_now()
    # Leaf 0's audit path in a tree of 2 is leaf 1's hash; the superuser truncates it.
    superuser_sql("UPDATE receiptlog_logleaf SET leaf_hash = '\\x00' WHERE leaf_index = 1")
    reason = (
        f"the receipt log cannot prove decision {did} (leaf 0) against the checkpoint of tree size 2: the log "
        "has no stored hash for node (level 0, index 1); the log is damaged; an operator should run "
        "manage.py log_verify"
    )
    assert proof_fields(api.get(f"/api/v1/decisions/{did}/evidence").json()) == (None, "error", reason)
    assert proof_fields(api.get(f"/api/v1/decisions/{did}/receipt").json()) == (None, "error", reason)
    refused = api.get(f"/api/v1/decisions/{did}/inclusion")
    assert refused.status_code == 409 and refused.json()["error"]["message"] == reason
