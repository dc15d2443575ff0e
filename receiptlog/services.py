"""Writes of the receipt log: append a receipt as the next leaf, sign checkpoints, deliver them to
witnesses (docs/receipts.md, "Receipt log and checkpoints").

* :func:`log_append` runs inside every close transaction (``decisions.receipts`` calls it with the
  receipt it just stored); appends queue on one advisory lock, so leaves are in commit order and
  gapless, which PostgreSQL checks again (migration 0002).
* :func:`checkpoint_make` is the worker's job (``receiptlog.tick``, every
  ``TRACEMEM_CHECKPOINT_SECONDS``): when the log grew, sign a checkpoint of its current size with the
  receipt key, store it (append-only), write it to ``TRACEMEM_CHECKPOINT_DIR`` and queue one
  delivery per witness (``TRACEMEM_LOG_WITNESSES``, names of webhook endpoints).
* :func:`witness_delivery_attempt` sends one checkpoint to one witness, signed per Standard
  Webhooks through the approvals' webhook sender and its outbound rules; failures back off like
  approval deliveries and the tick re-dispatches anything due.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from approvals import conf as delivery_conf
from approvals.services.channels import DeliveryError, webhook_post
from decisions.models import Receipt
from decisions.receipts import receipt_out, receipt_signing_key
from receiptlog.models import Checkpoint, LogLeaf, WitnessDelivery, WitnessDeliveryStatus
from receiptlog.selectors import log_origin, log_size, nodes_fetch, with_nodes
from tracemem_core.actor import Actor
from tracemem_core.ids import new_id
from tracemem_core.timefmt import iso_z
from tracemem_verify import merkle
from tracemem_verify.checkpoint import Checkpoint as CheckpointBody
from tracemem_verify.checkpoint import NoteSigner, sign_checkpoint
from tracemem_verify.log import encode_hash, receipt_leaf_hash

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock keys ("tm-rlog", "tm-ckpt" as numbers): leaf appends queue on the first,
# checkpoint signing on the second (so signing never holds up a close).
LOG_LOCK = int.from_bytes(b"tm-rlog", "big")
CHECKPOINT_LOCK = int.from_bytes(b"tm-ckpt", "big")


def _lock(key: int) -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key])


def _trailing_ones(value: int) -> int:
    return (~value & (value + 1)).bit_length() - 1


def log_append(*, receipt: Receipt) -> LogLeaf:
    """Append ``receipt`` as the next leaf, with the perfect subtrees it completes.

    Runs inside the close transaction that stored the receipt; the advisory lock is held until that
    transaction ends, so the next close reads this leaf as the last one.
    """
    _lock(LOG_LOCK)
    index = log_size()
    value = receipt_leaf_hash(receipt_out(receipt))
    completes = _trailing_ones(index)
    # The left sibling at each level this leaf completes: node (h, (index >> h) - 1).
    siblings = nodes_fetch((h, (index >> h) - 1) for h in range(completes))
    parents = []
    node = value
    for h in range(completes):
        node = merkle.node_hash(siblings[(h, (index >> h) - 1)], node)
        parents.append(node)
    return LogLeaf.objects.create(
        leaf_index=index, receipt=receipt, leaf_hash=value, subtree_hashes=b"".join(parents)
    )


# --- checkpoints -----------------------------------------------------------------------------------


def witnesses() -> list[str]:
    return [name for name in settings.TRACEMEM_LOG_WITNESSES if name]


def checkpoint_make(*, actor: Actor) -> Checkpoint | None:
    """Sign and store a checkpoint of the log's current size, if it grew since the latest one (the
    first checkpoint is made even of the empty log, so an auditor has a starting point). Returns
    None when there was nothing new. Idempotent and safe to run from several workers at once."""
    with transaction.atomic():
        _lock(CHECKPOINT_LOCK)
        size = log_size()
        latest = Checkpoint.objects.order_by("-tree_size").only("tree_size").first()
        if latest is not None and latest.tree_size >= size:
            return None
        root = with_nodes(lambda nodes: merkle.tree_root(size, nodes))
        key = receipt_signing_key()
        note = sign_checkpoint(
            CheckpointBody(log_origin(), size, root), NoteSigner(log_origin(), key.private_key)
        )
        checkpoint = Checkpoint.objects.create(tree_size=size, root_hash=root, note=note, key_id=key.key_id)
        deliveries = WitnessDelivery.objects.bulk_create(
            [
                WitnessDelivery(delivery_id=new_id("msg_"), checkpoint=checkpoint, endpoint=name)
                for name in witnesses()
            ]
        )
        ids = [d.delivery_id for d in deliveries]
        transaction.on_commit(lambda: _after_checkpoint(checkpoint, ids))
    logger.info("receipt log: signed checkpoint of tree size %d (%d witness deliveries)", size, len(ids))
    return checkpoint


def _after_checkpoint(checkpoint: Checkpoint, delivery_ids: list[str]) -> None:
    checkpoint_export(checkpoint)
    from receiptlog.tasks import publish_witness_delivery

    for delivery_id in delivery_ids:
        publish_witness_delivery(delivery_id)


def _latest_file_size(path: Path) -> int | None:
    """The tree size in the ``checkpoint`` file (its second line); None when absent or unreadable."""
    try:
        size_line = path.read_text(encoding="utf-8").split("\n")[1]
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    return int(size_line) if size_line.isdigit() else None


def _write_atomically(target: Path, path: Path, text: str) -> None:
    """Write ``text`` to a temporary file in ``target``, fsync it, then rename it over ``path``; a
    failure removes the temporary file, so the directory never holds a partial checkpoint."""
    fd, tmp = tempfile.mkstemp(prefix=".checkpoint.", dir=target)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def checkpoint_export(checkpoint: Checkpoint) -> Path | None:
    """Write ``checkpoint`` to ``TRACEMEM_CHECKPOINT_DIR`` as ``checkpoint-<size>`` and as
    ``checkpoint`` (the latest), each replaced atomically; an operator ships the directory elsewhere.

    ``checkpoint`` only ever moves forward: writers take an exclusive lock on ``.lock`` in the
    directory and leave it alone when it already holds this size or a larger one (two workers'
    after-commit writes can land in either order). A failure is logged, never raised: the next tick
    writes the latest checkpoint again."""
    directory = settings.TRACEMEM_CHECKPOINT_DIR
    if not directory:
        return None
    target = Path(directory)
    named = target / f"checkpoint-{checkpoint.tree_size}"
    try:
        target.mkdir(parents=True, exist_ok=True)
        with open(target / ".lock", "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            if not named.exists():  # a checkpoint file never changes once written
                _write_atomically(target, named, checkpoint.note)
            current = _latest_file_size(target / "checkpoint")
            if current is None or current < checkpoint.tree_size:
                _write_atomically(target, target / "checkpoint", checkpoint.note)
    except OSError as exc:
        logger.error(
            "receipt log: could not write checkpoint %d to %s: %s", checkpoint.tree_size, target, exc
        )
        return None
    return named


EXPORT_REPAIR_WINDOW = 100  # the tick rewrites any of the latest this many checkpoints missing on disk


def checkpoint_export_latest() -> None:
    """Make sure the latest checkpoints are in ``TRACEMEM_CHECKPOINT_DIR``: each of the latest
    :data:`EXPORT_REPAIR_WINDOW` as ``checkpoint-<size>`` (one whose write failed, or whose worker
    stopped between commit and write) and the latest as ``checkpoint``; writes nothing when all are there."""
    if not settings.TRACEMEM_CHECKPOINT_DIR:
        return
    target = Path(settings.TRACEMEM_CHECKPOINT_DIR)
    sizes = list(
        Checkpoint.objects.order_by("-tree_size").values_list("tree_size", flat=True)[:EXPORT_REPAIR_WINDOW]
    )
    if not sizes:
        return
    wanted = [sizes[0], *(n for n in sizes[1:] if not (target / f"checkpoint-{n}").exists())]
    for checkpoint in Checkpoint.objects.filter(tree_size__in=wanted).order_by("tree_size"):
        checkpoint_export(checkpoint)


# --- witnesses -------------------------------------------------------------------------------------


def witness_payload(delivery: WitnessDelivery) -> dict[str, Any]:
    checkpoint = delivery.checkpoint
    public = settings.TRACEMEM_PUBLIC_URL
    return {
        "type": "checkpoint.created",
        "delivery_id": delivery.delivery_id,
        "origin": log_origin(),
        "tree_size": checkpoint.tree_size,
        "root_hash": encode_hash(bytes(checkpoint.root_hash)),
        "checkpoint": checkpoint.note,
        "created_at": iso_z(checkpoint.created_at),
        "checkpoint_url": f"{public}/.well-known/tracemem/checkpoint?tree_size={checkpoint.tree_size}",
        "consistency_url": f"{public}/api/v1/log/consistency?from={{your tree size}}&to={checkpoint.tree_size}",
        "keys_url": f"{public}/.well-known/tracemem/receipt-keys",
    }


@dataclass(frozen=True)
class WitnessAttempt:
    status: str
    retry_in_ms: int | None = None


def _claim(delivery_id: str) -> WitnessDelivery | None:
    with transaction.atomic():
        delivery = (
            # Lock the delivery only: the app role may not lock the append-only checkpoint row.
            WitnessDelivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("checkpoint")
            .filter(pk=delivery_id, status=WitnessDeliveryStatus.PENDING)
            .first()
        )
        now = timezone.now()
        if delivery is None or delivery.next_attempt_at > now + timedelta(milliseconds=200):
            return None
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(milliseconds=delivery_conf.lease_ms())
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        return delivery


def witness_delivery_attempt(*, actor: Actor, delivery_id: str) -> WitnessAttempt | None:
    """Send one checkpoint to one witness once (the Celery task's body); None when there was nothing
    to do (delivered, failed, not due, or in another worker's hands). The network call happens
    outside any transaction; retries back off as approval deliveries do (``TRACEMEM_DELIVERY_*``)."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return None
    body = json.dumps(witness_payload(delivery), separators=(",", ":"))
    error: str | None = None
    try:
        webhook_post(delivery.endpoint, delivery.delivery_id, body)
    except DeliveryError as exc:
        error = str(exc)
    except Exception as exc:  # a sender bug must still end in a visible, retried delivery
        logger.exception("witness delivery %s crashed", delivery_id)
        error = f"internal error while delivering ({type(exc).__name__})"
    with transaction.atomic():
        delivery = WitnessDelivery.objects.select_for_update().get(pk=delivery_id)
        now = timezone.now()
        entry: dict[str, Any] = {"attempt": delivery.attempts, "at": iso_z(now), "error": error}
        result: WitnessAttempt
        if error is None:
            delivery.status = WitnessDeliveryStatus.DELIVERED
            delivery.delivered_at = now
            delivery.last_error = ""
            result = WitnessAttempt(WitnessDeliveryStatus.DELIVERED)
        elif delivery.attempts >= delivery_conf.max_attempts():
            delivery.status = WitnessDeliveryStatus.FAILED
            delivery.last_error = error[:2000]
            result = WitnessAttempt(WitnessDeliveryStatus.FAILED)
            logger.warning(
                "witness delivery %s to %s failed for good: %s", delivery_id, delivery.endpoint, error
            )
        else:
            delay = min(
                delivery_conf.backoff_base_ms() * 2 ** (delivery.attempts - 1), delivery_conf.backoff_cap_ms()
            )
            delivery.next_attempt_at = now + timedelta(milliseconds=delay)
            delivery.last_error = error[:2000]
            entry["retry_in_ms"] = delay
            result = WitnessAttempt(WitnessDeliveryStatus.PENDING, retry_in_ms=delay)
        delivery.attempt_log = [*delivery.attempt_log, entry][-50:]
        delivery.save()
    return result


def witness_deliveries_redispatch_due(*, actor: Actor, limit: int = 500) -> int:
    """Queue every pending witness delivery whose time has come; returns how many were queued."""
    from receiptlog.tasks import publish_witness_delivery

    due = WitnessDelivery.objects.filter(
        status=WitnessDeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()
    )
    ids = list(due.order_by("next_attempt_at").values_list("delivery_id", flat=True)[:limit])
    return sum(publish_witness_delivery(delivery_id) for delivery_id in ids)


def log_tick(*, actor: Actor) -> dict[str, int | None]:
    """The beat's job: a checkpoint when the log grew, the latest one exported, witnesses re-dispatched."""
    made = checkpoint_make(actor=actor)
    checkpoint_export_latest()
    redispatched = witness_deliveries_redispatch_due(actor=actor)
    return {"checkpoint_size": made.tree_size if made is not None else None, "redispatched": redispatched}
