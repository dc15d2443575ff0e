"""The agent's reads and writes of business data (SPEC §3 data tools, §8).

``decision_read`` / ``decision_write`` are the only way an agent touches business data. Each call
locks the decision, checks grant and purpose, evaluates the product's attached policies (recorded as
``evaluate`` events by the policies app), applies the SPEC §5 gates, runs parameterised SQL in one
transaction and appends a ``read``/``write`` event — all under the decision's row lock, which is also
what makes ``idempotency_key`` exact under concurrent retries.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from decisions.models import Decision, EventType, TraceEvent
from decisions.services import decision_lock, ensure_not_terminal, ensure_writable, trace_append
from policies import selectors as policy_selectors
from policies.services import evaluation as policy_evaluation
from policies.services.evaluation import fail_closed
from products.engine import Runner, open_runner
from products.fields import coerce, render
from products.models import (
    DataProduct,
    Operation,
    SourceKind,
    WriteResult,
)
from products.selectors import product_for_agent
from products.services.definitions import RESULT_MODES, _outside_the_wall
from tracemem_core import crypto
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    ApprovalRequired,
    Conflict,
    DomainError,
    InvalidArgument,
    InvalidState,
    PermissionDenied,
    PolicyDenied,
    PurposeNotAllowed,
)
from tracemem_core.ids import new_id
from tracemem_core.redaction import redact

DATA_REF_PREFIX = "dref_"
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


def _select_rows(product: DataProduct, pairs: list[tuple[dict[str, Any], Any]], *, limit: int) -> list[Any]:
    """The one SELECT of a read product: its fields where every ``(field, value)`` pair is equal,
    ordered by the key fields (else the first field), at most ``limit`` rows."""
    by_name = _fields_by_name(product)
    with open_runner(product.source) as runner:
        where, params = _where(runner, product, pairs)
        columns = ", ".join(runner.ident(f["column"]) for f in product.fields)
        order_by = [by_name[k] for k in product.key_fields] or product.fields[:1]
        order = ", ".join(runner.ident(f["column"]) for f in order_by)
        return runner.execute(
            f"SELECT {columns} FROM {runner.table(product.source_table)}{where} ORDER BY {order} LIMIT %s",
            [*params, limit],
        ).rows


def _records(product: DataProduct, rows: list[Any]) -> list[dict[str, Any]]:
    """Rows of ``_select_rows`` as records keyed by field name, values rendered as JSON."""
    return [
        {f["name"]: render(f, value) for f, value in zip(product.fields, row, strict=True)} for row in rows
    ]


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
        result = policy_evaluation.policy_evaluate_in_decision(
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
        rows = _select_rows(product, pairs, limit=product.max_rows + 1)
        if not allow_multiple and len(rows) > 1:
            matched = f"{len(rows)}" if len(rows) <= product.max_rows else f"more than {product.max_rows}"
            raise Conflict(
                f"query matched {matched} records; pass allow_multiple=true or narrow the query",
                details={"matched": len(rows)},
            )
        truncated = len(rows) > product.max_rows
        records = _records(product, rows[: product.max_rows])
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
    records = _records(product, _select_rows(product, pairs, limit=limit))
    if crypto.keyed_digest(records) != expected:
        raise Conflict(
            f"the data changed since read event {event.event_id}; read again (decision_read) and pass the new "
            "event_id as inputs_ref",
            details={"field": "inputs_ref"},
        )
    return records
