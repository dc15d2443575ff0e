"""The delivery outbox: one attempt per delivery row, recorded under the row lock; busy destinations
defer, failures back off, the beat re-dispatches what is due.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import InterfaceError, OperationalError, transaction
from django.db import connection as db_connection
from django.utils import timezone

from approvals import conf
from approvals import tasks as approval_tasks
from approvals.destinations import FAILING, destination_key, gate
from approvals.models import (
    Approval,
    ApprovalState,
    Channel,
    Delivery,
    DeliveryStatus,
)
from approvals.services import channels as senders
from decisions.models import EventType
from decisions.services import (
    decision_lock,
    trace_append,
)
from tracemem_core import metrics, telemetry
from tracemem_core.actor import Actor
from tracemem_core.timefmt import iso_z

# --- the outbox -------------------------------------------------------------------------------

logger = logging.getLogger(__name__)


def queue_delivery(delivery_id: str, countdown: float | None = None) -> bool:
    """Hand a delivery to the Celery worker (after commit); a broker outage leaves it to the
    re-dispatch. The one place services reach the Celery door (inversion 1, docs/architecture.md)."""
    return approval_tasks.publish_delivery(delivery_id, countdown=countdown)


def queue_slack_update(approval_id: str) -> None:
    """Ask the worker to update the Slack messages of a resolved approval."""
    approval_tasks.publish_slack_update(approval_id)


@dataclass(frozen=True)
class AttemptResult:
    status: str
    retry_in_ms: int | None = None
    locked: bool = False  # not attempted: another transaction holds the row
    deferred: bool = False  # not attempted: its destination had no slot for it


# A delivery another worker holds (its row locked), or whose destination has no free slot, is looked
# at again this soon: never dropped.
BUSY_RETRY_MS = 250
# ... but a row held this many times running (~5 s) is left to the beat's re-dispatch (it is still
# pending and due), so a row locked for good costs a few queries a tick, not four a second forever.
LOCKED_RETRIES = 20
# A destination still busy at the next look doubles the wait, up to this: a long queue for a slow
# receiver is looked at a few times a second in all, not four times a second per notification.
BUSY_RETRY_MAX_MS = 4000


def busy_retry_ms(looks: int) -> int:
    """How long a delivery deferred for a busy destination waits, after ``looks`` looks in a row."""
    return min(BUSY_RETRY_MS * 2 ** min(looks, 8), BUSY_RETRY_MAX_MS)


# How long an attempt waits for a busy destination before it is deferred.
DESTINATION_WAIT_SECONDS = 0.3


def _claim(delivery_id: str) -> tuple[Delivery | None, bool]:
    """Take a due, pending delivery for one attempt: ``(delivery, False)``; ``(None, True)`` when
    another transaction holds its row right now (look again soon); ``(None, False)`` when there is
    nothing to do (done, not due yet, or in flight under another worker's lease)."""
    with transaction.atomic():
        # Only the delivery row is locked (OF self): the joined approval, decision, agent and route
        # rows are merely read, so a concurrent insert holding FOR KEY SHARE on them (an agent's
        # next decision, a vote) neither blocks nor skips the claim.
        delivery = (
            Delivery.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("approval", "approval__decision", "approval__decision__agent", "approval__route")
            .filter(pk=delivery_id)
            .first()
        )
        now = timezone.now()
        if delivery is None:
            busy = Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING).exists()
            return None, busy
        # A little slack: a countdown retry may arrive a hair before its next_attempt_at.
        if delivery.status != DeliveryStatus.PENDING:
            return None, False
        if delivery.next_attempt_at > now + timedelta(milliseconds=200):
            return None, False
        approval = delivery.approval
        if approval.status == ApprovalState.CANCELLED or approval.decision.is_terminal:
            # Nobody can act on this request any more: never send it, never retry it.
            delivery.status = DeliveryStatus.CANCELLED
            delivery.save(update_fields=["status"])
            return None, False
        delivery.attempts += 1
        delivery.next_attempt_at = now + timedelta(milliseconds=conf.lease_ms())
        delivery.save(update_fields=["attempts", "next_attempt_at"])
        return delivery, False


