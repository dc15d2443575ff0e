"""``decision_read``: the agent's reads of business data (docs/contract/tools.md, docs/contract/data-products.md), and the re-read behind
``decision_evaluate``'s ``inputs_ref``.

Each call locks the decision, checks grant and purpose, evaluates the product's attached policies
(recorded as ``evaluate`` events by the policies app), runs one parameterised SELECT and appends a
``read`` event — all under the decision's row lock.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from decisions.models import EventType
from decisions.services import decision_lock, ensure_not_terminal, trace_append
from policies.services.evaluation import fail_closed
from products.engine import open_runner
from products.fields import coerce, render
from products.models import (
    DataProduct,
    Operation,
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
from products.services.definitions import RESULT_MODES
from tracemem_core import crypto
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    Conflict,
    DomainError,
    InvalidArgument,
    PolicyDenied,
)
from tracemem_core.redaction import redact


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
    """Read records of a read product inside a decision (docs/contract/tools.md ``decision_read``).

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
                # Not the records (docs/contract/tools.md), but enough to tell whether a later re-read of them
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
