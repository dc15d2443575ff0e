"""Product admin (docs/contract/data-products.md, docs/contract/admin.md): define, check, publish, grant and revoke data products."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from django.db import transaction
from django.utils import timezone

from agents.models import Agent
from audit.services import audit_record
from products.engine import builtin_table_refusal
from products.fields import TABLE_RE, validate_definition_fields
from products.models import (
    BUILTIN_SOURCE,
    DataProduct,
    DataSource,
    Operation,
    ProductGrant,
    ProductStatus,
    SourceKind,
)
from products.services.sources import data_source_builtin
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    Conflict,
    InvalidArgument,
    InvalidState,
    NotFound,
)
from tracemem_core.permissions import require_perm
from tracemem_core.redaction import redact
from tracemem_core.timefmt import iso_z
from tracemem_verify.chain import canonical_json

PRODUCT_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,56}_v([0-9]{1,5})$")
PURPOSE_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
RESULT_MODES = ("single", "multiple")
MAX_ROWS_LIMIT = 10_000
# --- products (admin) -----------------------------------------------------------------------

_EDITABLE = (
    "name",
    "description",
    "operation",
    "source",
    "table",
    "fields",
    "key_fields",
    "allowed_purposes",
    "max_rows",
    "result_modes",
    "policies",
    "requires_approval",
    "example_queries",
)


def product_definition(product: DataProduct) -> dict[str, Any]:
    """Everything the product's hash covers (docs/contract/data-products.md: versioned and hashed like policies)."""
    return {
        "product_id": product.product_id,
        "name": product.name,
        "description": product.description,
        "version": product.version,
        "operation": product.operation,
        "source": product.source_id,
        "table": product.source_table,
        "fields": product.fields,
        "key_fields": product.key_fields,
        "allowed_purposes": product.allowed_purposes,
        "max_rows": product.max_rows,
        "result_modes": product.result_modes,
        "policies": product.policies,
        "requires_approval": product.requires_approval,
        "example_queries": product.example_queries,
    }


def product_hash(product: DataProduct) -> str:
    return hashlib.sha256(canonical_json(product_definition(product))).hexdigest()


def _product_audit(product: DataProduct) -> dict[str, Any]:
    return {**product_definition(product), "status": product.status, "hash": product.hash}


def _grant_audit(grant: ProductGrant | None) -> dict[str, Any] | None:
    if grant is None:
        return None
    return {"agent_id": grant.agent_id, "agent": grant.agent.name, "permissions": list(grant.permissions)}


def _string_list(raw: Any, field: str, pattern: re.Pattern[str], *, allow_empty: bool) -> list[str]:
    if not isinstance(raw, list) or not all(isinstance(x, str) and pattern.match(x) for x in raw):
        raise InvalidArgument(
            f"{field} must be a list of identifiers matching {pattern.pattern}", field=field
        )
    if not raw and not allow_empty:
        raise InvalidArgument(f"{field} must not be empty", field=field)
    return list(dict.fromkeys(raw))


def _apply_definition(product: DataProduct, data: dict[str, Any]) -> None:
    unknown = sorted(set(data) - set(_EDITABLE) - {"product_id"})
    if unknown:
        raise InvalidArgument(
            f"unknown product attribute {unknown[0]!r}; allowed: {', '.join(_EDITABLE)}", field=unknown[0]
        )
    if "name" in data:
        product.name = v.string(data["name"], "name")
    if "description" in data:
        product.description = v.optional_string(data["description"], "description", max_length=5000) or ""
    if "operation" in data:
        product.operation = v.choice(data["operation"], "operation", Operation.values)
    if "source" in data:
        source_id = v.string(data["source"], "source", max_length=63)
        if source_id == BUILTIN_SOURCE:
            product.source = data_source_builtin()
        else:
            found = DataSource.objects.filter(pk=source_id).first()
            if found is None:
                raise InvalidArgument(
                    f"data source {source_id!r} does not exist; create it first", field="source"
                )
            product.source = found
    if "table" in data:
        table = v.string(data["table"], "table", max_length=130)
        if not TABLE_RE.match(table):
            raise InvalidArgument(
                "table must be 'table' or 'schema.table' of plain identifiers", field="table"
            )
        product.source_table = table
    if "fields" in data:
        product.fields = validate_definition_fields(data["fields"])
    if "key_fields" in data:
        product.key_fields = _string_list(
            data["key_fields"], "key_fields", re.compile(r"^[a-z][a-z0-9_]*$"), allow_empty=True
        )
    if "allowed_purposes" in data:
        product.allowed_purposes = _string_list(
            data["allowed_purposes"], "allowed_purposes", PURPOSE_RE, allow_empty=False
        )
    if "max_rows" in data:
        rows = data["max_rows"]
        if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_ROWS_LIMIT:
            raise InvalidArgument(f"max_rows must be an integer from 1 to {MAX_ROWS_LIMIT}", field="max_rows")
        product.max_rows = rows
    if "result_modes" in data:
        product.result_modes = _string_list(
            data["result_modes"], "result_modes", re.compile(r"^(single|multiple)$"), allow_empty=False
        )
    if "policies" in data:
        product.policies = _string_list(
            data["policies"], "policies", re.compile(r"^[a-z][a-z0-9_]{1,99}$"), allow_empty=True
        )
    if "requires_approval" in data:
        if not isinstance(data["requires_approval"], bool):
            raise InvalidArgument("requires_approval must be true or false", field="requires_approval")
        product.requires_approval = data["requires_approval"]
    if "example_queries" in data:
        examples = data["example_queries"]
        if not isinstance(examples, list) or not all(isinstance(x, dict) for x in examples):
            raise InvalidArgument("example_queries must be a list of objects", field="example_queries")
        product.example_queries = redact(examples, field="example_queries")
    _check_consistency(product)


