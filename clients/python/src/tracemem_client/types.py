"""Result types: the JSON objects of docs/contract/tools.md/docs/contract/interfaces.md, as ``TypedDict``s.

Why TypedDicts and not dataclasses: a result *is* the server's JSON object. As a dict it prints,
logs and ``json.dumps`` as-is (the CLI shows exactly what the server said), it costs no conversion
code that could drift from the server, and a field a newer server adds is simply there instead of
breaking construction — while mypy still checks every key you read. Fields that only some server
versions send (``next_after_seq``, ``delivery``) are in the ``total=False`` parts.
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict

AutomationMode = Literal["propose", "approve", "override", "autonomous"]
CloseAction = Literal["commit", "abort"]
RecordCategory = Literal[
    "architecture", "dependency", "schema", "api_design", "infra", "tradeoff", "convention", "other"
]

# --- discovery -------------------------------------------------------------------------------


class ProductGrant(TypedDict):
    product_id: str
    permissions: list[str]
    purposes: list[str]


class PolicyRef(TypedDict):
    policy_id: str
    name: str
    version: int


class Permissions(TypedDict):
    data_products: list[ProductGrant]
    policies: list[PolicyRef]


class ServerInfo(TypedDict):
    name: str
    version: str
    protocol_versions: list[str]


class Capabilities(TypedDict):
    agent_id: str
    name: str
    permissions: Permissions
    server: ServerInfo


class ProductSummary(TypedDict):
    product_id: str
    name: str
    description: str
    permissions: list[str]
    purposes: list[str]


class ProductList(TypedDict):
    products: list[ProductSummary]


class _ProductFieldOptional(TypedDict, total=False):
    writable: bool
    required: bool


class ProductField(_ProductFieldOptional):
    name: str
    type: str
    primary_key: bool
    nullable: bool


class Product(TypedDict):
    product_id: str
    name: str
    description: str
    version: int
    hash: str
    operation: str
    permissions: list[str]
    allowed_purposes: list[str]
    schema: list[ProductField]
    exposed_schema: list[ProductField]
    key_fields: list[str]
    restrictions: dict[str, Any]
    policies: list[str]
    example_queries: list[dict[str, Any]]


# --- envelope --------------------------------------------------------------------------------


class DecisionCreated(TypedDict):
    decision_id: str
    status: str
    created_at: str


class ContextAdded(TypedDict):
    event_id: str
    timestamp: str


class EventRef(TypedDict):
    event_id: str
    seq: int
    timestamp: str


class ContextsAdded(TypedDict):
    """Batch context (docs/contract/interfaces.md): one entry per context, in the order sent."""

    events: list[EventRef]


class ChannelDelivery(TypedDict):
    channel: str
    status: str


class Delivery(TypedDict):
    status: str  # pending | delivered | failed
    channels: list[ChannelDelivery]
    note: str


class _DecisionOptional(TypedDict, total=False):
    delivery: Delivery | None  # sent by servers that report notification status


class DecisionInfo(_DecisionOptional):
    """``decision_get``. ``approval_status`` is None, pending, approved, rejected or expired."""

    decision_id: str
    intent: str
    status: str  # open | needs_approval | approved | rejected | committed | aborted
    automation_mode: str
    actor: str
    instance: str | None
    agent_id: str
    created_at: str
    closed_at: str | None
    approval_required: bool
    approval_status: str | None
    pending_approval_id: str | None
    event_count: int
    trace_head: str | None


class WaitResult(DecisionInfo):
    """``decision_wait``: the decision, and whether the wait ended by timing out."""

    timed_out: bool


class EventActor(TypedDict):
    kind: str  # agent | user | system
    id: str
    name: str


class TraceEvent(TypedDict):
    decision_id: str
    event_id: str
    seq: int
    type: str
    timestamp: str
    actor: EventActor
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class _TraceOptional(TypedDict, total=False):
    next_after_seq: (
        int | None
    )  # docs/contract/interfaces.md trace pages; None (or absent on older servers) = last page


class Trace(DecisionInfo, _TraceOptional):
    events: list[TraceEvent]


class DecisionClosed(TypedDict):
    decision_id: str
    status: str  # committed | aborted
    closed_at: str
    trace_head: str | None


class ReceiptData(TypedDict):
    decision_id: str
    intent: str
    status: str
    automation_mode: str
    agent_id: str
    created_at: str
    closed_at: str
    event_count: int
    trace_head: str


class Inclusion(TypedDict):
    """``tracemem.inclusion.v1`` without its receipt: the receipt's leaf in the receipt log."""

    format: str
    decision_id: str
    leaf_index: int
    tree_size: int
    leaf_hash: str
    audit_path: list[str]
    checkpoint: str


class _ReceiptInclusion(TypedDict, total=False):
    # docs/receipts.md "Proofs through the doors"; absent on servers before the receipt log.
    inclusion: Inclusion | None
    inclusion_status: str  # included | pending | error
    inclusion_reason: str | None


class Receipt(_ReceiptInclusion):
    decision_id: str
    status: str
    receipt_data: ReceiptData
    signature: str
    key_id: str
    algorithm: str
    signed_at: str


# --- data ------------------------------------------------------------------------------------


class ReadSummary(TypedDict):
    rows: int
    fields: list[str]


class ReadResult(TypedDict):
    event_id: str
    product: str
    data_ref: str
    records: list[dict[str, Any]]
    summary: ReadSummary


class _WriteOptional(TypedDict, total=False):
    created_records: list[dict[str, Any]]


class WriteResult(_WriteOptional):
    event_id: str
    product: str
    operation: str
    status: str
    affected_rows: int
    data_ref: str


# --- policy and approval -----------------------------------------------------------------------


class Rationale(TypedDict):
    message: str
    rule: str | None


class Evaluation(TypedDict):
    event_id: str
    policy_id: str
    policy_version: int
    policy_hash: str
    outcome: str  # allow | deny | requires_exception
    rationale: Rationale
    allowed: bool
    requires_approval: bool
    approval_route_id: str | None


class ApprovalRequested(TypedDict):
    approval_id: str
    status: str
    expires_at: str
    route_id: str
    delivery: Delivery


class ApprovalAgent(TypedDict):
    agent_id: str
    name: str


class ApprovalVote(TypedDict):
    voter: dict[str, str]
    vote: str
    channel: str
    rationale: str | None
    at: str


class Approval(TypedDict):
    """What a reviewer sees (``/api/v1/approvals/{id}``): the redacted request and the votes."""

    approval_id: str
    decision_id: str
    intent: str
    automation_mode: str
    agent: ApprovalAgent
    title: str
    message: str
    route_id: str
    required_approvals: int
    require_rationale: bool
    requested_at: str
    expires_at: str | None
    review_url: str
    status: str
    resolved_at: str | None
    votes: list[ApprovalVote]
    delivery: dict[str, Any]


class ApprovalList(TypedDict):
    approvals: list[Approval]
    count: int


# --- engineering decisions -------------------------------------------------------------------


class RecordResult(TypedDict):
    decision_id: str
    status: str
    created_at: str
    closed_at: str
    title: str
    category: str
    tags: list[str]
    supersedes: str | None


class SearchHit(TypedDict):
    decision_id: str
    title: str
    category: str
    tags: list[str]
    status: str
    intent: str
    created_at: str
    supersedes: str | None
    superseded_by: str | None


class SearchResult(TypedDict):
    results: list[SearchHit]
    count: int
