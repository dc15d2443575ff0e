"""Celery door of approvals: tasks take ids, call one service as the system actor (STYLE rule 14)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from approvals import services
from tracemem_site.actor import Actor

logger = logging.getLogger(__name__)

SYSTEM = "approvals-worker"


def publish_delivery(delivery_id: str, countdown: float | None = None) -> bool:
    """Queue a delivery; a broker outage is logged, never raised: the outbox row stays pending and
    the beat re-dispatch picks it up (SPEC §9: an outage delays, never loses)."""
    try:
        deliver_delivery.apply_async((delivery_id,), countdown=countdown, retry=False)
        return True
    except Exception as exc:
        logger.warning("could not queue delivery %s (%s); the re-dispatch will retry", delivery_id, exc)
        return False


def publish_slack_update(approval_id: str) -> bool:
    try:
        update_slack_messages.apply_async((approval_id,), retry=False)
        return True
    except Exception as exc:
        logger.warning("could not queue the Slack update for %s (%s)", approval_id, exc)
        return False


@shared_task(name="approvals.deliver_delivery", acks_late=True, ignore_result=True)
def deliver_delivery(delivery_id: str) -> str | None:
    result = services.delivery_attempt(actor=Actor.system(SYSTEM), delivery_id=delivery_id)
    if result is None:
        return None
    # Inline (eager) mode must not sleep through backoffs inside a request: the beat retries instead.
    if result.retry_in_ms is not None and not settings.CELERY_TASK_ALWAYS_EAGER:
        publish_delivery(delivery_id, countdown=result.retry_in_ms / 1000)
    return result.status


@shared_task(name="approvals.update_slack_messages", ignore_result=True)
def update_slack_messages(approval_id: str) -> int:
    return services.slack_messages_update(actor=Actor.system(SYSTEM), approval_id=approval_id)


@shared_task(name="approvals.tick", ignore_result=True)
def approvals_tick() -> dict[str, int]:
    """The beat task: expire overdue approvals (fail closed), re-dispatch overdue deliveries."""
    actor = Actor.system("approvals-beat")
    # Each step runs even when the other fails: a broken expiry must not stop notifications.
    try:
        expired = services.approvals_expire_due(actor=actor)
    except Exception:
        logger.exception("approvals tick: expiring due approvals failed; re-dispatching anyway")
        expired = 0
    redispatched = services.deliveries_redispatch_due(actor=actor)
    return {"expired": expired, "redispatched": redispatched}
