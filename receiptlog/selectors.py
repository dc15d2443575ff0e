"""Reads of the receipt log: perfect subtree hashes, checkpoints, inclusion and consistency proofs.

The proof maths is :mod:`tracemem_verify.merkle` (one implementation for the server and the
auditor); this module feeds it the stored nodes. Node ``(level, index)`` (the hash of the ``2**level``
leaves from ``index * 2**level``) is stored in the leaf that completes it (``receiptlog.models``), so
a proof first asks which nodes it needs (the positions never depend on the hashes), then fetches
them all in one query.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.conf import settings

from decisions.models import Decision
from decisions.receipts import decision_receipt
from receiptlog.models import Checkpoint, LogLeaf
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError, InvalidArgument, InvalidState, NotFound
from tracemem_verify import merkle
from tracemem_verify.log import ConsistencyProof, InclusionProof, encode_hash

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


def inclusion_document(*, actor: Actor, decision_id: Any, tree_size: Any = None) -> dict[str, Any]:
    """``tracemem.inclusion.v1``: the receipt of one of the actor's closed decisions, its leaf index
    and audit path, proven against the latest checkpoint (or the stored one of ``tree_size``)."""
    receipt = decision_receipt(actor=actor, decision_id=decision_id)  # visibility, closed, stored
    return _inclusion(receipt, tree_size)


def _inclusion(receipt: dict[str, Any], tree_size: Any) -> dict[str, Any]:
    decision_id = receipt["decision_id"]
    leaf = LogLeaf.objects.filter(receipt_id=decision_id).only("leaf_index", "leaf_hash").first()
    if leaf is None:
        raise InvalidState(
            f"the receipt of decision {decision_id} is not in the receipt log; an operator should run "
            "manage.py log_verify"
        )
    checkpoint = checkpoint_get(tree_size=tree_size)
    if leaf.leaf_index >= checkpoint.tree_size:
        if tree_size in (None, ""):
            raise InvalidState(
                f"decision {decision_id} is leaf {leaf.leaf_index} of the receipt log, and the latest checkpoint "
                f"covers {checkpoint.tree_size} leaves: the worker signs a newer one within seconds; retry then",
                details={"leaf_index": leaf.leaf_index, "tree_size": checkpoint.tree_size},
            )
        raise InvalidArgument(
            f"decision {decision_id} is leaf {leaf.leaf_index}, appended after the checkpoint of tree size "
            f"{checkpoint.tree_size}; ask for a later checkpoint (or leave tree_size out for the latest)",
            field="tree_size",
        )
    path = with_nodes(lambda nodes: merkle.inclusion_proof(leaf.leaf_index, checkpoint.tree_size, nodes))
    proof = InclusionProof(
        leaf_index=leaf.leaf_index,
        tree_size=checkpoint.tree_size,
        audit_path=path,
        checkpoint=checkpoint.note,
        leaf_hash=_as_bytes(leaf.leaf_hash),
    ).to_document()
    return {
        "format": proof["format"],
        "decision_id": decision_id,
        "leaf_index": proof["leaf_index"],
        "tree_size": proof["tree_size"],
        "leaf_hash": proof["leaf_hash"],
        "audit_path": proof["audit_path"],
        "checkpoint": proof["checkpoint"],
        "receipt": receipt,
    }


def pack_inclusion(*, actor: Actor, decision: Decision) -> dict[str, Any] | None:
    """The evidence pack's ``inclusion``: the inclusion document without ``receipt`` (the pack
    carries it), or None while the decision is open or its leaf is not in a checkpoint yet."""
    try:
        document = inclusion_document(actor=actor, decision_id=decision.decision_id)
    except DomainError:
        return None
    document.pop("receipt")
    return document


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
