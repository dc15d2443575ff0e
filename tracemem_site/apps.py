from __future__ import annotations

from collections.abc import Iterator

from django.apps import AppConfig
from prometheus_client.core import Metric


class TracememSiteConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tracemem_site"
    verbose_name = "TraceMem"

    def ready(self) -> None:
        # Runs after mcp_server's ready() (INSTALLED_APPS order), which autodiscovered every
        # <app>/mcp.py and registered its toolsets.
        from tracemem_core import db_locals
        from tracemem_core.outbound import allowed
        from tracemem_site.mcp import configure_mcp_server

        db_locals.install()  # the thread's database connection found without exceptions (issue 17)

        configure_mcp_server()
        allowed()  # a bad TRACEMEM_OUTBOUND_ALLOW entry stops the process here, naming it
        from tracemem_core import metrics
        from tracemem_site.metrics_view import allowed_networks

        allowed_networks()  # likewise TRACEMEM_METRICS_ALLOW
        metrics.register_state(heartbeat_state)


def heartbeat_state() -> Iterator[Metric]:
    from tracemem_core import heartbeat
    from tracemem_core.metrics import gauge

    family = gauge(
        "tracemem_heartbeat_timestamp_seconds",
        "Last heartbeat (Unix time): beat = the scheduler queued a task, tick = the periodic tick ran",
        ["process"],
    )
    for name in heartbeat.NAMES:
        at = heartbeat.last(name)
        if at is not None:
            family.add_metric([name], at)
    yield family