def _check_consistency(product: DataProduct) -> None:
    names = [f["name"] for f in product.fields]
    if not product.key_fields:
        product.key_fields = [f["name"] for f in product.fields if f["primary_key"]]
    missing = [k for k in product.key_fields if k not in names]
    if missing:
        raise InvalidArgument(f"key field {missing[0]} is not one of the fields", field="key_fields")
    if not product.result_modes:
        product.result_modes = list(RESULT_MODES)
    writable = [f["name"] for f in product.fields if f["writable"]]
    if product.operation in (Operation.UPDATE, Operation.DELETE) and not product.key_fields:
        raise InvalidArgument(
            f"a {product.operation} product needs key_fields (or primary_key fields) to address rows",
            field="key_fields",
        )
    if product.operation == Operation.INSERT and not writable:
        raise InvalidArgument("an insert product needs at least one writable field", field="fields")
    if product.operation == Operation.UPDATE and not [w for w in writable if w not in product.key_fields]:
        raise InvalidArgument(
            "an update product needs a writable field that is not a key field", field="fields"
        )
    refusal = _outside_the_wall(product)
    if refusal is not None:
        raise InvalidArgument(refusal, field="table")


def _outside_the_wall(product: DataProduct) -> str | None:
    """Why a built-in product's table is not a business table it may reach (docs/products.md);
    asked when it is defined, published and run. External sources reach what their DSN allows."""
    if product.source.kind != SourceKind.BUILTIN:
        return None
    return builtin_table_refusal(product.source_table)


def product_check_definition(*, actor: Actor, product_id: str, definition: dict[str, Any]) -> None:
    """Raise what ``product_create`` / ``product_update`` would refuse in ``definition``, changing
    nothing (the Django admin's form shows it next to the fields)."""
    require_perm(actor, "products.define_products")
    existing = DataProduct.objects.filter(pk=product_id).first()
    probe = existing or DataProduct(product_id=product_id, name=product_id, source=data_source_builtin())
    _apply_definition(probe, definition)


@transaction.atomic
def product_create(*, actor: Actor, product_id: Any, definition: dict[str, Any]) -> DataProduct:
    """Create a draft product. ``product_id`` is a slug ending in its version, e.g. ``pg_customers_v1``."""
    require_perm(actor, "products.define_products")
    clean_id = v.string(product_id, "product_id", max_length=64)
    match = PRODUCT_ID_RE.match(clean_id)
    if not match:
        raise InvalidArgument(
            "product_id must be a lowercase slug ending in its version, e.g. pg_customers_v1",
            field="product_id",
        )
    if DataProduct.objects.filter(pk=clean_id).exists():
        raise Conflict(f"data product {clean_id} already exists; PATCH it or create the next version")
    for required_attr in ("operation", "table", "fields", "allowed_purposes"):
        v.required(definition.get(required_attr), required_attr)
    product = DataProduct(product_id=clean_id, version=int(match.group(1)), name=clean_id)
    if "source" not in definition:
        product.source = data_source_builtin()
    _apply_definition(product, definition)
    product.hash = product_hash(product)
    product.save(force_insert=True)
    audit_record(
        actor=actor,
        action="product.create",
        object_type="product",
        object_id=product.product_id,
        after=_product_audit(product),
    )
    return product


