"""Reads of the receipt log: perfect subtree hashes, checkpoints, inclusion and consistency proofs.

The proof maths is :mod:`tracemem_verify.merkle` (one implementation for the server and the
auditor); this module feeds it the stored nodes. Node ``(level, index)`` (the hash of the ``2**level``
leaves from ``index * 2**level``) is stored in the leaf that completes it (``receiptlog.models``), so
a proof first asks which nodes it needs (the positions never depend on the hashes), then fetches
them all in one query.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings

from decisions.receipts import receipt_of
from receiptlog.models import Checkpoint, LogLeaf
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, InvalidState, NotFound
from tracemem_verify import merkle
from tracemem_verify.log import ConsistencyProof, InclusionProof, encode_hash

logger = logging.getLogger(__name__)
T = TypeVar("T")
HASH = merkle.HASH_SIZE
_PLACEHOLDER = bytes(HASH)
MAX_SIZE = (1 << 63) - 1


class LogCorrupt(Exception):
    """A node the log should hold is missing or malformed (reported by ``log_verify``)."""


def node_row(level: int, index: int) -> int:
    """The leaf whose row stores node ``(level, index)``: the last leaf of that subtree."""
    return ((index + 1) << level) - 1


def _as_bytes(value: Any) -> bytes:
    return bytes(value) if value is not None else b""


def nodes_fetch(wanted: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The stored hashes of the nodes ``wanted`` (``(level, index)`` pairs), in one query."""
    wanted = set(wanted)
    if not wanted:
        return {}
    rows = {
        index: (_as_bytes(leaf), _as_bytes(subtrees))
        for index, leaf, subtrees in LogLeaf.objects.filter(
            leaf_index__in={node_row(level, index) for level, index in wanted}
        ).values_list("leaf_index", "leaf_hash", "subtree_hashes")
    }
    found = {}
    for level, index in wanted:
        row = rows.get(node_row(level, index))
        value = None if row is None else row[0] if level == 0 else row[1][(level - 1) * HASH : level * HASH]
        if value is None or len(value) != HASH:
            raise LogCorrupt(f"the log has no stored hash for node (level {level}, index {index})")
        found[(level, index)] = value
    return found


def with_nodes(compute: Callable[[merkle.NodeSource], T]) -> T:
    """Run ``compute(nodes)`` against the stored nodes, reading them in one query."""
    wanted: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return _PLACEHOLDER

    compute(record)
    table = nodes_fetch(wanted)
    return compute(lambda level, index: table[(level, index)])


def log_size() -> int:
    """How many leaves the log holds (committed)."""
    last = LogLeaf.objects.order_by("-leaf_index").values_list("leaf_index", flat=True).first()
    return 0 if last is None else last + 1


def log_origin() -> str:
    return str(settings.TRACEMEM_LOG_ORIGIN)


def checkpoint_latest() -> Checkpoint | None:
    return Checkpoint.objects.order_by("-tree_size").first()


def checkpoint_get(*, tree_size: Any = None) -> Checkpoint:
    """The checkpoint of ``tree_size``, or the latest one; ``not_found`` when there is none."""
    if tree_size is None or tree_size == "":
        latest = checkpoint_latest()
        if latest is None:
            raise NotFound(
                "the receipt log has no checkpoint yet: the worker signs the first one within seconds; retry"
            )
        return latest
    size = v.bounded_int(tree_size, "tree_size", minimum=0, maximum=MAX_SIZE, default=0)
    found = Checkpoint.objects.filter(tree_size=size).first()
    if found is None:
        raise NotFound(
            f"there is no checkpoint of tree size {size}: checkpoints are signed when the log grew, so not "
            "every size has one; GET /.well-known/tracemem/checkpoint for the latest"
        )
    return found


# What ``inclusion_status`` says (docs/receipts.md, "Proofs through the doors").
INCLUDED, PENDING, ERROR = "included", "pending", "error"


