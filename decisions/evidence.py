"""The evidence pack of one decision: everything an auditor needs, in one verifiable JSON document.

It holds the decision, its full trace, the policy and product versions the trace used (with their
hashes), the approvals with every vote and identity, the signed receipt (for closed decisions) and
the receipt keys published when the pack was made. ``python -m tracemem_verify pack.json --keys
keys.json`` checks the receipt and recomputes the chain. Design notes: ``docs/receipts.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.utils import timezone

from decisions.models import TERMINAL_STATUSES, Decision, EventType
from decisions.receipts import receipt_inclusion_fields, receipt_keys_published, receipt_stored
from decisions.selectors import decision_events, decision_for, event_as_dict
from decisions.serializers import decision_out
from policies import selectors as policy_selectors
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.timefmt import iso_z
from tracemem_verify.chain import verify_chain

EVIDENCE_FORMAT = "tracemem.evidence.v1"


def _first(payload: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if payload.get(name) is not None:
            return payload[name]
    return None


def _policy_definition(policy_id: Any, version: Any) -> dict[str, Any] | None:
    """The frozen policy version, when the policies app can say (the trace's hash is what counts)."""
    if not isinstance(policy_id, str) or not isinstance(version, int):
        return None
    try:
        found = policy_selectors.version_of(policy_id, version)
        return {"content": found.content(), "hash": found.hash, "status": found.status}
    except Exception:  # the policies app is optional here: a pack without definitions still verifies
        return None


def _policies(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for event in events:
        if event["type"] != EventType.EVALUATE:
            continue
        payload = event["payload"] or {}
        key = (
            _first(payload, "policy_id", "policy"),
            _first(payload, "policy_version", "version"),
            _first(payload, "policy_hash", "hash"),
        )
        entry = found.setdefault(
            key,
            {"policy_id": key[0], "policy_version": key[1], "policy_hash": key[2], "evaluations": []},
        )
        entry["evaluations"].append(
            {"event_id": event["event_id"], "seq": event["seq"], "outcome": payload.get("outcome")}
        )
    out = list(found.values())
    for entry in out:
        definition = _policy_definition(entry["policy_id"], entry["policy_version"])
        if definition is not None:
            entry["definition"] = definition
    return out


def _products(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: dict[tuple[Any, Any, Any], dict[str, Any]] = {}
    for event in events:
        if event["type"] not in (EventType.READ, EventType.WRITE):
            continue
        payload = event["payload"] or {}
        key = (
            _first(payload, "product_id", "product"),
            _first(payload, "product_version", "version"),
            _first(payload, "product_hash", "hash"),
        )
        entry = found.setdefault(
            key, {"product_id": key[0], "product_version": key[1], "product_hash": key[2], "uses": []}
        )
        entry["uses"].append(
            {
                "event_id": event["event_id"],
                "seq": event["seq"],
                "type": event["type"],
                "purpose": payload.get("purpose"),
                "operation": payload.get("operation"),
            }
        )
    return list(found.values())


def _approvals(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds = {
        EventType.APPROVAL_REQUESTED: "requested",
        EventType.APPROVAL_VOTE: "votes",
        EventType.APPROVAL_RESOLVED: "resolution",
        EventType.DELIVERY: "deliveries",
    }
    found: dict[Any, dict[str, Any]] = {}
    for event in events:
        kind = kinds.get(event["type"])
        if kind is None:
            continue
        payload = event["payload"] or {}
        approval_id = payload.get("approval_id")
        entry = found.setdefault(
            approval_id,
            {
                "approval_id": approval_id,
                "requested": None,
                "votes": [],
                "resolution": None,
                "deliveries": [],
            },
        )
        item = {"event_id": event["event_id"], "seq": event["seq"], "actor": event["actor"], **payload}
        if kind in ("votes", "deliveries"):
            entry[kind].append(item)
        else:
            entry[kind] = item
    return list(found.values())


def evidence_of(actor: Actor, decision: Decision) -> dict[str, Any]:
    """Build the pack of a decision the actor may already see (visibility checked by the caller)."""
    events = [event_as_dict(e) for e in decision_events(decision)]
    broken = verify_chain(decision.decision_id, events)
    closed = decision.status in TERMINAL_STATUSES
    receipt = receipt_stored(decision)
    return {
        "format": EVIDENCE_FORMAT,
        "generated_at": iso_z(timezone.now()),
        "generated_for": actor.as_trace(),
        "decision": decision_out(decision),
        "trace": events,
        "policies": _policies(events),
        "products": _products(events),
        "approvals": _approvals(events),
        "receipt": receipt,
        # The receipt log's proof, or why there is none (receiptlog.selectors.receipt_inclusion).
        **receipt_inclusion_fields(receipt),
        "keys": receipt_keys_published(),
        "verification": {
            "trace_intact": broken is None,
            "trace_break": str(broken) if broken else None,
            "command": "python -m tracemem_verify evidence.json --keys receipt-keys.json",
            "keys_url": "/.well-known/tracemem/receipt-keys",
            "note": None if closed else "the decision is not closed yet: there is no receipt to verify",
        },
    }


def evidence_pack(*, actor: Actor, decision_id: Any) -> dict[str, Any]:
    """The evidence pack of one decision: its owning agent, reviewers and auditors may fetch it.

    Visibility is :func:`decisions.selectors.decisions_visible_to` (another agent's decision is
    ``not_found``). The HTML "evidence" button of the decision page calls this too.
    """
    clean_id = v.string(decision_id, "decision_id", max_length=40)
    return evidence_of(actor, decision_for(actor, clean_id))
