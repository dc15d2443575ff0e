"""Celery door of approvals: tasks take ids, call one service as the system actor (STYLE rule 14)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from approvals.services import outbox as approval_outbox
from approvals.services import requests as approval_requests
from tracemem_core import heartbeat, metrics, shared_cache
from tracemem_core.actor import Actor

logger = logging.getLogger(__name__)

SYSTEM = "approvals-worker"


def publish_delivery(delivery_id: str, countdown: float | None = None, looks: int = 0) -> bool:
    """Queue a delivery; a broker outage (down, or hung: bounded by the transport's socket timeouts)
    is logged once, never raised: the outbox row stays pending and the beat's re-dispatch picks it
    up (docs/contract/approvals.md: an outage delays, never loses). While the broker is known to be down, publishing is
    skipped at once (``tracemem_core.shared_cache.broker``), so no request waits on it again."""
    queued = shared_cache.broker.call(
        "deliveries",
        lambda: deliver_delivery.apply_async(
            (delivery_id,),
            {"looks": looks} if looks else None,
            countdown=countdown,
            retry=False,
        ),
        fallback="leaving queued notifications to the re-dispatch",
    )
    if queued is None:
        logger.info(
            "delivery %s was not queued (broker unavailable); the re-dispatch will send it", delivery_id
        )
    return queued is not None


def publish_slack_update(approval_id: str) -> bool:
    queued = shared_cache.broker.call(
        "slack_updates",
        lambda: update_slack_messages.apply_async((approval_id,), retry=False),
        fallback="not updating Slack messages",
    )
    if queued is None:
        logger.warning("could not queue the Slack update for %s (broker unavailable)", approval_id)
    return queued is not None


@shared_task(name="approvals.deliver_delivery", acks_late=True, ignore_result=True)
def deliver_delivery(delivery_id: str, looks: int = 0) -> str | None:
    """``looks``: how many times running this message found the delivery not attemptable (its row
    locked, its destination busy) and re-queued itself: busy destinations are looked at less and
    less often, and past ``approval_outbox.LOCKED_RETRIES`` a locked row is left to the re-dispatch."""
    result = approval_outbox.delivery_attempt(
        actor=Actor.system(SYSTEM), delivery_id=delivery_id, looks=looks
    )
    if result is None:
        return None
    # Inline (eager) mode must not sleep through backoffs inside a request: the beat retries instead.
    if result.retry_in_ms is None or settings.CELERY_TASK_ALWAYS_EAGER:
        return result.status
    if result.locked and looks >= approval_outbox.LOCKED_RETRIES:
        logger.warning(
            "delivery %s stayed locked by another transaction through %d looks; the re-dispatch will retry it",
            delivery_id,
            looks + 1,
        )
        return result.status
    publish_delivery(
        delivery_id,
        countdown=result.retry_in_ms / 1000,
        looks=looks + 1 if result.locked or result.deferred else 0,
    )
    return result.status


@shared_task(name="approvals.update_slack_messages", ignore_result=True)
def update_slack_messages(approval_id: str) -> int:
    return approval_outbox.slack_messages_update(actor=Actor.system(SYSTEM), approval_id=approval_id)


@shared_task(name="approvals.tick", ignore_result=True)
def approvals_tick() -> dict[str, int]:
    """The beat task: expire overdue approvals (fail closed), re-dispatch overdue deliveries."""
    actor = Actor.system("approvals-beat")
    # Each step runs even when the other fails: a broken expiry must not stop notifications.
    try:
        expired = approval_requests.approvals_expire_due(actor=actor)
    except Exception:
        logger.exception("approvals tick: expiring due approvals failed; re-dispatching anyway")
        expired = 0
    redispatched = approval_outbox.deliveries_redispatch_due(actor=actor)
    heartbeat.stamp("tick")
    metrics.TICKS.inc()
    return {"expired": expired, "redispatched": redispatched}
