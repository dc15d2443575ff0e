"""MCP door for the data tools (docs/contract/tools.md). Each tool: Actor → one service → same result as REST."""

from __future__ import annotations

from typing import Any

from mcp_server import MCPToolset

from products import selectors
from products.serializers import product_out, products_list_out
from products.services import reads as product_reads
from products.services import writes as product_writes
from tracemem_site.mcp import mcp_actor


class ProductTools(MCPToolset):
    def products_list(self, purpose: str | None = None) -> dict[str, Any]:
        """List the data products you may use (optionally only those allowing `purpose`).

        Agents never touch business data directly: every read and write goes through a product.
        Returns {products: [{product_id, name, description, permissions, purposes}]}. Next: call
        product_get for a product's fields, then decision_read / decision_write inside a decision.
        """
        return products_list_out(selectors.products_for_agent(mcp_actor(self.request), purpose=purpose))

    def product_get(self, product: str | None = None, name: str | None = None) -> dict[str, Any]:
        """Describe one data product (alias argument: name): its operation, allowed purposes,
        fields (schema: name, type, primary_key, nullable, writable, required), key_fields and
        restrictions (max_rows, result_modes, required_fields).

        Use the exact field names it lists in decision_read queries and decision_write mutations.
        [not_found] means the product does not exist or is not granted to you: call products_list.
        """
        found, grant = selectors.product_for_agent(mcp_actor(self.request), product or name)
        return product_out(found, grant)

    def decision_read(
        self,
        decision_id: str,
        product: str,
        purpose: str,
        # Typed Any on purpose: the service checks these (as for REST), so both doors refuse e.g.
        # allow_multiple="yes" with the same invalid_argument; pydantic's lax mode would accept it.
        query: Any = None,
        allow_multiple: Any = None,
        result_mode: Any = None,
    ) -> dict[str, Any]:
        """Read records through a read product, inside an open decision.

        purpose: one of the product's allowed_purposes ([purpose_not_allowed] otherwise).
        query: exposed field → value, equality filters ANDed, e.g. {"email": "a@example.com"}.
        allow_multiple (alias result_mode "single"|"multiple"): false (default) returns at most one
        record (a JSON boolean); if more match you get [conflict] — pass allow_multiple=true or narrow the query.
        Returns {event_id, product, data_ref, records, summary: {rows, fields}}. The trace keeps the
        query and summary, not the records. [policy_denied]: a policy attached to the product refused.
        """
        return product_reads.decision_read(
            actor=mcp_actor(self.request),
            decision_id=decision_id,
            product=product,
            purpose=purpose,
            query=query,
            allow_multiple=allow_multiple,
            result_mode=result_mode,
        )

    def decision_write(
        self,
        decision_id: str,
        product: str,
        purpose: str,
        # Any: validated by the service, exactly as for REST (see decision_read).
        mutation: Any = None,
        operation: Any = None,
        keys: Any = None,
        idempotency_key: Any = None,
        return_created: Any = False,
    ) -> dict[str, Any]:
        """Insert, update or delete through a write product, inside a decision. Executes immediately
        in one transaction.

        mutation forms: insert {records: [{..}]} or {data: {..}}; update {fields: {..}} with object
        keys {"id": 1}, or {records: [{id: 1, ...}]} with array keys ["id"]; delete: object keys, or
        {records: [{id: 1}]} with array keys. operation defaults to the product's.
        keys: an object (key field → value) or an array of key field names (with mutation.records).
        idempotency_key (string): reuse it when retrying; the first result comes back and nothing is
        written twice. return_created (boolean): return the inserted records.
        Returns {event_id, product, operation, status: "executed", affected_rows, created_records?, data_ref}.
        Refusals: [approval_required] call decision_request_approval and decision_wait;
        [invalid_state] while needs_approval wait; [policy_denied] abort the decision;
        [invalid_argument] fix the field it names.
        """
        return product_writes.decision_write(
            actor=mcp_actor(self.request),
            decision_id=decision_id,
            product=product,
            purpose=purpose,
            mutation=mutation,
            operation=operation,
            keys=keys,
            idempotency_key=idempotency_key,
            return_created=return_created,
        )
