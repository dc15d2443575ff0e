"""``decision_write``: the agent's writes of business data (docs/contract/tools.md, docs/contract/data-products.md).

Each call locks the decision, checks grant and purpose, evaluates the product's attached policies,
applies the docs/contract/states.md gates, plans and runs parameterised statements in one transaction and appends a
``write`` event — all under the decision's row lock, which is also what makes ``idempotency_key``
exact under concurrent retries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from decisions.models import Decision, EventType
from decisions.services import decision_lock, ensure_writable, trace_append
from policies.services.evaluation import fail_closed
from products.engine import Runner, open_runner
from products.fields import coerce, render
from products.models import (
    DataProduct,
    Operation,
    WriteResult,
)
from products.services.access import (
    _evaluate_attached,
    _event_product,
    _fields_by_name,
    _new_data_ref,
    _policies_payload,
    _resolve,
    _run_refusable,
    _unknown_field,
    _vendor,
    _where,
)
from tracemem_core import crypto
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    ApprovalRequired,
    Conflict,
    DomainError,
    InvalidArgument,
)
from tracemem_core.redaction import redact


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
    """Validate a mutation (every form of docs/contract/tools.md) into statements plus a summary for the trace."""
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
            "decision_request_approval, then decision_wait until approval_status is approved"
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
    """Write through an insert/update/delete product inside a decision (docs/contract/tools.md ``decision_write``).

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