def _defer(delivery_id: str, delay_ms: int, reason: str) -> AttemptResult | None:
    """Not now, and not counted as an attempt: due again after ``delay_ms`` (the task re-queues
    itself for then; the beat's re-dispatch is the safety net if that publish is lost).

    None when the row is not due (another message for it deferred it already, or a worker holds it
    under its lease): whoever moved it comes back for it, so this message ends here instead of
    starting a second chain of re-queued messages next to the first."""
    moved = Delivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now()
    ).update(next_attempt_at=timezone.now() + timedelta(milliseconds=delay_ms))
    if not moved:
        return None
    metrics.incr("tracemem_delivery_deferred_total", reason=reason)
    logger.info("delivery %s deferred %d ms (%s)", delivery_id, delay_ms, reason)
    return AttemptResult(DeliveryStatus.PENDING, retry_in_ms=delay_ms, deferred=True)


def delivery_attempt(*, actor: Actor, delivery_id: str, looks: int = 0) -> AttemptResult | None:
    """Try to deliver one outbox row once (the Celery task's body). Idempotent per delivery id.

    Network calls happen outside any transaction; the outcome is recorded afterwards. Returns None
    when there was nothing to do (already delivered, failed, not yet due, or in another worker's
    hands); a result with ``retry_in_ms`` when the task should look again then (the row was locked
    by another transaction, or its destination is busy or failing: ``approvals.destinations``).
    ``looks``: how many times running this delivery was looked at without an attempt.
    """
    row = (
        Delivery.objects.filter(pk=delivery_id, status=DeliveryStatus.PENDING)
        .values("channel", "target")
        .first()
    )
    if row is None:
        return None
    key = destination_key(row["channel"], row["target"] or {})
    if not gate.enter(key, slots=conf.destination_slots(), wait_seconds=DESTINATION_WAIT_SECONDS):
        failing = gate.health(key) == FAILING
        # A failing destination is tried again when its own backoff would; a busy one very soon.
        delay = max(1000, conf.backoff_base_ms()) if failing else busy_retry_ms(looks)
        return _defer(delivery_id, delay, "destination failing" if failing else "destination busy")
    outcome: bool | None = None
    error: str | None = None
    ref: dict[str, Any] = {}
    try:
        delivery, busy = _claim(delivery_id)
        if delivery is None:
            if busy:
                metrics.incr("tracemem_delivery_deferred_total", reason="row locked")
                logger.info("delivery %s is locked by another transaction; looking again soon", delivery_id)
                return AttemptResult(DeliveryStatus.PENDING, retry_in_ms=BUSY_RETRY_MS, locked=True)
            return None
        telemetry.annotate(decision_id=delivery.approval.decision_id, approval_id=delivery.approval_id)
        sending = time.perf_counter()
        try:
            ref = senders.send(delivery) or {}
        except senders.DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # any sender bug must still end in a visible, retried delivery
            logger.exception("delivery %s crashed", delivery_id)
            error = f"internal error while delivering ({type(exc).__name__})"
        outcome = error is None
        metrics.DELIVERY_ATTEMPTS.labels(delivery.channel, "ok" if outcome else "error").inc()
        metrics.DELIVERY_ATTEMPT_SECONDS.labels(delivery.channel).observe(time.perf_counter() - sending)
    finally:
        gate.leave(key, ok=outcome)
    return _record_outcome(actor=actor, delivery_id=delivery_id, error=error, ref=ref)


def _record_outcome(
    *, actor: Actor, delivery_id: str, error: str | None, ref: dict[str, Any]
) -> AttemptResult:
    """Record what the receiver answered, riding out a database blip: an outcome lost here would
    make the re-dispatcher send a delivered notification again once the lease ends. Retries for
    half the lease at most, so it never races that re-dispatch."""
    deadline = time.monotonic() + conf.lease_ms() / 2000
    while True:
        try:
            return _record_attempt(actor=actor, delivery_id=delivery_id, error=error, ref=ref)
        except (OperationalError, InterfaceError) as exc:
            if time.monotonic() >= deadline:
                raise
            logger.warning("recording the outcome of delivery %s failed (%s); retrying", delivery_id, exc)
            db_connection.close()  # a cut connection is not reused; the next query reconnects
            time.sleep(0.2)


