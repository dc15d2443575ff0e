from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent
from tracemem_core.ids import DECISION_PREFIX, EVENT_PREFIX, new_id


def _new_decision_id() -> str:
    return new_id(DECISION_PREFIX)


def _new_event_id() -> str:
    return new_id(EVENT_PREFIX)


class AutomationMode(models.TextChoices):
    PROPOSE = "propose"
    APPROVE = "approve"
    OVERRIDE = "override"
    AUTONOMOUS = "autonomous"


class DecisionStatus(models.TextChoices):
    OPEN = "open"
    NEEDS_APPROVAL = "needs_approval"
    APPROVED = "approved"
    REJECTED = "rejected"
    COMMITTED = "committed"
    ABORTED = "aborted"


TERMINAL_STATUSES = frozenset({DecisionStatus.COMMITTED, DecisionStatus.ABORTED})


class ApprovalStatus(models.TextChoices):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class EventType(models.TextChoices):
    CREATED = "created"
    CONTEXT = "context"
    READ = "read"
    WRITE = "write"
    EVALUATE = "evaluate"
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_VOTE = "approval_vote"
    APPROVAL_RESOLVED = "approval_resolved"
    DELIVERY = "delivery"
    CLOSE = "close"
    RECORD = "record"


class Decision(models.Model):
    decision_id = models.CharField(primary_key=True, max_length=40, default=_new_decision_id, editable=False)
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="decisions")
    intent = models.CharField(max_length=200, db_index=True)
    automation_mode = models.CharField(max_length=20, choices=AutomationMode.choices)
    actor = models.CharField(max_length=200)
    instance = models.CharField(max_length=200, blank=True, null=True)
    version = models.CharField(max_length=100, blank=True, null=True)
    metadata = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=20, choices=DecisionStatus.choices, default=DecisionStatus.OPEN)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    event_count = models.PositiveIntegerField(default=0)
    trace_head = models.CharField(max_length=64, blank=True, default="")

    # Gating facts (docs/contract/states.md), kept on the row so every gate is one look at one locked row.
    # Each is the seq of the latest event of its kind, so "followed by a granted approval"
    # is a comparison of two numbers.
    last_deny_seq = models.PositiveIntegerField(null=True, blank=True)
    last_exception_seq = models.PositiveIntegerField(null=True, blank=True)
    last_grant_seq = models.PositiveIntegerField(null=True, blank=True)
    exception_route_id = models.CharField(max_length=100, null=True, blank=True)
    approval_status = models.CharField(max_length=20, choices=ApprovalStatus.choices, null=True, blank=True)
    pending_approval_id = models.CharField(max_length=40, null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["agent", "-created_at"]),
            models.Index(fields=["status"]),
            # The dashboard's recent policy denials (decisions.selectors.denied_count_since).
            models.Index(
                fields=["-created_at"],
                condition=Q(last_deny_seq__isnull=False),
                name="decision_denied_created",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.decision_id} {self.intent} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES


class TraceEvent(models.Model):
    """One append-only step of a decision's trace.

    PostgreSQL itself keeps the trace honest, with plain triggers that no session setting switches
    off (migration 0003, docs/security.md): UPDATE, DELETE and TRUNCATE are refused; an insert must
    continue the chain (``seq`` = the decision's ``event_count`` + 1, ``prev_hash`` = its
    ``trace_head``) of a decision that is not closed, and it advances the decision's head itself; a
    ``close`` (or ``record``) event closes the decision. A multi-row INSERT is checked as a whole and
    moves each decision's head once (migration 0009).
    """

    event_id = models.CharField(primary_key=True, max_length=40, default=_new_event_id, editable=False)
    # No index of its own: the unique (decision, seq) index leads with it and serves every lookup by
    # decision (and the foreign key's checks); nothing matches decision ids by LIKE (issue 17).
    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="events", db_index=False)
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=30, choices=EventType.choices)
    timestamp = models.DateTimeField()
    actor = models.JSONField()
    payload = models.JSONField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["decision", "seq"]
        constraints = [models.UniqueConstraint(fields=["decision", "seq"], name="trace_event_seq_unique")]

    def __str__(self) -> str:
        return f"{self.decision_id}#{self.seq} {self.type}"


class RecordCategory(models.TextChoices):
    """Categories of an engineering decision record (``decision_record``, docs/contract/tools.md)."""

    ARCHITECTURE = "architecture"
    DEPENDENCY = "dependency"
    SCHEMA = "schema"
    API_DESIGN = "api_design"
    INFRA = "infra"
    TRADEOFF = "tradeoff"
    CONVENTION = "convention"
    OTHER = "other"


class DecisionRecord(models.Model):
    """The searchable fields of an ADR-style record; the decision itself is its envelope.

    Every text field is stored redacted (docs/contract/redaction.md), exactly as the decision's one ``record`` event
    carries it. ``supersedes`` is one-to-one so a supersession chain stays linear: a record can be
    replaced once, and the replacement is what a later record supersedes.
    """

    decision = models.OneToOneField(
        Decision, primary_key=True, on_delete=models.PROTECT, related_name="record"
    )
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="records")
    title = models.CharField(max_length=1000)
    category = models.CharField(max_length=20, choices=RecordCategory.choices)
    tags = models.JSONField(default=list, blank=True)
    # Tags joined by spaces, so full-text search can cover them like any other text column.
    tags_text = models.TextField(blank=True, default="")
    context = models.TextField()
    decision_text = models.TextField()
    rationale = models.TextField()
    alternatives_considered = models.JSONField(null=True, blank=True)
    constraints = models.JSONField(null=True, blank=True)
    consequences = models.JSONField(null=True, blank=True)
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["agent", "category", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.decision_id} {self.category}: {self.title}"


class ReceiptKey(models.Model):
    """A public receipt-signing key, published at ``/.well-known/tracemem/receipt-keys``.

    A row is written the first time a signing key is used; when another key takes over, the old
    row gets ``valid_to`` and stays published, so receipts signed with it keep verifying.
    """

    key_id = models.CharField(primary_key=True, max_length=64)
    algorithm = models.CharField(max_length=20, default="ed25519")
    public_key = models.CharField(max_length=200, help_text="base64url (no padding) of the raw public key")
    valid_from = models.DateTimeField(default=timezone.now)
    valid_to = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["valid_from"]

    def __str__(self) -> str:
        return f"{self.algorithm} {self.key_id}"


class Receipt(models.Model):
    """The one signed receipt of a closed decision, issued in its close transaction (docs/receipts.md).

    Append-only like the trace; PostgreSQL refuses a receipt that does not sign the decision's closed
    row, and a decision that closes without its receipt cannot commit (migration 0003).
    """

    decision = models.OneToOneField(
        Decision, primary_key=True, on_delete=models.PROTECT, related_name="receipt"
    )
    receipt_data = models.JSONField()
    signature = models.CharField(max_length=200)
    key_id = models.CharField(max_length=64)
    algorithm = models.CharField(max_length=20)
    signed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"receipt of {self.decision_id} ({self.key_id})"
