from __future__ import annotations

from collections.abc import Iterator

from django.apps import AppConfig
from prometheus_client.core import Metric


class DecisionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "decisions"

    def ready(self) -> None:
        from tracemem_core import metrics

        metrics.register_state(decisions_state)


def decisions_state() -> Iterator[Metric]:
    """``/metrics`` gauge read at scrape time: decisions not yet closed, by status."""
    from decisions.selectors import decisions_in_flight
    from tracemem_core.metrics import gauge

    family = gauge("tracemem_decisions_in_flight", "Decisions not yet closed, by status", ["status"])
    for status, count in decisions_in_flight().items():
        family.add_metric([status], count)
    yield family
