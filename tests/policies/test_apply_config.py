"""apply_config's policies section, and the demo policy of docs/contract/story.md."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from decisions import services as decision_services
from policies import selectors
from policies.models import PolicyGrant, PolicyVersion
from policies.services import authoring as policy_authoring
from policies.services import evaluation as policy_evaluation
from tracemem_core.actor import Actor
from tracemem_site import demo

CONFIG = """
policies:
  - policy_id: discount_cap_v1
    name: Discount cap
    inputs_schema: {type: object, required: [discount]}
    rules:
      - {name: too_big, when: "inputs.discount > 20", outcome: deny, message: "over 20%"}
      - {name: needs_human, when: "inputs.discount > 10", outcome: requires_exception, message: "over 10%"}
    default_outcome: allow
    exception_route_id: route_finance
    publish: true
    grants: [AGENT]
"""


def run(path: Path, *args: str) -> str:
    out = io.StringIO()
    call_command("apply_config", str(path), *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_apply_config_creates_publishes_grants_and_is_idempotent(tmp_path: Path, make_agent: Any) -> None:
    agent, _ = make_agent("pricing-bot")
    path = tmp_path / "gov.yaml"
    path.write_text(CONFIG.replace("AGENT", "pricing-bot"))

    dry = run(path, "--dry-run")
    assert "[dry-run] would create policy discount_cap_v1" in dry and "Dry run: nothing was changed." in dry
    assert selectors.latest_version("discount_cap_v1") is None

    first = run(path)
    assert (
        "publish policy discount_cap_v1 v1" in first
        and "grant policy discount_cap_v1 to agent pricing-bot" in first
    )
    pv = selectors.latest_published("discount_cap_v1")
    assert (pv.version, pv.exception_route_id, pv.default_outcome) == (1, "route_finance", "allow")
    assert PolicyGrant.objects.filter(policy_id="discount_cap_v1", agent=agent).exists()

    second = run(path)
    assert "policy discount_cap_v1 unchanged (v1, published)" in second and "grant" not in second
    assert PolicyVersion.objects.filter(policy_id="discount_cap_v1").count() == 1

    path.write_text(
        CONFIG.replace("AGENT", "pricing-bot").replace("inputs.discount > 20", "inputs.discount > 25")
    )
    third = run(path)
    assert "publish policy discount_cap_v1 v2" in third
    assert selectors.latest_published("discount_cap_v1").rules[0]["when"] == "inputs.discount > 25"

    policy_authoring.policy_retire(actor=Actor.system("test"), policy_id="discount_cap_v1")
    fourth = run(path)
    assert "publish policy discount_cap_v1 v3" in fourth
    assert selectors.latest_published("discount_cap_v1").version == 3


@pytest.mark.django_db
def test_apply_config_refuses_bad_cel_and_changes_nothing(tmp_path: Path, make_agent: Any) -> None:
    make_agent("pricing-bot")
    path = tmp_path / "gov.yaml"
    path.write_text(
        CONFIG.replace("AGENT", "pricing-bot").replace("inputs.discount > 20", "inputs.discount >")
    )
    with pytest.raises(CommandError, match="rule 'too_big'"):
        run(path)
    assert selectors.latest_version("discount_cap_v1") is None
    path.write_text("nonsense: []\n")
    with pytest.raises(CommandError, match="unknown section"):
        run(path)


@pytest.mark.django_db
def test_demo_policy_requires_exception_for_refactors_and_seed_is_idempotent() -> None:
    demo.seed()
    demo.seed()
    pv = selectors.latest_published("code_change_policy_v1")
    assert PolicyVersion.objects.filter(policy_id="code_change_policy_v1").count() == 1
    agent = PolicyGrant.objects.get(policy_id="code_change_policy_v1").agent
    actor = Actor.for_agent(agent)
    decision = decision_services.decision_create(
        actor=actor,
        intent="code.refactor.execute",
        automation_mode="propose",
        metadata={"component": "user-service", "change_type": "refactor"},
    )
    outcomes = [
        policy_evaluation.decision_evaluate(
            actor=actor, decision_id=decision.decision_id, policy_id="code_change_policy_v1", inputs=inputs
        )["outcome"]
        for inputs in (
            {"change_type": "refactor", "component": "user-service"},
            {"change_type": "docs", "component": "user-service"},
            {"change_type": "delete", "component": "user-service"},
            {"change_type": "rewrite"},
        )
    ]
    assert outcomes == ["requires_exception", "allow", "deny", "deny"]
    assert pv.version == 1


@pytest.mark.django_db
def test_demo_policy_message_names_no_component_the_decision_is_not_about() -> None:
    """Issue 18: a refactor of billing must not read "refactors (e.g. of user-service) ..."."""
    demo.seed()
    agent = PolicyGrant.objects.get(policy_id="code_change_policy_v1").agent
    actor = Actor.for_agent(agent)
    decision = decision_services.decision_create(
        actor=actor, intent="code.refactor.execute", automation_mode="propose", metadata={}
    )
    result = policy_evaluation.decision_evaluate(
        actor=actor,
        decision_id=decision.decision_id,
        policy_id="code_change_policy_v1",
        inputs={"change_type": "refactor", "component": "billing"},
    )
    assert result["outcome"] == "requires_exception"
    assert "user-service" not in result["rationale"]["message"]
    assert result["rationale"]["message"] == "refactors need a reviewer's approval"
