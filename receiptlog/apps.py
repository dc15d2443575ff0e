from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from django.apps import AppConfig

if TYPE_CHECKING:
    from prometheus_client.core import Metric


class ReceiptLogConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "receiptlog"
    verbose_name = "Receipt log"

    def ready(self) -> None:
        # Every receipt becomes a leaf in its close transaction, and decision_receipt and the evidence
        # pack carry the receipt's inclusion proof; decisions cannot import this app (it imports decisions), so it
        # calls us through these registries.
        from decisions.receipts import register_receipt_inclusion, register_receipt_listener
        from receiptlog.selectors import receipt_inclusion
        from receiptlog.services import log_append

        register_receipt_listener(log_append)
        register_receipt_inclusion(receipt_inclusion)
        from receiptlog import checks  # noqa: F401  (registers the witness settings check)
        from tracemem_core import metrics

        metrics.register_state(log_state)


def log_state() -> Iterator[Metric]:
    """``/metrics`` gauges read at scrape time (docs/receipts.md): alert when leaves stay unsigned
    or the latest checkpoint grows old while decisions close (the beat stopped), or witness
    deliveries fail."""
    from receiptlog.selectors import log_state as state_of
    from tracemem_core.metrics import gauge

    state = state_of()
    leaves = gauge("tracemem_receipt_log_leaves", "Receipts in the receipt log")
    leaves.add_metric([], state["leaves"])
    signed = gauge("tracemem_receipt_log_checkpoint_size", "Tree size of the latest signed checkpoint")
    signed.add_metric([], state["checkpoint_size"])
    age = gauge("tracemem_receipt_log_checkpoint_age_seconds", "Age of the latest signed checkpoint")
    age.add_metric([], state["checkpoint_age_seconds"])
    witnesses = gauge(
        "tracemem_witness_deliveries", "Checkpoint deliveries to witnesses, by status", ["status"]
    )
    for status in ("pending", "delivered", "failed"):
        witnesses.add_metric([status], state["witness_deliveries"].get(status, 0))
    yield from (leaves, signed, age, witnesses)
