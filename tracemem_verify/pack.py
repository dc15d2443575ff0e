"""The human-readable sections of an evidence pack, checked against what is signed.

The receipt signs ``receipt_data`` and, through ``trace_head``, every trace event. The pack's
``decision``, ``policies`` and ``approvals`` sections are conveniences derived from those; a reader
trusts them, so each is checked here against the signed copy and a mismatch names the section.
Call this only after the receipt and the trace it is given have verified.

No Django here (see ``tracemem_verify.receipt``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from tracemem_verify.chain import canonical_json
from tracemem_verify.receipt import RECEIPT_FIELDS, Verdict

# approvals[] keys and the trace event type each entry is taken from.
APPROVAL_KINDS = {
    "requested": "approval_requested",
    "votes": "approval_vote",
    "resolution": "approval_resolved",
    "deliveries": "delivery",
}
# The envelope the pack adds to an event's payload when it lists it.
_EVENT_ENVELOPE = ("event_id", "seq", "actor")


class _Mismatch(Exception):
    pass


def _first(payload: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if payload.get(name) is not None:
            return payload[name]
    return None


def _check_decision(pack: Mapping[str, Any], receipt_data: Mapping[str, Any]) -> None:
    decision = pack.get("decision")
    if not isinstance(decision, Mapping):
        raise _Mismatch("pack section decision: missing; it must repeat the signed receipt_data")
    for name in RECEIPT_FIELDS:
        if decision.get(name) != receipt_data.get(name):
            raise _Mismatch(
                f"pack section decision: {name} {decision.get(name)!r} differs from the signed receipt_data "
                f"{name} {receipt_data.get(name)!r}"
            )


def _listed_event(
    by_id: Mapping[str, Mapping[str, Any]], item: Any, section: str, what: str
) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise _Mismatch(f"pack section {section}: {what} is not an object")
    event = by_id.get(str(item.get("event_id")))
    if event is None:
        raise _Mismatch(
            f"pack section {section}: {what} names event {item.get('event_id')!r}, which is not in the signed trace"
        )
    if item.get("seq") != event.get("seq"):
        raise _Mismatch(
            f"pack section {section}: {what} says seq {item.get('seq')!r} but event {event.get('event_id')} is "
            f"seq {event.get('seq')}"
        )
    return event


def _check_approvals(
    pack: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]], events: list[Mapping[str, Any]]
) -> None:
    approvals = pack.get("approvals", [])
    if not isinstance(approvals, list):
        raise _Mismatch("pack section approvals: not a list")
    listed: set[str] = set()
    for entry in approvals:
        if not isinstance(entry, Mapping):
            raise _Mismatch("pack section approvals: an entry is not an object")
        approval_id = entry.get("approval_id")
        for kind, event_type in APPROVAL_KINDS.items():
            value = entry.get(kind)
            items = value if isinstance(value, list) else [] if value is None else [value]
            for item in items:
                what = f"{kind} of approval {approval_id}"
                event = _listed_event(by_id, item, "approvals", what)
                payload = event.get("payload") or {}
                expected = {
                    "event_id": event.get("event_id"),
                    "seq": event.get("seq"),
                    "actor": event.get("actor"),
                    **payload,
                }
                if (
                    event.get("type") != event_type
                    or payload.get("approval_id") != approval_id
                    or dict(item) != expected
                ):
                    raise _Mismatch(
                        f"pack section approvals: {what} (event #{event.get('seq')}) differs from the signed "
                        f"{event.get('type')} event"
                    )
                listed.add(str(event.get("event_id")))
    for event in events:
        if event.get("type") in APPROVAL_KINDS.values() and str(event.get("event_id")) not in listed:
            raise _Mismatch(
                f"pack section approvals: leaves out the signed {event.get('type')} event #{event.get('seq')}"
            )


def _policy_key(payload: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return (
        _first(payload, "policy_id", "policy"),
        _first(payload, "policy_version", "version"),
        _first(payload, "policy_hash", "hash"),
    )


def _check_policies(
    pack: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]], events: list[Mapping[str, Any]]
) -> None:
    policies = pack.get("policies", [])
    if not isinstance(policies, list):
        raise _Mismatch("pack section policies: not a list")
    listed: set[str] = set()
    for entry in policies:
        if not isinstance(entry, Mapping):
            raise _Mismatch("pack section policies: an entry is not an object")
        key = (entry.get("policy_id"), entry.get("policy_version"), entry.get("policy_hash"))
        name = f"policy {key[0]} v{key[1]}"
        evaluations = entry.get("evaluations")
        if not isinstance(evaluations, list) or not evaluations:
            raise _Mismatch(f"pack section policies: {name} lists no evaluation from the signed trace")
        for item in evaluations:
            event = _listed_event(by_id, item, "policies", f"an evaluation of {name}")
            payload = event.get("payload") or {}
            if (
                event.get("type") != "evaluate"
                or _policy_key(payload) != key
                or item.get("outcome") != payload.get("outcome")
            ):
                raise _Mismatch(
                    f"pack section policies: {name} (hash {str(key[2])[:12]}…) is not what the signed evaluate "
                    f"event #{event.get('seq')} recorded"
                )
            listed.add(str(event.get("event_id")))
        definition = entry.get("definition")
        if definition is not None:
            content = definition.get("content") if isinstance(definition, Mapping) else None
            try:
                digest = (
                    hashlib.sha256(canonical_json(content)).hexdigest()
                    if isinstance(content, Mapping)
                    else None
                )
            except Exception:  # rfc8785 refuses what it cannot canonicalise
                digest = None
            if digest != key[2] or definition.get("hash") != key[2]:
                raise _Mismatch(
                    f"pack section policies: the definition of {name} does not hash to the policy_hash the "
                    "signed trace recorded"
                )
    for event in events:
        if event.get("type") == "evaluate" and str(event.get("event_id")) not in listed:
            raise _Mismatch(
                f"pack section policies: leaves out the signed evaluate event #{event.get('seq')}"
            )


def verify_pack_sections(
    pack: Mapping[str, Any], receipt_data: Mapping[str, Any], events: list[Mapping[str, Any]]
) -> Verdict:
    """Check ``decision``, ``approvals`` and ``policies`` of a pack against the verified receipt and trace."""
    by_id = {str(e.get("event_id")): e for e in events}
    try:
        _check_decision(pack, receipt_data)
        _check_approvals(pack, by_id, events)
        _check_policies(pack, by_id, events)
    except _Mismatch as exc:
        return Verdict(False, str(exc))
    return Verdict(True, "the pack's decision, approvals and policies match the signed receipt and trace")
