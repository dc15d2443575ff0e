"""System checks of the receipt log's settings (docs/receipts.md, "Witnesses and the checkpoint
directory"). ``manage.py migrate`` runs them before every start (``scripts/run.sh``, the compose
``migrate`` job), as does ``manage.py check --database default``."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.db import connections

from approvals.selectors import webhook_endpoints_missing


@register(Tags.database)
def witness_endpoints_exist(
    app_configs: Any = None, databases: Any = None, **kwargs: Any
) -> list[CheckMessage]:
    """Every name in ``TRACEMEM_LOG_WITNESSES`` is a webhook endpoint: one that is not would get no
    checkpoint, and nobody would notice until its deliveries had failed for good."""
    names = [name for name in settings.TRACEMEM_LOG_WITNESSES if name]
    if not names or not databases or "default" not in databases:
        return []
    if "approvals_webhookendpoint" not in connections["default"].introspection.table_names():
        return []  # a database not migrated yet has no endpoints to create them in
    missing = webhook_endpoints_missing(names)
    if not missing:
        return []
    return [
        Error(
            f"TRACEMEM_LOG_WITNESSES names webhook endpoints that do not exist: {', '.join(missing)}; no "
            "checkpoint could be delivered to them.",
            hint="Create them (POST /api/v1/admin/webhook-endpoints, apply_config or the Django admin; "
            "docs/webhooks.md) or remove them from TRACEMEM_LOG_WITNESSES.",
            id="receiptlog.E001",
        )
    ]
