"""MCP door of the receipt log: ``decision_inclusion`` (the REST twin is
``GET /api/v1/decisions/{id}/inclusion``), found by django-mcp-server's autodiscovery."""

from __future__ import annotations

from typing import Any

from mcp_server import MCPToolset

from receiptlog import selectors
from tracemem_site.mcp import mcp_actor


class LogTools(MCPToolset):
    def decision_inclusion(self, decision_id: str, tree_size: int | None = None) -> dict[str, Any]:
        """Prove that the receipt of one of your closed decisions is in TraceMem's append-only receipt log.

        Call it after decision_receipt, once the worker has signed a checkpoint that covers the
        receipt (a few seconds after decision_close; until then it fails with [invalid_state]: retry).
        Returns {format: "tracemem.inclusion.v1", decision_id, leaf_index, tree_size, leaf_hash,
        audit_path, checkpoint (the signed checkpoint text), receipt}. Keep it with your output: anyone
        can check it offline with `python -m tracemem_verify inclusion inclusion.json --keys keys.json`
        (keys from /.well-known/tracemem/receipt-keys). tree_size: prove against an older stored
        checkpoint of that size instead of the latest.
        """
        return selectors.inclusion_document(
            actor=mcp_actor(self.request), decision_id=decision_id, tree_size=tree_size
        )
