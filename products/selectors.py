"""Reads of data sources and products, with the actor's visibility applied.

An agent sees only published products granted to it; any other product is ``not_found`` (never a
403 that would confirm the product exists). People see products and sources through the
permissions of ``tracemem_core.permissions``; the system sees everything.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from agents.models import Agent
from products.models import DataProduct, DataSource, ProductGrant, ProductStatus
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, NotFound, PermissionDenied
from tracemem_core.permissions import require_reader


def require_agent(actor: Actor) -> Agent:
    if actor.kind != "agent" or actor.agent is None:
        raise PermissionDenied("only an agent (authenticated with its key) can use data products")
    return actor.agent


def _agent_grants(agent: Agent) -> QuerySet[ProductGrant]:
    return (
        ProductGrant.objects.filter(agent=agent, product__status=ProductStatus.PUBLISHED)
        .select_related("product", "product__source")
        .order_by("product__product_id")
    )


def products_for_agent(actor: Actor, *, purpose: Any = None) -> list[tuple[DataProduct, ProductGrant]]:
    agent = require_agent(actor)
    if purpose is not None and not isinstance(purpose, str):
        raise InvalidArgument("purpose must be a string", field="purpose")
    out = []
    for grant in _agent_grants(agent):
        if purpose and purpose not in grant.product.allowed_purposes:
            continue
        out.append((grant.product, grant))
    return out


def product_for_agent(actor: Actor, product_id: Any) -> tuple[DataProduct, ProductGrant]:
    agent = require_agent(actor)
    if not isinstance(product_id, str) or not product_id.strip():
        raise InvalidArgument("product is required: pass a product_id from products_list", field="product")
    v.storable(product_id, "product")
    grant = _agent_grants(agent).filter(product__product_id=product_id).first()
    if grant is None:
        raise NotFound(
            f"data product {product_id[:64]!r} was not found or is not granted to this agent; "
            "call products_list to see the products you may use"
        )
    return grant.product, grant


def agent_data_products(agent: Agent) -> list[dict[str, Any]]:
    """``capabilities_get.permissions.data_products`` for one agent."""
    return [
        {
            "product_id": grant.product.product_id,
            "permissions": list(grant.permissions),
            "purposes": list(grant.product.allowed_purposes),
        }
        for grant in _agent_grants(agent)
    ]


def data_sources_for_admin(actor: Actor) -> QuerySet[DataSource]:
    require_reader(actor, "data_sources")
    return DataSource.objects.all().order_by("source_id")


def products_for_admin(actor: Actor) -> QuerySet[DataProduct]:
    require_reader(actor, "products")
    return DataProduct.objects.all().select_related("source").order_by("product_id")


def product_for_admin(actor: Actor, product_id: str) -> DataProduct:
    require_reader(actor, "products")
    try:
        return DataProduct.objects.select_related("source").get(pk=product_id)
    except DataProduct.DoesNotExist:
        raise NotFound(f"data product {product_id[:64]!r} was not found") from None
