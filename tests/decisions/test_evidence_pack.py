"""The evidence pack of the docs/contract/story.md story, fetched by agent, reviewer and auditor, verified offline."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.contrib.auth import get_user_model
from django.test import Client, override_settings

from agents.models import Agent
from decisions import receipts
from decisions.models import Decision
from policies.models import PolicyVersion
from policies.services import authoring as policy_authoring
from tests.appr_helpers import make_reviewer, make_route
from tests.conftest import AgentClient
from tests.decisions.test_receipt import run_cli
from tracemem_core.actor import Actor
from tracemem_verify.receipt import key_id_for, raw_public_key

pytestmark = pytest.mark.django_db

SEED = bytes(range(7, 39))


@pytest.fixture(autouse=True)
def signing_key() -> Iterator[None]:
    receipts._load_signing_key.cache_clear()
    with override_settings(TRACEMEM_RECEIPT_KEY=base64.b64encode(SEED).decode()):
        yield
    receipts._load_signing_key.cache_clear()


def _policy(agent: Agent) -> PolicyVersion:
    system = Actor.system()
    policy_authoring.policy_create(
        actor=system,
        policy_id="code_change_policy_v1",
        definition={
            "name": "Code change policy",
            "rules": [
                {
                    "name": "refactor_needs_review",
                    "when": 'inputs.change_type == "refactor"',
                    "outcome": "requires_exception",
                    "message": "Refactors need a reviewer",
                }
            ],
            "default_outcome": "allow",
            "exception_route_id": "route_code",
        },
    )
    published = policy_authoring.policy_publish(actor=system, policy_id="code_change_policy_v1")
    policy_authoring.policy_grant(actor=system, policy_id="code_change_policy_v1", agent_id=agent.agent_id)
    return published


def _story(api: AgentClient, agent: Agent) -> dict[str, Any]:
    """docs/contract/story.md steps 2–8 through the REST doors; returns what the test needs to check."""
    policy = _policy(agent)
    make_route("route_code")
    reviewer = make_reviewer("rita", superuser=True)
    did = api.post(
        "/api/v1/decisions",
        {
            "intent": "code.refactor.execute",
            "automation_mode": "propose",
            "metadata": {"component": "user-service", "change_type": "refactor", "api_token": "s3cr3t-value"},
        },
    ).json()["decision_id"]
    api.post(
        f"/api/v1/decisions/{did}/context",
        {"context": {"step": "extracting_auth_logic", "rationale": "Improving testability"}},
    )
    evaluated = api.post(
        f"/api/v1/decisions/{did}/evaluate",
        {
            "policy_id": "code_change_policy_v1",
            "inputs": {"change_type": "refactor", "component": "user-service"},
        },
    ).json()
    assert evaluated["outcome"] == "requires_exception", evaluated
    approval = api.post(
        f"/api/v1/decisions/{did}/approvals", {"title": "Refactoring Approval Required", "message": "please"}
    ).json()
    assert approval["status"] == "pending", approval
    approved = reviewer.approve(approval["approval_id"], "Looks safe")
    assert approved.status_code == 200, approved.content
    assert api.get(f"/api/v1/decisions/{did}").json()["status"] == "approved"
    closed = api.post(
        f"/api/v1/decisions/{did}/close",
        {"action": "commit", "summary": "done", "reason": "Successfully refactored authentication logic"},
    )
    assert closed.status_code == 200, closed.content
    return {
        "decision_id": did,
        "policy": policy,
        "reviewer": reviewer,
        "approval_id": approval["approval_id"],
    }


def test_evidence_pack_of_the_story_holds_everything_and_verifies_offline(
    api: AgentClient, agent_and_key: tuple[Agent, str], tmp_path: Path
) -> None:
    story = _story(api, agent_and_key[0])
    did = story["decision_id"]

    response = api.get(f"/api/v1/decisions/{did}/evidence")

    assert response.status_code == 200, response.content
    pack = response.json()
    trace = api.get(f"/api/v1/decisions/{did}/trace").json()
    assert pack["format"] == "tracemem.evidence.v1"
    assert pack["decision"] == {k: v for k, v in trace.items() if k not in ("events", "next_after_seq")}
    assert pack["trace"] == trace["events"]
    assert [e["type"] for e in pack["trace"]] == [
        "created",
        "context",
        "evaluate",
        "approval_requested",
        "approval_vote",
        "approval_resolved",
        "close",
    ]
    assert pack["trace"][0]["payload"]["metadata"]["api_token"] == "[redacted]"
    [policy] = pack["policies"]
    assert policy["policy_id"] == "code_change_policy_v1"
    assert policy["policy_version"] == 1
    assert policy["policy_hash"] == story["policy"].hash
    assert policy["definition"]["hash"] == story["policy"].hash
    assert policy["evaluations"][0]["outcome"] == "requires_exception"
    [approval] = pack["approvals"]
    assert approval["approval_id"] == story["approval_id"]
    assert approval["requested"]["title"] == "Refactoring Approval Required"
    [vote] = approval["votes"]
    assert vote["vote"] == "approve" and vote["rationale"] == "Looks safe"
    assert vote["actor"]["name"] == "rita"
    assert approval["resolution"]["outcome"] == "approved"
    assert pack["products"] == []
    receipt = pack["receipt"]
    assert receipt["receipt_data"]["trace_head"] == trace["trace_head"]
    assert receipt["key_id"] == key_id_for(
        raw_public_key(Ed25519PrivateKey.from_private_bytes(SEED).public_key())
    )
    assert pack["verification"]["trace_intact"] is True

    pack_path = tmp_path / "evidence.json"
    pack_path.write_text(json.dumps(pack))
    keys_path = tmp_path / "keys.json"
    keys_path.write_text(json.dumps(Client().get("/.well-known/tracemem/receipt-keys").json()))
    result = run_cli(str(pack_path), "--keys", str(keys_path))
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(
        f"OK: receipt for decision {did} (committed, {len(trace['events'])} events"
    )
    assert "recomputes to the receipt's trace_head" in result.stdout

    # Someone edits the reviewer's rationale inside the pack: the chain no longer holds.
    vote_event = next(e for e in pack["trace"] if e["type"] == "approval_vote")
    vote_event["payload"]["rationale"] = "Looks sane"
    pack_path.write_text(json.dumps(pack))
    result = run_cli(str(pack_path), "--keys", str(keys_path))
    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"FAIL: trace decision {did}: broken at seq {vote_event['seq']}: hash does not match the event's content"
    )


def test_evidence_pack_is_open_to_reviewers_and_auditors_but_not_other_agents(
    api: AgentClient, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    api.post(f"/api/v1/decisions/{did}/close", {"action": "commit"})
    reviewer = make_reviewer("audrey", superuser=True)
    by_token = reviewer.get(f"/api/v1/decisions/{did}/evidence")
    assert by_token.status_code == 200
    assert by_token.json()["decision"]["decision_id"] == did
    assert by_token.json()["generated_for"] == {
        "kind": "user",
        "id": f"user_{reviewer.user.pk}",
        "name": "audrey",
    }

    session = Client()
    session.force_login(reviewer.user)
    assert session.get(f"/api/v1/decisions/{did}/evidence").status_code == 200

    plain = get_user_model().objects.create_user("nobody", "n@example.com", "pw-unused-123")
    nobody = Client()
    nobody.force_login(plain)
    assert nobody.get(f"/api/v1/decisions/{did}/evidence").json()["error"]["code"] == "not_found"

    _, other_key = make_agent("other")
    other = AgentClient(other_key).get(f"/api/v1/decisions/{did}/evidence")
    assert other.status_code == 404 and other.json()["error"]["code"] == "not_found"
    assert Client().get(f"/api/v1/decisions/{did}/evidence").status_code == 401


def test_evidence_pack_of_an_open_decision_has_no_receipt_and_the_cli_says_so(
    api: AgentClient, tmp_path: Path
) -> None:
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    pack = api.get(f"/api/v1/decisions/{did}/evidence").json()
    assert pack["receipt"] is None
    assert Decision.objects.get(pk=did).status == "open"
    path = tmp_path / "open.json"
    path.write_text(json.dumps(pack))
    result = run_cli(str(path))
    assert result.returncode == 1
    assert result.stdout.strip() == (
        "FAIL: the evidence pack has no receipt (the decision was not closed when it was made)"
    )


def test_evidence_pack_lists_product_versions_from_read_and_write_events(agent_actor: Actor) -> None:
    from django.db import transaction

    from decisions import evidence, services

    decision = services.decision_create(
        actor=agent_actor, intent="customer.discount.apply", automation_mode="autonomous"
    )
    # The shape the products app appends for a read and a write (products/services.py).
    with transaction.atomic():
        locked = services.decision_lock(actor=agent_actor, decision_id=decision.decision_id)
        for kind, extra in (("read", {"result_mode": "single"}), ("write", {"operation": "update"})):
            services.trace_append(
                decision=locked,
                type=kind,
                actor=agent_actor,
                payload={
                    "product": "pg_customers_v1",
                    "version": 3,
                    "product_hash": "ab" * 32,
                    "purpose": "support",
                    **extra,
                },
            )

    pack = evidence.evidence_pack(actor=agent_actor, decision_id=decision.decision_id)

    [product] = pack["products"]
    assert {k: product[k] for k in ("product_id", "product_version", "product_hash")} == {
        "product_id": "pg_customers_v1",
        "product_version": 3,
        "product_hash": "ab" * 32,
    }
    assert [(u["seq"], u["type"], u["purpose"], u["operation"]) for u in product["uses"]] == [
        (2, "read", "support", None),
        (3, "write", "support", "update"),
    ]
    assert pack["receipt"] is None and pack["verification"]["trace_intact"] is True
