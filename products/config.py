"""``apply_config`` sections of data products: ``data_sources``, ``products`` and ``grants``."""

from __future__ import annotations

from typing import Any

from products.models import (
    DataProduct,
    DataSource,
    ProductStatus,
)
from products.services.definitions import (
    _apply_definition,
    product_create,
    product_grant,
    product_hash,
    product_publish,
    product_update,
)
from products.services.sources import data_source_save
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    Conflict,
    InvalidArgument,
)

# --- apply_config sections ------------------------------------------------------------------


def _items(items: Any, section: str) -> list[dict[str, Any]]:
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise InvalidArgument(f"{section} must be a list of objects", field=section)
    return items


def apply_data_sources(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """``apply_config`` section ``data_sources``: [{source_id, name?, dsn?}]; creates or updates (an
    equal source changes nothing). A dry run validates like a real one (the command rolls it back).
    Never prints a DSN."""
    lines = []
    prefix = "[dry-run] would " if dry_run else ""
    for item in _items(items, "data_sources"):
        source_id = item.get("source_id") or item.get("id")
        before = DataSource.objects.filter(pk=source_id).first() if isinstance(source_id, str) else None
        saved = data_source_save(actor=actor, source_id=source_id, name=item.get("name"), dsn=item.get("dsn"))
        if before is None:
            lines.append(f"{prefix}create data source {saved.source_id}")
        elif (before.name, before.dsn_encrypted) != (saved.name, saved.dsn_encrypted):
            lines.append(f"{prefix}update data source {saved.source_id}")
        else:
            lines.append(f"data source {saved.source_id} unchanged")
    return lines


def apply_products(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """``apply_config`` section ``products``: [{product_id, ...definition, publish?, grants?: [agent]}]."""
    lines = []
    prefix = "[dry-run] would " if dry_run else ""
    for raw in _items(items, "products"):
        item = dict(raw)
        product_id = item.pop("product_id", None) or item.pop("id", None)
        publish = bool(item.pop("publish", False))
        grants = item.pop("grants", None) or []
        existing = DataProduct.objects.filter(pk=product_id).first() if isinstance(product_id, str) else None
        if existing is None:
            product_create(actor=actor, product_id=product_id, definition=item)
            lines.append(f"{prefix}create product {product_id}")
        elif existing.status == ProductStatus.DRAFT:
            product_update(actor=actor, product_id=existing.product_id, changes=item)
            lines.append(f"{prefix}update draft product {product_id}")
        else:
            probe = DataProduct.objects.get(pk=existing.pk)
            _apply_definition(probe, item)
            if product_hash(probe) != existing.hash:
                raise Conflict(
                    f"product {product_id} is published and the file changes it; publish the change as a new version"
                )
            lines.append(f"product {product_id} unchanged")
        if publish:
            product_publish(actor=actor, product_id=product_id)
            lines.append(f"{prefix}publish product {product_id}")
        lines.extend(
            apply_product_grants(
                actor=actor, items=[{"product_id": product_id, "agent": a} for a in grants], dry_run=dry_run
            )
        )
    return lines


def apply_product_grants(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """``apply_config`` section ``product_grants``: [{product_id, agent (id or name), permissions?}]."""
    lines = []
    prefix = "[dry-run] would " if dry_run else ""
    for item in _items(items, "product_grants"):
        product_id, agent = (
            item.get("product_id") or item.get("product"),
            item.get("agent") or item.get("agent_id"),
        )
        grant = product_grant(
            actor=actor,
            product_id=v.string(product_id, "product_id", max_length=64),
            agent_id=agent,
            permissions=item.get("permissions"),
        )
        lines.append(f"{prefix}grant {product_id} to {grant.agent_id} ({', '.join(grant.permissions)})")
    return lines


def apply_grants(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """``apply_config`` section ``grants`` (product grants; policies carry their own ``grants``):
    ``[{product_id, agent, permissions?}]`` or ``[{agent, products: [product_id, ..]}]``."""
    flat: list[dict[str, Any]] = []
    for item in _items(items, "grants"):
        if "products" in item:
            products = item["products"]
            if not isinstance(products, list):
                raise InvalidArgument("grants[].products must be a list of product ids", field="grants")
            flat.extend(
                {"product_id": p, "agent": item.get("agent") or item.get("agent_id")} for p in products
            )
        else:
            flat.append(item)
    return apply_product_grants(actor=actor, items=flat, dry_run=dry_run)