@dataclass(frozen=True)
class InclusionState:
    """Where a receipt stands in the log: ``document`` (the proof, without ``receipt``) when
    ``status`` is ``included``; else ``reason`` says why there is none and what happens next."""

    status: str
    document: dict[str, Any] | None = None
    reason: str | None = None
    leaf_index: int | None = None
    tree_size: int | None = None  # of the checkpoint asked for (None: there is none yet)


def inclusion_state(receipt: dict[str, Any], tree_size: Any = None) -> InclusionState:
    """The one computation behind every door's inclusion proof (the REST ``/inclusion`` endpoint,
    ``decision_receipt``'s ``inclusion`` field and the evidence pack's).

    ``pending``: the leaf is not covered by the latest checkpoint yet (or there is no checkpoint);
    ``error``: the log cannot prove this receipt (no leaf, a stored node missing), which only a
    damaged log does; both explained in ``reason``. Against a stored checkpoint (``tree_size``), a
    size without a checkpoint is ``not_found`` and one that precedes the leaf ``invalid_argument``.
    """
    decision_id = receipt["decision_id"]
    leaf = LogLeaf.objects.filter(receipt_id=decision_id).only("leaf_index", "leaf_hash").first()
    if leaf is None:
        return InclusionState(
            ERROR,
            reason=f"the receipt of decision {decision_id} is not in the receipt log, although every receipt "
            "is appended in its close transaction: the log is damaged; an operator should run manage.py log_verify",
        )
    latest = tree_size is None or tree_size == ""
    if latest:
        checkpoint = checkpoint_latest()
        if checkpoint is None or leaf.leaf_index >= checkpoint.tree_size:
            covered = 0 if checkpoint is None else checkpoint.tree_size
            return InclusionState(
                PENDING,
                reason=f"decision {decision_id} is leaf {leaf.leaf_index} of the receipt log, and the latest "
                f"checkpoint covers {covered} leaves: the worker signs a newer one within seconds; ask again then",
                leaf_index=leaf.leaf_index,
                tree_size=None if checkpoint is None else checkpoint.tree_size,
            )
    else:
        checkpoint = checkpoint_get(tree_size=tree_size)
        if leaf.leaf_index >= checkpoint.tree_size:
            raise InvalidArgument(
                f"decision {decision_id} is leaf {leaf.leaf_index}, appended after the checkpoint of tree size "
                f"{checkpoint.tree_size}; ask for a later checkpoint (or leave tree_size out for the latest)",
                field="tree_size",
            )
    try:
        path = with_nodes(lambda nodes: merkle.inclusion_proof(leaf.leaf_index, checkpoint.tree_size, nodes))
    except LogCorrupt as exc:
        return InclusionState(
            ERROR,
            reason=f"the receipt log cannot prove decision {decision_id} (leaf {leaf.leaf_index}) against the "
            f"checkpoint of tree size {checkpoint.tree_size}: {exc}; the log is damaged; an operator should "
            "run manage.py log_verify",
            leaf_index=leaf.leaf_index,
            tree_size=checkpoint.tree_size,
        )
    proof = InclusionProof(
        leaf_index=leaf.leaf_index,
        tree_size=checkpoint.tree_size,
        audit_path=path,
        checkpoint=checkpoint.note,
        leaf_hash=_as_bytes(leaf.leaf_hash),
    ).to_document()
    document = {
        "format": proof["format"],
        "decision_id": decision_id,
        "leaf_index": proof["leaf_index"],
        "tree_size": proof["tree_size"],
        "leaf_hash": proof["leaf_hash"],
        "audit_path": proof["audit_path"],
        "checkpoint": proof["checkpoint"],
    }
    return InclusionState(INCLUDED, document, leaf_index=leaf.leaf_index, tree_size=checkpoint.tree_size)


