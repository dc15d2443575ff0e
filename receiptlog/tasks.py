"""Celery door of the receipt log: tasks take ids, call one service as the system actor (STYLE rule 14)."""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from receiptlog import services
from tracemem_core import shared_cache
from tracemem_core.actor import Actor

logger = logging.getLogger(__name__)

SYSTEM = "receipt-log"


def publish_witness_delivery(delivery_id: str, countdown: float | None = None) -> bool:
    """Queue a witness delivery; a broker outage is logged, never raised: the row stays pending and
    the tick re-dispatches it."""
    queued = shared_cache.broker.call(
        "witness_deliveries",
        lambda: deliver_witness.apply_async((delivery_id,), countdown=countdown, retry=False),
        fallback="leaving checkpoints for witnesses to the re-dispatch",
    )
    return queued is not None


@shared_task(name="receiptlog.deliver_witness", acks_late=True, ignore_result=True)
def deliver_witness(delivery_id: str) -> str | None:
    result = services.witness_delivery_attempt(actor=Actor.system(SYSTEM), delivery_id=delivery_id)
    if result is None:
        return None
    # Inline (eager) mode must not sleep through backoffs: the tick retries instead.
    if result.retry_in_ms is not None and not settings.CELERY_TASK_ALWAYS_EAGER:
        publish_witness_delivery(delivery_id, countdown=result.retry_in_ms / 1000)
    return result.status


@shared_task(name="receiptlog.tick", ignore_result=True)
def log_tick() -> dict[str, int | None]:
    """The beat task: sign a checkpoint when the log grew; re-dispatch due witness deliveries."""
    return services.log_tick(actor=Actor.system(SYSTEM))
