from __future__ import annotations

from collections.abc import Iterator

from django.apps import AppConfig
from prometheus_client.core import Metric


class ApprovalsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "approvals"

    def ready(self) -> None:
        # Closing a decision cancels its pending approval in the same transaction; decisions cannot
        # import approvals (approvals imports decisions), so it calls us through this registry.
        from approvals.selectors import (
            approvals_of_decision,
            pending_approval_expires_at,
            pending_approval_overdue,
        )
        from approvals.services.requests import approval_cancel_on_close, approval_settle_overdue
        from decisions.selectors import (
            register_approvals_of,
            register_overdue_check,
            register_pending_deadline,
        )
        from decisions.services import register_close_participant, register_lock_settler

        register_close_participant(approval_cancel_on_close)
        # An approval past its deadline is expired the moment anyone looks (decision_get) or acts.
        register_overdue_check(pending_approval_overdue)
        # decision_wait wakes at that deadline to report the expiry on time.
        register_pending_deadline(pending_approval_expires_at)
        register_lock_settler(approval_settle_overdue)
        # The decision page's approvals card (issue 18).
        register_approvals_of(approvals_of_decision)
        from tracemem_core import metrics

        metrics.register_state(approvals_state)


def approvals_state() -> Iterator[Metric]:
    """``/metrics`` gauges read at scrape time: pending approvals, the outbox backlog."""
    from approvals.selectors import operations_state
    from tracemem_core.metrics import gauge

    state = operations_state()
    pending = gauge("tracemem_approvals_pending", "Approval requests waiting for reviewers")
    pending.add_metric([], state["approvals_pending"])
    oldest = gauge(
        "tracemem_approval_oldest_pending_age_seconds", "How long the oldest pending approval has waited"
    )
    oldest.add_metric([], state["oldest_pending_seconds"])
    backlog = gauge(
        "tracemem_outbox_backlog", "Notifications not yet sent (pending outbox rows), by channel", ["channel"]
    )
    backlog_age = gauge(
        "tracemem_outbox_oldest_age_seconds",
        "Age of the oldest notification not yet sent, by channel",
        ["channel"],
    )
    for channel, (count, age) in sorted(state["outbox"].items()):
        backlog.add_metric([channel], count)
        backlog_age.add_metric([channel], age)
    yield from (pending, oldest, backlog, backlog_age)
