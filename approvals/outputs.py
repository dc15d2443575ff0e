"""Result shape of ``decision_request_approval`` (documentation: tracemem_site/outputs.py)."""

from __future__ import annotations

from decisions.outputs import Delivery
from tracemem_core.outputs import Output


class ApprovalRequested(Output):
    approval_id: str
    status: str
    expires_at: str | None
    route_id: str
    delivery: Delivery