def inclusion_document(*, actor: Actor, decision_id: Any, tree_size: Any = None) -> dict[str, Any]:
    """``tracemem.inclusion.v1``: the receipt of one of the actor's closed decisions, its leaf index
    and audit path, proven against the latest checkpoint (or the stored one of ``tree_size``)."""
    receipt = receipt_of(actor=actor, decision_id=decision_id)  # visibility, closed, stored
    state = inclusion_state(receipt, tree_size)
    if state.status == INCLUDED:
        assert state.document is not None
        return {**state.document, "receipt": receipt}
    if state.status == PENDING and state.tree_size is None:
        raise NotFound(
            "the receipt log has no checkpoint yet: the worker signs the first one within seconds; retry"
        )
    if state.status == PENDING:
        raise InvalidState(
            str(state.reason), details={"leaf_index": state.leaf_index, "tree_size": state.tree_size}
        )
    _log_error(state)
    raise InvalidState(str(state.reason))


def receipt_inclusion(*, receipt: dict[str, Any]) -> dict[str, Any]:
    """The inclusion fields of a receipt as ``decision_receipt`` and the evidence pack carry them:
    ``inclusion`` (the ``/inclusion`` document without ``receipt``, proven against the latest
    checkpoint) or null, ``inclusion_status`` (included, pending, error) and ``inclusion_reason``
    (why there is no proof; null when included). A damaged log is an ``error`` with its reason,
    logged, never a bare null."""
    state = inclusion_state(receipt)
    if state.status == ERROR:
        _log_error(state)
    return {"inclusion": state.document, "inclusion_status": state.status, "inclusion_reason": state.reason}


def _log_error(state: InclusionState) -> None:
    logger.error("receipt log: %s", state.reason)


def consistency_document(*, from_size: Any, to_size: Any = None) -> dict[str, Any]:
    """``tracemem.consistency.v1``: RFC 9162 ``PROOF(from, D[to])`` for ``0 <= from <= to <=`` the
    latest checkpoint's size (``to`` defaults to it)."""
    latest = checkpoint_latest()
    top = 0 if latest is None else latest.tree_size
    if from_size is None or from_size == "":
        raise InvalidArgument("from is required: the tree size of the checkpoint you hold", field="from")
    old = v.bounded_int(from_size, "from", minimum=0, maximum=MAX_SIZE, default=0)
    new = v.bounded_int(to_size, "to", minimum=0, maximum=MAX_SIZE, default=top)
    if new > top:
        raise InvalidArgument(
            f"to ({new}) is beyond the latest checkpoint's tree size {top}; proofs end at a signed checkpoint",
            field="to",
        )
    if old > new:
        raise InvalidArgument(
            f"from ({old}) is larger than to ({new}): a log only grows, so a proof goes from a smaller size to a larger one",
            field="from",
        )
    proof = with_nodes(lambda nodes: merkle.consistency_proof(old, new, nodes))
    return ConsistencyProof(old, new, proof).to_document()


def log_state() -> dict[str, Any]:
    """What ``/metrics`` shows of the receipt log: leaves, the latest checkpoint (size and age), and
    witness deliveries by status."""
    from django.db.models import Count
    from django.utils import timezone

    from receiptlog.models import WitnessDelivery

    latest = Checkpoint.objects.order_by("-tree_size").only("tree_size", "created_at").first()
    return {
        "leaves": log_size(),
        "checkpoint_size": latest.tree_size if latest is not None else 0,
        "checkpoint_age_seconds": (timezone.now() - latest.created_at).total_seconds() if latest else 0.0,
        "witness_deliveries": dict(
            WitnessDelivery.objects.values_list("status").annotate(n=Count("pk")).values_list("status", "n")
        ),
    }


def checkpoint_out(checkpoint: Checkpoint) -> dict[str, Any]:
    return {
        "tree_size": checkpoint.tree_size,
        "root_hash": encode_hash(_as_bytes(checkpoint.root_hash)),
        "key_id": checkpoint.key_id,
        "checkpoint": checkpoint.note,
    }
