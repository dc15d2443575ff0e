"""Result shapes of the decision tools and records (documentation: tracemem_site/outputs.py)."""

from __future__ import annotations

from typing import Literal

from tracemem_core.outputs import JsonObject, Output


class DeliveryChannel(Output):
    channel: str
    status: str


class Delivery(Output):
    status: str
    channels: list[DeliveryChannel]
    note: str


class DecisionCreated(Output):
    decision_id: str
    status: str
    created_at: str


class EventRef(Output):
    event_id: str
    timestamp: str


class DecisionState(Output):
    decision_id: str
    intent: str
    status: str
    automation_mode: str
    actor: str | None
    instance: str | None
    agent_id: str | None
    created_at: str
    closed_at: str | None
    approval_required: bool
    approval_status: str | None
    pending_approval_id: str | None
    event_count: int
    trace_head: str
    delivery: Delivery | None


class WaitOut(DecisionState):
    timed_out: bool


class TraceEventOut(Output):
    decision_id: str
    event_id: str
    seq: int
    type: str
    timestamp: str
    actor: JsonObject
    payload: JsonObject
    prev_hash: str
    hash: str


class TracePage(DecisionState):
    events: list[TraceEventOut]
    next_after_seq: int | None


class DecisionClosed(Output):
    decision_id: str
    status: str
    closed_at: str | None
    trace_head: str


class ReceiptData(Output):
    decision_id: str
    intent: str
    status: str
    automation_mode: str
    agent_id: str | None
    created_at: str
    closed_at: str | None
    event_count: int
    trace_head: str
    close_action: str | None = None


class ReceiptOut(Output):
    decision_id: str
    status: str
    receipt_data: ReceiptData
    signature: str
    key_id: str
    algorithm: str
    signed_at: str


class PackInclusion(Output):
    """``tracemem.inclusion.v1`` without its receipt: where the receipt sits in the receipt log (the
    ``inclusion`` of ``decision_receipt`` and of the evidence pack; docs/receipts.md)."""

    format: str
    decision_id: str
    leaf_index: int
    tree_size: int
    leaf_hash: str
    audit_path: list[str]
    checkpoint: str


InclusionStatus = Literal["included", "pending", "error"]


class DecisionReceiptOut(ReceiptOut):
    """``decision_receipt``: the stored receipt, plus its inclusion proof in the receipt log (or null,
    with ``inclusion_status`` pending or error and ``inclusion_reason`` saying why)."""

    inclusion: PackInclusion | None
    inclusion_status: InclusionStatus
    inclusion_reason: str | None


class RecordOut(Output):
    decision_id: str
    status: str
    created_at: str
    closed_at: str | None
    title: str
    category: str
    tags: list[str]
    supersedes: str | None


class SearchHit(Output):
    decision_id: str
    title: str
    category: str
    tags: list[str]
    status: str
    intent: str
    created_at: str
    supersedes: str | None
    superseded_by: str | None


class SearchOut(Output):
    results: list[SearchHit]
    count: int


class ReceiptKey(Output):
    key_id: str
    algorithm: str
    public_key: str
    valid_from: str
    valid_to: str | None
    note_verifier_key: str | None = None


class Verification(Output):
    trace_intact: bool
    trace_break: str | None
    command: str
    keys_url: str
    note: str | None


class EvidencePack(Output):
    """Everything needed to check one decision offline (docs/receipts.md)."""

    format: str
    generated_at: str
    generated_for: JsonObject
    decision: DecisionState
    trace: list[TraceEventOut]
    policies: list[JsonObject]
    products: list[JsonObject]
    approvals: list[JsonObject]
    receipt: ReceiptOut | None
    inclusion: PackInclusion | None
    inclusion_status: Literal["included", "pending", "error", "no_receipt"]
    inclusion_reason: str | None
    keys: list[ReceiptKey]
    verification: Verification
