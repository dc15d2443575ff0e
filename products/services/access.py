"""What every agent read and write of business data shares (docs/contract/tools.md, docs/contract/data-products.md): the product
looked up through the agent's grant and the purpose checked, query/key fields checked and coerced,
the product's attached policies evaluated, and refusals recorded before they are raised.
"""

from __future__ import annotations

from typing import Any

from django.db import connection

from decisions.models import Decision, EventType, TraceEvent
from policies import selectors as policy_selectors
from policies.services import evaluation as policy_evaluation
from products.engine import Runner
from products.models import (
    DataProduct,
    Operation,
    SourceKind,
)
from products.selectors import product_for_agent
from products.services.definitions import _outside_the_wall
from tracemem_core import crypto
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import (
    DomainError,
    InvalidArgument,
    InvalidState,
    PermissionDenied,
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
