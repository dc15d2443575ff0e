"""Result objects of the data-product tools and admin API: one shape per operation, returned by
the MCP tool and its REST twin alike."""

from __future__ import annotations

from typing import Any

from products.models import DataProduct, DataSource, ProductGrant
from tracemem_core.timefmt import iso_z


def product_summary_out(product: DataProduct, grant: ProductGrant) -> dict[str, Any]:
    """One ``products_list`` item."""
    return {
        "product_id": product.product_id,
        "name": product.name,
        "description": product.description,
        "permissions": list(grant.permissions),
        "purposes": list(product.allowed_purposes),
    }


def products_list_out(items: list[tuple[DataProduct, ProductGrant]]) -> dict[str, Any]:
    return {"products": [product_summary_out(p, g) for p, g in items]}


def product_out(product: DataProduct, grant: ProductGrant) -> dict[str, Any]:
    """``product_get``: exposed names only, never the source table or columns."""
    schema = [
        {
            "name": f["name"],
            "type": f["type"],
            "primary_key": f["primary_key"],
            "nullable": f["nullable"],
            "writable": f["writable"],
            "required": f["required"],
        }
        for f in product.fields
    ]
    return {
        "product_id": product.product_id,
        "name": product.name,
        "description": product.description,
        "version": product.version,
        "hash": product.hash,
        "operation": product.operation,
        "permissions": list(grant.permissions),
        "allowed_purposes": list(product.allowed_purposes),
        "schema": schema,
        "exposed_schema": schema,
        "key_fields": list(product.key_fields),
        "restrictions": {
            "max_rows": product.max_rows,
            "result_modes": list(product.result_modes),
            "required_fields": [f["name"] for f in product.fields if f["required"]],
            "writable_fields": [f["name"] for f in product.fields if f["writable"]],
            "requires_approval": product.requires_approval,
        },
        "policies": list(product.policies),
        "example_queries": list(product.example_queries),
    }


def data_source_out(source: DataSource) -> dict[str, Any]:
    """Admin view of a source: the DSN without its password, never the secret."""
    return {
        "source_id": source.source_id,
        "name": source.name,
        "kind": source.kind,
        "dsn": source.dsn_display,
        "has_secret": bool(source.dsn_encrypted),
        "created_at": iso_z(source.created_at),
        "updated_at": iso_z(source.updated_at),
    }


def product_admin_out(product: DataProduct) -> dict[str, Any]:
    return {
        "product_id": product.product_id,
        "name": product.name,
        "description": product.description,
        "version": product.version,
        "hash": product.hash,
        "status": product.status,
        "operation": product.operation,
        "source": product.source_id,
        "table": product.source_table,
        "fields": list(product.fields),
        "key_fields": list(product.key_fields),
        "allowed_purposes": list(product.allowed_purposes),
        "max_rows": product.max_rows,
        "result_modes": list(product.result_modes),
        "policies": list(product.policies),
        "requires_approval": product.requires_approval,
        "example_queries": list(product.example_queries),
        "grants": [
            {"agent_id": g.agent_id, "permissions": list(g.permissions)}
            for g in product.grants.all().order_by("agent_id")
        ],
        "created_at": iso_z(product.created_at),
        "published_at": iso_z(product.published_at),
    }


def grant_out(grant: ProductGrant) -> dict[str, Any]:
    return {
        "product_id": grant.product_id,
        "agent_id": grant.agent_id,
        "permissions": list(grant.permissions),
    }