@transaction.atomic
def product_update(*, actor: Actor, product_id: str, changes: dict[str, Any]) -> DataProduct:
    """Change a draft product. A published product is frozen: publish ``..._v2`` instead."""
    require_perm(actor, "products.define_products")
    product = DataProduct.objects.select_for_update().filter(pk=product_id).first()
    if product is None:
        raise NotFound(f"data product {product_id[:64]!r} was not found")
    if product.status == ProductStatus.PUBLISHED:
        raise InvalidState(
            f"data product {product_id} is published and frozen (agents rely on its hash); "
            "create the next version (e.g. _v2) with the change"
        )
    before = _product_audit(product)
    _apply_definition(product, changes)
    product.hash = product_hash(product)
    product.save()
    audit_record(
        actor=actor,
        action="product.update",
        object_type="product",
        object_id=product.product_id,
        before=before,
        after=_product_audit(product),
    )
    return product


@transaction.atomic
def product_delete(*, actor: Actor, product_id: str) -> None:
    """Delete a draft product (a published one is frozen and never deleted)."""
    require_perm(actor, "products.define_products")
    product = DataProduct.objects.select_for_update().filter(pk=product_id).first()
    if product is None:
        raise NotFound(f"data product {product_id[:64]!r} was not found")
    if product.status == ProductStatus.PUBLISHED:
        raise InvalidState(f"data product {product_id} is published and frozen; it cannot be deleted")
    before = _product_audit(product)
    product.delete()
    audit_record(
        actor=actor, action="product.delete", object_type="product", object_id=product_id, before=before
    )


@transaction.atomic
def product_publish(*, actor: Actor, product_id: str) -> DataProduct:
    """Freeze a draft product's definition and make it usable by granted agents. Idempotent."""
    require_perm(actor, "products.publish_products")
    product = DataProduct.objects.select_for_update().filter(pk=product_id).first()
    if product is None:
        raise NotFound(f"data product {product_id[:64]!r} was not found")
    if product.status != ProductStatus.PUBLISHED:
        refusal = _outside_the_wall(product)
        if refusal is not None:  # a draft saved before the rule
            raise InvalidState(
                f"data product {product.product_id} cannot be published: {refusal}; change its table first"
            )
        before = _product_audit(product)
        product.status = ProductStatus.PUBLISHED
        product.hash = product_hash(product)
        product.published_at = timezone.now()
        product.save()
        audit_record(
            actor=actor,
            action="product.publish",
            object_type="product",
            object_id=product.product_id,
            before=before,
            after={**_product_audit(product), "published_at": iso_z(product.published_at)},
        )
    return product


@transaction.atomic
def product_grant(*, actor: Actor, product_id: str, agent_id: Any, permissions: Any = None) -> ProductGrant:
    """Let an agent use a product. ``permissions`` defaults to the product's one operation."""
    require_perm(actor, "products.grant_products")
    product = DataProduct.objects.filter(pk=product_id).first()
    if product is None:
        raise NotFound(f"data product {product_id[:64]!r} was not found")
    clean_agent_id = v.string(agent_id, "agent_id", max_length=40)
    agent = (
        Agent.objects.filter(pk=clean_agent_id).first() or Agent.objects.filter(name=clean_agent_id).first()
    )
    if agent is None:
        raise NotFound(f"agent {clean_agent_id!r} was not found", details={"field": "agent_id"})
    perms = [product.operation] if permissions is None else permissions
    if not isinstance(perms, list) or not perms or any(p not in Operation.values for p in perms):
        raise InvalidArgument(
            f"permissions must be a non-empty list of {', '.join(Operation.values)}", field="permissions"
        )
    before = _grant_audit(
        ProductGrant.objects.select_for_update().filter(product=product, agent=agent).first()
    )
    grant, _ = ProductGrant.objects.update_or_create(
        product=product, agent=agent, defaults={"permissions": list(dict.fromkeys(perms))}
    )
    audit_record(
        actor=actor,
        action="product.grant",
        object_type="product",
        object_id=product.product_id,
        before=before,
        after=_grant_audit(grant),
    )
    return grant


@transaction.atomic
def product_revoke(*, actor: Actor, product_id: str, agent_id: str) -> int:
    """Withdraw an agent's grant; returns how many grants were removed (0 or 1)."""
    require_perm(actor, "products.grant_products")
    grant = ProductGrant.objects.select_for_update().filter(product_id=product_id, agent_id=agent_id).first()
    if grant is None:
        return 0
    before = _grant_audit(grant)
    grant.delete()
    audit_record(
        actor=actor, action="product.revoke", object_type="product", object_id=product_id, before=before
    )
    return 1
