"""Data products (SPEC §3 data tools, §8): admin changes and the agent's reads and writes.

``decision_read`` / ``decision_write`` are the only way an agent touches business data. Each call
locks the decision, checks grant and purpose, evaluates the product's attached policies (recorded as
``evaluate`` events by the policies app), applies the SPEC §5 gates, runs parameterised SQL in one
transaction and appends a ``read``/``write`` event — all under the decision's row lock, which is also
what makes ``idempotency_key`` exact under concurrent retries.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from agents.models import Agent
from audit.services import audit_record
from decisions.models import Decision, EventType, TraceEvent
from decisions.services import decision_lock, ensure_not_terminal, ensure_writable, trace_append
from policies import selectors as policy_selectors
from policies import services as policy_services
from policies.services import fail_closed
from products import dsn as dsn_rules
from products.engine import Runner, builtin_table_refusal, open_runner
from products.fields import TABLE_RE, coerce, render, validate_definition_fields
from products.models import (
    BUILTIN_SOURCE,
    DataProduct,
    DataSource,
    Operation,
    ProductGrant,
    ProductStatus,
    SourceKind,
    WriteResult,
)
from products.selectors import product_for_agent
from tracemem_core import crypto
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    ApprovalRequired,
    Conflict,
    DomainError,
    InvalidArgument,
    InvalidState,
    NotFound,
    PermissionDenied,
    PolicyDenied,
    PurposeNotAllowed,
)
from tracemem_core.ids import new_id
from tracemem_core.permissions import require_perm
from tracemem_core.redaction import redact
from tracemem_core.timefmt import iso_z
from tracemem_verify.chain import canonical_json

PRODUCT_ID_RE = re.compile(r"^[a-z][a-z0-9_]{0,56}_v([0-9]{1,5})$")
SOURCE_ID_RE = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
PURPOSE_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
RESULT_MODES = ("single", "multiple")
DATA_REF_PREFIX = "dref_"
MAX_ROWS_LIMIT = 10_000


# --- data sources ---------------------------------------------------------------------------


def data_source_builtin() -> DataSource:
    """The built-in source (the app's own database); created on first use."""
    source, _ = DataSource.objects.get_or_create(
        source_id=BUILTIN_SOURCE,
        defaults={"name": "TraceMem's own database", "kind": SourceKind.BUILTIN},
    )
    return source


def clean_dsn(dsn: Any) -> str:
    """A DSN a data source may use (``products.dsn``: one network host the outbound rules allow,
    allow-listed options only), as its display form without the password. Errors name the rule and
    never repeat the DSN."""
    return dsn_rules.check(v.string(dsn, "dsn", max_length=2000)).display()


def _source_audit(source: DataSource) -> dict[str, Any]:
    """What the audit log keeps of a source: never the DSN, only its displayed (password-free) part."""
    return {
        "source_id": source.source_id,
        "name": source.name,
        "kind": source.kind,
        "dsn_display": source.dsn_display,
    }


def _stored_dsn(source: DataSource) -> str | None:
    """The DSN stored now, to tell an equal one from a replacement; None if there is none or it can
    no longer be decrypted (then the new one replaces it)."""
    if not source.dsn_encrypted:
        return None
    try:
        return crypto.decrypt(source.dsn_encrypted)
    except InvalidState:
        return None


@transaction.atomic
def data_source_save(*, actor: Actor, source_id: Any, name: Any = None, dsn: Any = None) -> DataSource:
    """Create or update an external PostgreSQL source. ``dsn`` is write-only: stored encrypted and
    never returned; omit it on update to keep the stored one."""
    require_perm(actor, "products.manage_data_sources")
    clean_id = v.string(source_id, "source_id", max_length=63)
    if not SOURCE_ID_RE.match(clean_id):
        raise InvalidArgument("source_id must match [a-z][a-z0-9_]+", field="source_id")
    if clean_id == BUILTIN_SOURCE:
        raise InvalidArgument("source_id builtin is reserved for TraceMem's own database", field="source_id")
    clean_name = v.optional_string(name, "name") or clean_id
    source = DataSource.objects.select_for_update().filter(pk=clean_id).first()
    before = _source_audit(source) if source is not None else None
    if source is None:
        if dsn is None:
            raise InvalidArgument("dsn is required when creating a data source", field="dsn")
        source = DataSource(source_id=clean_id, kind=SourceKind.POSTGRESQL)
    source.name = clean_name
    replaced = False
    if dsn is not None:
        source.dsn_display = clean_dsn(dsn)
        replaced = dsn != _stored_dsn(source)
        if replaced:
            source.dsn_encrypted = crypto.encrypt(dsn)
    after = _source_audit(source)
    if replaced:
        # The DSN itself is never logged; that it was replaced is.
        after["write_only_changed"] = ["dsn"]
    source.save()
    audit_record(
        actor=actor,
        action="data_source.create" if before is None else "data_source.update",
        object_type="data_source",
        object_id=source.source_id,
        before=before,
        after=after,
    )
    return source


@transaction.atomic
def data_source_delete(*, actor: Actor, source_id: str) -> None:
    """Delete a data source no product uses (``invalid_state`` otherwise)."""
    require_perm(actor, "products.manage_data_sources")
    source = DataSource.objects.select_for_update().filter(pk=source_id).first()
    if source is None:
        raise NotFound(f"data source {source_id[:64]!r} was not found")
    if source.products.exists():
        raise InvalidState(f"data source {source_id} is used by data products; it cannot be deleted")
    before = _source_audit(source)
    source.delete()
    audit_record(
        actor=actor,
        action="data_source.delete",
        object_type="data_source",
        object_id=source_id,
        before=before,
    )


@transaction.atomic
def data_source_create(*, actor: Actor, source_id: Any, name: Any = None, dsn: Any) -> DataSource:
    """Create an external PostgreSQL source; ``conflict`` if the id is taken."""
    require_perm(actor, "products.manage_data_sources")
    if isinstance(source_id, str) and DataSource.objects.filter(pk=source_id).exists():
        raise Conflict(f"data source {source_id} already exists")
    return data_source_save(actor=actor, source_id=source_id, name=name, dsn=v.required(dsn, "dsn"))


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
    """Everything the product's hash covers (SPEC §8: versioned and hashed like policies)."""
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


# --- reads and writes (agents) --------------------------------------------------------------


def _vendor(product: DataProduct) -> str:
    return connection.vendor if product.source.kind == SourceKind.BUILTIN else "postgresql"


def _fields_by_name(product: DataProduct) -> dict[str, dict[str, Any]]:
    return {f["name"]: f for f in product.fields}


def _resolve(
    actor: Actor, product_ref: Any, purpose: Any, operations: tuple[str, ...]
) -> tuple[DataProduct, str]:
    clean_purpose = v.string(purpose, "purpose", max_length=100)
    product, grant = product_for_agent(actor, product_ref)
    if product.operation not in operations:
        tool = "decision_read" if product.operation == Operation.READ else "decision_write"
        raise InvalidArgument(
            f"data product {product.product_id} is a {product.operation} product; use {tool}", field="product"
        )
    if product.operation not in grant.permissions:
        raise PermissionDenied(
            f"this agent is not granted {product.operation} on {product.product_id}; ask an admin for a grant"
        )
    if _outside_the_wall(product) is not None:
        # Published before the rule: it never runs. The agent is not told which table it names.
        raise InvalidState(
            f"data product {product.product_id} reaches data outside the business tables built-in products may "
            "use, so it is disabled; ask an admin to publish a new version over a business table"
        )
    if clean_purpose not in product.allowed_purposes:
        raise PurposeNotAllowed(
            f"purpose {clean_purpose!r} is not allowed for {product.product_id}; allowed purposes: "
            f"{', '.join(product.allowed_purposes)}",
            details={"allowed": list(product.allowed_purposes)},
        )
    return product, clean_purpose


def _unknown_field(
    product: DataProduct, name: Any, allowed: list[str], what: str, field: str
) -> InvalidArgument:
    shown = name[:64] if isinstance(name, str) else repr(name)[:64]
    return InvalidArgument(
        f"unknown {what} {shown!r} for {product.product_id}; allowed fields: {', '.join(allowed) or '(none)'}",
        field=field,
        details={"allowed": allowed},
    )


def _where(
    runner: Runner, product: DataProduct, pairs: list[tuple[dict[str, Any], Any]]
) -> tuple[str, list[Any]]:
    clauses, params = [], []
    for field, value in pairs:
        column = runner.ident(field["column"])
        if value is None:
            clauses.append(f"{column} IS NULL")
        else:
            clauses.append(f"{column} = %s")
            params.append(value)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _event_product(product: DataProduct, purpose: str) -> dict[str, Any]:
    """Which product version a read/write event used, and why (the evidence pack reads these keys)."""
    return {
        "product": product.product_id,
        "version": product.version,
        "product_hash": product.hash,
        "purpose": purpose,
    }


def _new_data_ref() -> str:
    return new_id(DATA_REF_PREFIX)


def _evaluate_attached(
    *, actor: Actor, decision: Decision, product: DataProduct, inputs: dict[str, Any]
) -> list[tuple[str, str]]:
    """Evaluate the product's attached policies in this decision; each appends its own ``evaluate``
    event and notes its gating outcome. Returns ``[(policy_id, outcome)]``."""
    if not product.policies:
        return []
    outcomes = []
    source = f"product:{product.product_id}"
    for policy_id in product.policies:
        granted = _granted_exception(decision, policy_id, source, inputs)
        if granted is not None:
            # The same policy version already required an exception for exactly these inputs in this
            # decision, and a human granted it afterwards. Evaluating again would raise a fresh
            # requires_exception that no approval can ever get ahead of; the grant covers this call.
            outcomes.append((policy_id, "exception_granted"))
            continue
        # A failed evaluation raises PolicyEvaluationFailed: this call's transaction rolls back and
        # @fail_closed on the public service records the failed evaluation (nothing is allowed).
        result = policy_services.policy_evaluate_in_decision(
            actor=actor,
            decision=decision,
            policy_id=policy_id,
            inputs=inputs,
            source=source,
        )
        outcomes.append((policy_id, str(result["outcome"])))
    return outcomes


def _granted_exception(decision: Decision, policy_id: str, source: str, inputs: dict[str, Any]) -> str | None:
    """The event id of an earlier ``requires_exception`` evaluation of the latest published version of
    ``policy_id`` with exactly the same (unredacted) inputs, followed by a granted approval; else None."""
    if decision.last_grant_seq is None:
        return None
    published = policy_selectors.latest_published(policy_id)
    if published is None:
        return None
    # Matched on the keyed digest of the inputs as sent, never on the stored (redacted) inputs:
    # redaction truncates long strings and arrays and masks secrets, so two different writes can
    # redact to the same thing, and an approval for one must not let the other through.
    redact(inputs, field="inputs")  # refuses what JSON cannot carry, with the field it is in
    digest = crypto.keyed_digest(inputs)
    candidates = TraceEvent.objects.filter(
        decision=decision, type=EventType.EVALUATE, seq__lt=decision.last_grant_seq
    ).order_by("-seq")
    for event in candidates:
        payload = event.payload
        if (
            payload.get("policy_id") == policy_id
            and payload.get("policy_hash") == published.hash
            and payload.get("source") == source
            and payload.get("outcome") == "requires_exception"
            and payload.get("inputs_digest") == digest
        ):
            return event.event_id
    return None


def _policies_payload(outcomes: list[tuple[str, str]]) -> dict[str, Any]:
    if not outcomes:
        return {}
    return {"policies": [{"policy_id": pid, "outcome": outcome} for pid, outcome in outcomes]}


def _run_refusable(outcomes: list[tuple[str, str]], work: Any) -> Any:
    """Run ``work``; once policy evaluations were recorded, a refusal is returned (so the caller's
    transaction commits the ``evaluate`` events) instead of raised (which would roll them back)."""
    try:
        return work()
    except DomainError as exc:
        if outcomes:
            return exc
        raise


@fail_closed
def decision_read(
    *,
    actor: Actor,
    decision_id: Any,
    product: Any,
    purpose: Any,
    query: Any = None,
    allow_multiple: Any = None,
    result_mode: Any = None,
) -> dict[str, Any]:
    """Read records of a read product inside a decision (SPEC §3 ``decision_read``).

    Returns ``{event_id, product, data_ref, records, summary: {rows, fields}}``; the trace keeps the
    query, ``data_ref`` and summary, never the records.
    """
    result = _decision_read(
        actor=actor,
        decision_id=decision_id,
        product_ref=product,
        purpose=purpose,
        query=query,
        allow_multiple=allow_multiple,
        result_mode=result_mode,
    )
    if isinstance(result, DomainError):
        raise result
    return result


@transaction.atomic
def _decision_read(
    *,
    actor: Actor,
    decision_id: Any,
    product_ref: Any,
    purpose: Any,
    query: Any,
    allow_multiple: Any,
    result_mode: Any,
) -> dict[str, Any] | DomainError:
    product, clean_purpose = _resolve(actor, product_ref, purpose, (Operation.READ,))
    if allow_multiple is None and result_mode is not None:
        allow_multiple = v.choice(result_mode, "result_mode", RESULT_MODES) == "multiple"
    if allow_multiple is None:
        allow_multiple = False
    if not isinstance(allow_multiple, bool):
        raise InvalidArgument("allow_multiple must be true or false", field="allow_multiple")
    mode = "multiple" if allow_multiple else "single"
    if mode not in product.result_modes:
        raise InvalidArgument(
            f"{product.product_id} does not allow result_mode {mode}; allowed: {', '.join(product.result_modes)}",
            field="allow_multiple",
        )
    clean_query = v.optional_json_object(query, "query") or {}
    by_name = _fields_by_name(product)
    vendor = _vendor(product)
    pairs = []
    for name, value in clean_query.items():
        if name not in by_name:
            raise _unknown_field(product, name, list(by_name), "query field", "query")
        pairs.append((by_name[name], coerce(by_name[name], value, vendor)))
    stored_query = redact(clean_query, field="query")

    decision = decision_lock(actor=actor, decision_id=decision_id)
    ensure_not_terminal(decision, "be read into")
    outcomes = _evaluate_attached(
        actor=actor,
        decision=decision,
        product=product,
        inputs={
            "purpose": clean_purpose,
            "operation": "read",
            "query": clean_query,
            "decision": decision.decision_id,
        },
    )

    def work() -> dict[str, Any]:
        denied = [pid for pid, outcome in outcomes if outcome == "deny"]
        if denied:
            raise PolicyDenied(
                f"policy {denied[0]} denied this read of {product.product_id}; the decision trace records "
                "why (decision_trace); do not retry with the same inputs"
            )
        fields = product.fields
        with open_runner(product.source) as runner:
            where, params = _where(runner, product, pairs)
            columns = ", ".join(runner.ident(f["column"]) for f in fields)
            order_by = [by_name[k] for k in product.key_fields] or fields[:1]
            order = ", ".join(runner.ident(f["column"]) for f in order_by)
            rows = runner.execute(
                f"SELECT {columns} FROM {runner.table(product.source_table)}{where} ORDER BY {order} LIMIT %s",
                [*params, product.max_rows + 1],
            ).rows
        if not allow_multiple and len(rows) > 1:
            matched = f"{len(rows)}" if len(rows) <= product.max_rows else f"more than {product.max_rows}"
            raise Conflict(
                f"query matched {matched} records; pass allow_multiple=true or narrow the query",
                details={"matched": len(rows)},
            )
        truncated = len(rows) > product.max_rows
        records = [
            {f["name"]: render(f, value) for f, value in zip(fields, row, strict=True)}
            for row in rows[: product.max_rows]
        ]
        summary: dict[str, Any] = {"rows": len(records), "fields": [f["name"] for f in fields]}
        if truncated:
            summary["truncated"] = True
        data_ref = _new_data_ref()
        event = trace_append(
            decision=decision,
            type=EventType.READ,
            actor=actor,
            payload={
                **_event_product(product, clean_purpose),
                "query": stored_query,
                "result_mode": mode,
                "data_ref": data_ref,
                "summary": summary,
                # Not the records (SPEC §3), but enough to tell whether a later re-read of them
                # (decision_evaluate inputs_ref) returns exactly what the agent saw.
                "records_digest": crypto.keyed_digest(records),
                **_policies_payload(outcomes),
            },
        )
        return {
            "event_id": event.event_id,
            "product": product.product_id,
            "data_ref": data_ref,
            "records": records,
            "summary": summary,
        }

    return _run_refusable(outcomes, work)


@dataclass
class _Statement:
    kind: str  # insert | update | delete
    values: list[tuple[dict[str, Any], Any]]  # SET / INSERT columns
    keys: list[tuple[dict[str, Any], Any]]  # WHERE equality


def _record_values(
    product: DataProduct, record: Any, where: str, *, skip: set[str], require: bool
) -> list[tuple[dict[str, Any], Any]]:
    if not isinstance(record, dict):
        raise InvalidArgument(f"{where} must be an object of field → value", field=where)
    by_name = _fields_by_name(product)
    writable = [f["name"] for f in product.fields if f["writable"] and f["name"] not in skip]
    vendor = _vendor(product)
    out = []
    for name, value in record.items():
        if name in skip:
            continue
        if name not in by_name:
            raise _unknown_field(product, name, writable, "field", where)
        if name not in writable:
            raise InvalidArgument(
                f"field {name} of {product.product_id} is not writable; writable fields: {', '.join(writable)}",
                field=name,
                details={"allowed": writable},
            )
        out.append((by_name[name], coerce(by_name[name], value, vendor)))
    if require:
        present = {f["name"] for f, val in out if val is not None}
        for field in product.fields:
            if field["required"] and field["name"] not in present:
                raise InvalidArgument(
                    f"required field {field['name']} is missing in {where}", field=field["name"]
                )
    if not out:
        raise InvalidArgument(
            f"{where} sets no writable field; writable fields: {', '.join(writable)}", field=where
        )
    return out


def _key_values(product: DataProduct, keys: dict[str, Any], where: str) -> list[tuple[dict[str, Any], Any]]:
    by_name = _fields_by_name(product)
    vendor = _vendor(product)
    for name in keys:
        if name not in product.key_fields:
            raise _unknown_field(product, name, list(product.key_fields), "key field", where)
    missing = [k for k in product.key_fields if k not in keys]
    if missing:
        raise InvalidArgument(
            f"key field {missing[0]} is missing in {where}; every key field is needed: {', '.join(product.key_fields)}",
            field=missing[0],
        )
    out = []
    for name in product.key_fields:
        if keys[name] is None:
            raise InvalidArgument(f"key field {name} cannot be null", field=name)
        out.append((by_name[name], coerce(by_name[name], keys[name], vendor)))
    return out


def _plan(product: DataProduct, keys: Any, mutation: Any) -> tuple[list[_Statement], dict[str, Any]]:
    """Validate a mutation (every form of SPEC §3) into statements plus a summary for the trace."""
    operation = product.operation
    if mutation is None and operation == Operation.DELETE:
        mutation = {}
    body = v.json_object(mutation, "mutation")
    allowed_forms = {"insert": ("records", "data"), "update": ("fields", "records"), "delete": ("records",)}[
        operation
    ]
    extra = [k for k in body if k not in allowed_forms]
    if extra:
        raise InvalidArgument(
            f"mutation.{extra[0]} is not a {operation} form; use one of: {', '.join(allowed_forms)}",
            field=f"mutation.{extra[0]}",
        )
    if len(body) > 1:
        raise InvalidArgument(f"mutation takes exactly one of {', '.join(allowed_forms)}", field="mutation")
    statements: list[_Statement] = []
    summary: dict[str, Any]
    if operation == Operation.INSERT:
        if keys is not None:
            raise InvalidArgument(
                "keys are not used by insert products; put the values in mutation", field="keys"
            )
        records: Any
        if "data" in body:
            records = [v.json_object(body["data"], "mutation.data", allow_empty=False)]
            form = "data"
        else:
            records = body.get("records")
            form = "records"
            if not isinstance(records, list) or not records:
                raise InvalidArgument(
                    "mutation.records must be a non-empty list of objects", field="mutation.records"
                )
        if len(records) > product.max_rows:
            raise InvalidArgument(
                f"mutation has {len(records)} records; {product.product_id} takes at most {product.max_rows} per call",
                field="mutation.records",
            )
        for i, record in enumerate(records):
            where = "mutation.data" if form == "data" else f"mutation.records[{i}]"
            statements.append(
                _Statement("insert", _record_values(product, record, where, skip=set(), require=True), [])
            )
        return statements, {
            "form": form,
            "records": len(records),
            "fields": sorted({f["name"] for s in statements for f, _ in s.values}),
        }

    # update and delete address rows by key
    if "records" in body:
        records = body["records"]
        if not isinstance(records, list) or not records:
            raise InvalidArgument(
                "mutation.records must be a non-empty list of objects", field="mutation.records"
            )
        if not isinstance(keys, list) or not keys or not all(isinstance(k, str) for k in keys):
            raise InvalidArgument(
                f"with mutation.records, keys must be an array of key field names, e.g. {json.dumps(product.key_fields)}",
                field="keys",
            )
        if len(records) > product.max_rows:
            raise InvalidArgument(
                f"mutation has {len(records)} records; {product.product_id} takes at most {product.max_rows} per call",
                field="mutation.records",
            )
        key_names = list(dict.fromkeys(keys))
        for name in key_names:
            if name not in product.key_fields:
                raise _unknown_field(product, name, list(product.key_fields), "key field", "keys")
        for i, record in enumerate(records):
            where = f"mutation.records[{i}]"
            if not isinstance(record, dict):
                raise InvalidArgument(f"{where} must be an object", field=where)
            key_part = {k: record.get(k) for k in key_names if k in record}
            key_values = _key_values(product, key_part, where)
            values = []
            if operation == Operation.UPDATE:
                values = _record_values(product, record, where, skip=set(key_names), require=False)
            elif set(record) - set(key_names):
                other = sorted(set(record) - set(key_names))[0]
                raise InvalidArgument(
                    f"{where}.{other[:64]} is not a key field; delete records carry only: {', '.join(key_names)}",
                    field=f"{where}.{other[:64]}",
                )
            statements.append(_Statement(operation, values, key_values))
        summary = {"form": "records", "records": len(records)}
    else:
        if not isinstance(keys, dict) or not keys:
            raise InvalidArgument(
                f"keys must be an object of key field → value, e.g. {{{', '.join(repr(k) + ': ...' for k in product.key_fields)}}}",
                field="keys",
            )
        key_values = _key_values(product, keys, "keys")
        values = []
        if operation == Operation.UPDATE:
            if "fields" not in body:
                raise InvalidArgument(
                    "an update takes mutation.fields (with object keys) or mutation.records", field="mutation"
                )
            values = _record_values(
                product,
                v.json_object(body["fields"], "mutation.fields", allow_empty=False),
                "mutation.fields",
                skip=set(),
                require=False,
            )
        statements.append(_Statement(operation, values, key_values))
        summary = {"form": "fields" if operation == Operation.UPDATE else "keys", "records": 1}
    summary["fields"] = sorted({f["name"] for s in statements for f, _ in s.values})
    return statements, summary


def _execute(
    runner: Runner, product: DataProduct, statements: list[_Statement], return_created: bool
) -> tuple[int, list[dict[str, Any]]]:
    table = runner.table(product.source_table)
    affected = 0
    created: list[dict[str, Any]] = []
    for statement in statements:
        if statement.kind == "insert":
            columns = ", ".join(runner.ident(f["column"]) for f, _ in statement.values)
            marks = ", ".join(["%s"] * len(statement.values))
            returning = ", ".join(runner.ident(f["column"]) for f in product.fields)
            result = runner.execute(
                f"INSERT INTO {table} ({columns}) VALUES ({marks}) RETURNING {returning}",
                [val for _, val in statement.values],
            )
            affected += 1
            if return_created:
                created.extend(
                    {f["name"]: render(f, val) for f, val in zip(product.fields, row, strict=True)}
                    for row in result.rows
                )
            continue
        where, params = _where(runner, product, statement.keys)
        if statement.kind == "update":
            sets = ", ".join(f"{runner.ident(f['column'])} = %s" for f, _ in statement.values)
            result = runner.execute(
                f"UPDATE {table} SET {sets}{where}", [*(val for _, val in statement.values), *params]
            )
        else:
            result = runner.execute(f"DELETE FROM {table}{where}", params)
        affected += max(result.rowcount, 0)
        if affected > product.max_rows:
            # Raised inside the runner: the transaction rolls back, nothing is changed.
            raise Conflict(
                f"the write would change more than {product.max_rows} records; {product.product_id} allows at most "
                f"{product.max_rows} per call"
            )
    return affected, created


def idempotency_digest(key: str) -> str:
    """What is stored of an ``idempotency_key``: its keyed digest (HMAC-SHA256 keyed from the server's
    secret key, ``crypto.keyed_digest``), never the key. Rotating ``DJANGO_SECRET_KEY`` means a retry
    sent across the rotation is no longer recognised; products migration 0004 converted older rows.
    """
    return crypto.keyed_digest(key)


def _request_hash(**parts: Any) -> str:
    try:
        material = json.dumps(parts, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidArgument("the write arguments are not plain JSON", field="mutation") from None
    return hashlib.sha256(material.encode()).hexdigest()


def _ensure_product_approval(product: DataProduct, decision: Decision) -> None:
    if product.requires_approval and decision.last_grant_seq is None:
        raise ApprovalRequired(
            f"data product {product.product_id} requires a granted approval before writes; call "
            "decision_request_approval, then poll decision_get until approval_status is approved"
        )


@fail_closed
def decision_write(
    *,
    actor: Actor,
    decision_id: Any,
    product: Any,
    purpose: Any,
    mutation: Any,
    operation: Any = None,
    keys: Any = None,
    idempotency_key: Any = None,
    return_created: Any = False,
) -> dict[str, Any]:
    """Write through an insert/update/delete product inside a decision (SPEC §3 ``decision_write``).

    Returns ``{event_id, product, operation, status: "executed", affected_rows, created_records?,
    data_ref}``. With ``idempotency_key`` a repeat within the decision returns the first result and
    writes nothing.
    """
    result = _decision_write(
        actor=actor,
        decision_id=decision_id,
        product_ref=product,
        purpose=purpose,
        mutation=mutation,
        operation=operation,
        keys=keys,
        idempotency_key=idempotency_key,
        return_created=return_created,
    )
    if isinstance(result, DomainError):
        raise result
    return result


@transaction.atomic
def _decision_write(
    *,
    actor: Actor,
    decision_id: Any,
    product_ref: Any,
    purpose: Any,
    mutation: Any,
    operation: Any,
    keys: Any,
    idempotency_key: Any,
    return_created: Any,
) -> dict[str, Any] | DomainError:
    product, clean_purpose = _resolve(
        actor, product_ref, purpose, (Operation.INSERT, Operation.UPDATE, Operation.DELETE)
    )
    if operation is not None and operation != product.operation:
        raise InvalidArgument(
            f"operation must be {product.product_id}'s operation {product.operation!r} (one operation per product)",
            field="operation",
            details={"allowed": [product.operation]},
        )
    if not isinstance(return_created, bool):
        raise InvalidArgument("return_created must be true or false", field="return_created")
    key = v.optional_string(idempotency_key, "idempotency_key", max_length=200)
    statements, summary = _plan(product, keys, mutation)
    request_hash = _request_hash(
        product=product.product_id,
        purpose=clean_purpose,
        keys=keys,
        mutation=mutation,
        return_created=return_created,
    )

    decision = decision_lock(actor=actor, decision_id=decision_id)
    if key is not None:
        # Under the decision's row lock: concurrent retries queue here and see the first result.
        previous = WriteResult.objects.filter(
            decision=decision, idempotency_digest=idempotency_digest(key)
        ).first()
        if previous is not None:
            if previous.request_hash != request_hash:
                raise Conflict(
                    f"idempotency_key {key[:64]!r} was already used in this decision for a different write; "
                    "use a new key for a new write"
                )
            return dict(previous.result)
    ensure_writable(decision)
    _ensure_product_approval(product, decision)
    inputs: dict[str, Any] = {
        "purpose": clean_purpose,
        "operation": product.operation,
        "decision": decision.decision_id,
    }
    if keys is not None:
        inputs["keys"] = keys
    if isinstance(mutation, dict):
        inputs.update({k: mutation[k] for k in ("records", "fields") if k in mutation})
        if "data" in mutation:
            inputs["records"] = [mutation["data"]]
    outcomes = _evaluate_attached(actor=actor, decision=decision, product=product, inputs=inputs)

    def work() -> dict[str, Any]:
        ensure_writable(decision)  # sees deny / requires_exception noted by the evaluations above
        _ensure_product_approval(product, decision)
        # The trace event and the idempotency row are written while the source's transaction is
        # still open: an external source then commits only once everything on TraceMem's side has
        # succeeded, leaving just TraceMem's own COMMIT between the two (docs/products.md).
        with open_runner(product.source) as runner:
            affected, created = _execute(runner, product, statements, return_created)
            runner.finish()  # the trace event is TraceMem's own table, not the products role's
            data_ref = _new_data_ref()
            event = trace_append(
                decision=decision,
                type=EventType.WRITE,
                actor=actor,
                payload={
                    **_event_product(product, clean_purpose),
                    "operation": product.operation,
                    "keys": redact(keys, field="keys"),
                    "affected_rows": affected,
                    "idempotency_key": redact(key, field="idempotency_key"),
                    "mutation": redact(summary, field="mutation"),
                    "data_ref": data_ref,
                    **_policies_payload(outcomes),
                },
            )
            result: dict[str, Any] = {
                "event_id": event.event_id,
                "product": product.product_id,
                "operation": product.operation,
                "status": "executed",
                "affected_rows": affected,
                "data_ref": data_ref,
            }
            if return_created and product.operation == Operation.INSERT:
                result["created_records"] = created
            if key is not None:
                WriteResult.objects.create(
                    decision=decision,
                    idempotency_digest=idempotency_digest(key),
                    request_hash=request_hash,
                    result=json.loads(json.dumps(result)),
                )
            return result

    return _run_refusable(outcomes, work)


# --- inputs_ref support: re-read a read event's records for decision_evaluate ---------------


def read_event_records(event: Any, actor: Actor) -> list[dict[str, Any]] | None:
    """The records of an earlier ``read`` event, re-read now with its recorded query for ``actor``
    (the trace keeps no records).

    The read is checked again as if it were made now: the acting agent must still hold the grant
    (else ``not_found``, like any ungranted product) and the read's purpose must still be allowed.
    The records must equal what the read returned (its ``records_digest``); otherwise ``conflict``.
    None when re-reading is impossible: a redacted query value, or a read recorded without a digest.
    """
    payload = event.payload if isinstance(event.payload, dict) else {}
    product, _ = _resolve(actor, payload.get("product"), payload.get("purpose"), (Operation.READ,))
    query = payload.get("query")
    expected = payload.get("records_digest")
    if not isinstance(query, dict) or not isinstance(expected, str):
        return None
    if any(val == "[redacted]" for val in query.values()):
        return None
    by_name = _fields_by_name(product)
    if any(name not in by_name for name in query):
        return None
    vendor = _vendor(product)
    try:
        pairs = [(by_name[name], coerce(by_name[name], value, vendor)) for name, value in query.items()]
    except DomainError:
        return None
    limit = product.max_rows if payload.get("result_mode") == "multiple" else 1
    with open_runner(product.source) as runner:
        where, params = _where(runner, product, pairs)
        columns = ", ".join(runner.ident(f["column"]) for f in product.fields)
        order_by = [by_name[k] for k in product.key_fields] or product.fields[:1]
        order = ", ".join(runner.ident(f["column"]) for f in order_by)
        rows = runner.execute(
            f"SELECT {columns} FROM {runner.table(product.source_table)}{where} ORDER BY {order} LIMIT %s",
            [*params, limit],
        ).rows
    records = [
        {f["name"]: render(f, val) for f, val in zip(product.fields, row, strict=True)} for row in rows
    ]
    if crypto.keyed_digest(records) != expected:
        raise Conflict(
            f"the data changed since read event {event.event_id}; read again (decision_read) and pass the new "
            "event_id as inputs_ref",
            details={"field": "inputs_ref"},
        )
    return records


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
    for raw in _items(items, "products"):
        item = dict(raw)
        product_id = item.pop("product_id", None) or item.pop("id", None)
        publish = bool(item.pop("publish", False))
        grants = item.pop("grants", None) or []
        existing = DataProduct.objects.filter(pk=product_id).first() if isinstance(product_id, str) else None
        if dry_run:
            verb = "create" if existing is None else "update"
            lines.append(f"would {verb} product {product_id}" + (" and publish it" if publish else ""))
            lines.extend(f"would grant {product_id} to {agent}" for agent in grants)
            continue
        if existing is None:
            product_create(actor=actor, product_id=product_id, definition=item)
            lines.append(f"created product {product_id}")
        elif existing.status == ProductStatus.DRAFT:
            product_update(actor=actor, product_id=existing.product_id, changes=item)
            lines.append(f"updated draft product {product_id}")
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
            lines.append(f"published product {product_id}")
        lines.extend(
            apply_product_grants(
                actor=actor, items=[{"product_id": product_id, "agent": a} for a in grants], dry_run=False
            )
        )
    return lines


def apply_product_grants(*, actor: Actor, items: Any, dry_run: bool) -> list[str]:
    """``apply_config`` section ``product_grants``: [{product_id, agent (id or name), permissions?}]."""
    lines = []
    for item in _items(items, "product_grants"):
        product_id, agent = (
            item.get("product_id") or item.get("product"),
            item.get("agent") or item.get("agent_id"),
        )
        if dry_run:
            lines.append(f"would grant {product_id} to {agent}")
            continue
        grant = product_grant(
            actor=actor,
            product_id=v.string(product_id, "product_id", max_length=64),
            agent_id=agent,
            permissions=item.get("permissions"),
        )
        lines.append(f"granted {product_id} to {grant.agent_id} ({', '.join(grant.permissions)})")
    return lines


# --- the quick-start demo -------------------------------------------------------------------

DEMO_PRODUCTS: list[dict[str, Any]] = [
    {
        "product_id": "pg_customers_v1",
        "name": "Customers (read)",
        "description": "Look up a customer by id, email or tier. Internal notes are not exposed.",
        "operation": "read",
        "table": "customers",
        "fields": [
            {
                "name": "customer_id",
                "column": "id",
                "type": "integer",
                "primary_key": True,
                "nullable": False,
            },
            {"name": "name", "column": "name", "type": "string", "nullable": False},
            {"name": "email", "column": "email", "type": "string", "nullable": False},
            {"name": "tier", "column": "tier", "type": "string", "nullable": False},
        ],
        "allowed_purposes": ["customer_support", "order_processing"],
        "max_rows": 50,
        "example_queries": [{"email": "ada@example.com"}, {"tier": "gold"}],
    },
    {
        "product_id": "pg_orders_insert_v1",
        "name": "Orders (insert)",
        "description": "Create orders for existing customers.",
        "operation": "insert",
        "table": "orders",
        "fields": [
            {"name": "order_id", "column": "id", "type": "integer", "primary_key": True, "nullable": False},
            {
                "name": "customer_id",
                "column": "customer_id",
                "type": "integer",
                "writable": True,
                "required": True,
                "nullable": False,
            },
            {
                "name": "amount",
                "column": "amount",
                "type": "number",
                "writable": True,
                "required": True,
                "nullable": False,
            },
            {"name": "status", "column": "status", "type": "string", "writable": True, "nullable": False},
            {"name": "note", "column": "note", "type": "string", "writable": True},
        ],
        "allowed_purposes": ["order_processing"],
        "max_rows": 20,
    },
    {
        "product_id": "pg_orders_update_v1",
        "name": "Orders (update)",
        "description": "Change an order's status or note, addressed by order_id.",
        "operation": "update",
        "table": "orders",
        "fields": [
            {"name": "order_id", "column": "id", "type": "integer", "primary_key": True, "nullable": False},
            {"name": "status", "column": "status", "type": "string", "writable": True, "nullable": False},
            {"name": "note", "column": "note", "type": "string", "writable": True},
        ],
        "allowed_purposes": ["order_processing"],
        "max_rows": 20,
    },
]


@transaction.atomic
def products_seed_demo(*, actor: Actor, agent: Agent) -> list[str]:
    """Three published products over the demo tables ``customers`` and ``orders`` of the built-in
    source (:func:`products.demo.demo_tables_create` makes those, as the owner), granted to ``agent``.
    Idempotent; works on SQLite and PostgreSQL."""
    for perm in ("products.define_products", "products.publish_products", "products.grant_products"):
        require_perm(actor, perm)
    lines = []
    for spec in DEMO_PRODUCTS:
        definition = dict(spec)
        product_id = definition.pop("product_id")
        if not DataProduct.objects.filter(pk=product_id).exists():
            product_create(actor=actor, product_id=product_id, definition=definition)
            lines.append(f"Data product {product_id} created.")
        product_publish(actor=actor, product_id=product_id)
        product_grant(actor=actor, product_id=product_id, agent_id=agent.agent_id)
    lines.append(
        f"Data products {', '.join(p['product_id'] for p in DEMO_PRODUCTS)} are granted to {agent.name} "
        "(tables customers, orders in the built-in source)."
    )
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