@transaction.atomic
def _record_attempt(
    *, actor: Actor, delivery_id: str, error: str | None, ref: dict[str, Any]
) -> AttemptResult:
    delivery = Delivery.objects.select_related("approval").get(pk=delivery_id)
    decision = decision_lock(actor=Actor.system(), decision_id=delivery.approval.decision_id, settle=False)
    delivery = Delivery.objects.select_for_update().get(pk=delivery_id)
    now = timezone.now()
    entry: dict[str, Any] = {"attempt": delivery.attempts, "at": iso_z(now), "error": error}
    result: AttemptResult
    if delivery.status != DeliveryStatus.PENDING or decision.is_terminal:
        return _record_late_attempt(delivery=delivery, error=error, ref=ref, entry=entry, now=now)
    if error is None:
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.last_error = ""
        delivery.external_ref = {**delivery.external_ref, **ref}
        result = AttemptResult(DeliveryStatus.DELIVERED)
    elif delivery.attempts >= conf.max_attempts():
        delivery.status = DeliveryStatus.FAILED
        delivery.last_error = error[:2000]
        result = AttemptResult(DeliveryStatus.FAILED)
    else:
        delay = min(conf.backoff_base_ms() * 2 ** (delivery.attempts - 1), conf.backoff_cap_ms())
        delivery.next_attempt_at = now + timedelta(milliseconds=delay)
        delivery.last_error = error[:2000]
        entry["retry_in_ms"] = delay
        result = AttemptResult(DeliveryStatus.PENDING, retry_in_ms=delay)
    delivery.attempt_log = [*delivery.attempt_log, entry][-50:]
    delivery.save()
    if result.status != DeliveryStatus.PENDING:
        _count_settled(delivery)
        trace_append(
            decision=decision,
            type=EventType.DELIVERY,
            actor=actor,
            payload={
                "delivery_id": delivery.delivery_id,
                "approval_id": delivery.approval_id,
                "channel": delivery.channel,
                "status": delivery.status,
                "attempts": delivery.attempts,
                "error": delivery.last_error or None,
            },
        )
    return result


def _count_settled(delivery: Delivery) -> None:
    channel, outcome, attempts = delivery.channel, str(delivery.status), delivery.attempts
    latency = (delivery.delivered_at - delivery.created_at).total_seconds() if delivery.delivered_at else None

    def count() -> None:
        metrics.DELIVERIES.labels(channel, outcome).inc()
        metrics.DELIVERY_ATTEMPTS_USED.labels(channel, outcome).observe(attempts)
        if latency is not None:
            metrics.DELIVERY_LATENCY.labels(channel).observe(max(0.0, latency))

    metrics.on_commit(count)


def _record_late_attempt(
    *, delivery: Delivery, error: str | None, ref: dict[str, Any], entry: dict[str, Any], now: datetime
) -> AttemptResult:
    """The outcome of an attempt that was in flight when its approval was cancelled or its decision
    closed: kept on the Delivery row only. The trace is not touched, because a closed trace never
    changes (docs/contract/states.md) and the receipt issued at close pins its last event; nothing is retried."""
    if error is None:
        # It did reach the receiver: say so truthfully, even though nobody can act on it now.
        delivery.status = DeliveryStatus.DELIVERED
        delivery.delivered_at = now
        delivery.last_error = ""
        delivery.external_ref = {**delivery.external_ref, **ref}
    else:
        delivery.status = DeliveryStatus.CANCELLED
        delivery.last_error = error[:2000]
    entry["late"] = True
    delivery.attempt_log = [*delivery.attempt_log, entry][-50:]
    delivery.save()
    return AttemptResult(delivery.status)


def deliveries_redispatch_due(*, actor: Actor, limit: int = 500) -> int:
    """Queue every pending delivery whose time has come (lost publishes, dead workers, retries);
    returns how many were queued (none while the broker is down: the next tick tries again)."""
    due = Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=timezone.now())
    ids = list(due.order_by("next_attempt_at").values_list("delivery_id", flat=True)[:limit])
    return sum(queue_delivery(delivery_id) for delivery_id in ids)


def slack_messages_update(*, actor: Actor, approval_id: str) -> int:
    """Replace the buttons of every delivered Slack message of a resolved approval with its outcome."""
    approval = Approval.objects.filter(pk=approval_id).first()
    if approval is None or approval.status == ApprovalState.PENDING:
        return 0
    updated = 0
    for delivery in approval.deliveries.filter(channel=Channel.SLACK, status=DeliveryStatus.DELIVERED):
        try:
            senders.slack_update(delivery, approval)
            updated += 1
        except senders.DeliveryError as exc:
            logger.warning("could not update Slack message of %s: %s", delivery.delivery_id, exc)
    return updated
