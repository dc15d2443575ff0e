"""Policies: authoring, publishing, evaluation semantics, fail-closed, grants, replay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, transaction

from decisions import services as decision_services
from decisions.integrity import decision_problems
from decisions.models import Decision, TraceEvent
from policies import config as policy_config
from policies import engine, selectors
from policies.models import PolicyVersion
from policies.services import authoring as policy_authoring
from policies.services import console as policy_console
from policies.services import evaluation as policy_evaluation
from tracemem_core import crypto
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, InvalidState, NotFound, PermissionDenied, PolicyDenied

SYSTEM = Actor.system("test")

CODE_POLICY: dict[str, Any] = {
    "name": "Code change policy",
    "inputs_schema": {
        "type": "object",
        "properties": {"change_type": {"type": "string"}, "component": {"type": "string"}},
        "required": ["change_type"],
    },
    "rules": [
        {
            "name": "no_prod_deletes",
            "when": 'inputs.change_type == "delete"',
            "outcome": "deny",
            "message": "no",
        },
        {
            "name": "refactor_needs_exception",
            "when": 'inputs.change_type == "refactor"',
            "outcome": "requires_exception",
            "message": "refactors need a human",
        },
        {
            "name": "docs_ok",
            "when": 'inputs.change_type == "docs"',
            "outcome": "allow",
            "message": "docs are fine",
        },
    ],
    "exception_route_id": "route_eng",
}


def publish(policy_id: str, definition: dict[str, Any], grant_to: Any = None) -> PolicyVersion:
    if selectors.latest_version(policy_id) is None:
        policy_authoring.policy_create(actor=SYSTEM, policy_id=policy_id, definition=definition)
    else:
        policy_authoring.policy_draft_save(actor=SYSTEM, policy_id=policy_id, definition=definition)
    pv = policy_authoring.policy_publish(actor=SYSTEM, policy_id=policy_id)
    if grant_to is not None:
        policy_authoring.policy_grant(actor=SYSTEM, policy_id=policy_id, agent_id=grant_to.agent_id)
    return pv


def new_decision(actor: Actor, mode: str = "autonomous", metadata: dict[str, Any] | None = None) -> Decision:
    return decision_services.decision_create(
        actor=actor, intent="code.refactor.execute", automation_mode=mode, metadata=metadata or {}
    )


def evaluate(actor: Actor, decision: Decision, policy_id: str, inputs: Any) -> dict[str, Any]:
    return policy_evaluation.decision_evaluate(
        actor=actor, decision_id=decision.decision_id, policy_id=policy_id, inputs=inputs
    )


def evaluate_events(decision: Decision) -> list[TraceEvent]:
    return list(TraceEvent.objects.filter(decision=decision, type="evaluate").order_by("seq"))


@pytest.mark.django_db
def test_first_matching_rule_decides_in_order(agent_actor: Actor) -> None:
    publish(
        "order_v1",
        {
            "name": "Order",
            "rules": [
                {"name": "big", "when": "inputs.amount > 100", "outcome": "deny", "message": "too big"},
                {"name": "positive", "when": "inputs.amount > 0", "outcome": "allow", "message": "ok"},
            ],
        },
        grant_to=agent_actor.agent,
    )
    decision = new_decision(agent_actor)
    first = evaluate(agent_actor, decision, "order_v1", {"amount": 500})
    second = evaluate(agent_actor, decision, "order_v1", {"amount": 5})
    assert (first["outcome"], first["rationale"]) == ("deny", {"message": "too big", "rule": "big"})
    assert (second["outcome"], second["rationale"]["rule"], second["allowed"]) == ("allow", "positive", True)


@pytest.mark.django_db
def test_default_outcome_is_deny_unless_set(agent_actor: Actor) -> None:
    rules = [{"name": "never", "when": "false", "outcome": "allow", "message": ""}]
    publish("dflt_v1", {"name": "D", "rules": rules}, grant_to=agent_actor.agent)
    publish(
        "dflt_allow_v1", {"name": "D", "rules": rules, "default_outcome": "allow"}, grant_to=agent_actor.agent
    )
    decision = new_decision(agent_actor)
    denied = evaluate(agent_actor, decision, "dflt_v1", {})
    allowed = evaluate(agent_actor, decision, "dflt_allow_v1", {})
    assert (denied["outcome"], denied["rationale"]["rule"], denied["allowed"]) == ("deny", None, False)
    assert (allowed["outcome"], allowed["allowed"]) == ("allow", True)


@pytest.mark.django_db
def test_now_and_decision_variables_are_visible_to_conditions(agent_actor: Actor) -> None:
    publish(
        "ctx_v1",
        {
            "name": "Ctx",
            "rules": [
                {
                    "name": "propose_user_service",
                    "when": 'decision.automation_mode == "propose" && decision.metadata.component == "user-service" '
                    '&& decision.intent.startsWith("code.") && now > timestamp("2020-01-01T00:00:00Z")',
                    "outcome": "allow",
                    "message": "",
                },
                {
                    "name": "future",
                    "when": 'now > timestamp("2999-01-01T00:00:00Z")',
                    "outcome": "allow",
                    "message": "",
                },
            ],
        },
        grant_to=agent_actor.agent,
    )
    matching = new_decision(agent_actor, "propose", {"component": "user-service"})
    other = new_decision(agent_actor, "autonomous", {"component": "user-service"})
    assert evaluate(agent_actor, matching, "ctx_v1", {})["rationale"]["rule"] == "propose_user_service"
    assert evaluate(agent_actor, other, "ctx_v1", {})["outcome"] == "deny"


@pytest.mark.django_db
def test_evaluate_records_event_and_gating_facts(agent_actor: Actor) -> None:
    pv = publish("code_v1", CODE_POLICY, grant_to=agent_actor.agent)
    decision = new_decision(agent_actor)
    out = evaluate(agent_actor, decision, "code_v1", {"change_type": "refactor", "component": "user-service"})
    assert out == {
        "event_id": out["event_id"],
        "policy_id": "code_v1",
        "policy_version": 1,
        "policy_hash": pv.hash,
        "outcome": "requires_exception",
        "rationale": {"message": "refactors need a human", "rule": "refactor_needs_exception"},
        "allowed": False,
        "requires_approval": True,
        "approval_route_id": "route_eng",
    }
    (event,) = evaluate_events(decision)
    assert event.event_id == out["event_id"]
    assert event.payload["inputs"] == {"change_type": "refactor", "component": "user-service"}
    assert (event.payload["policy_version"], event.payload["policy_hash"], event.payload["source"]) == (
        1,
        pv.hash,
        "agent",
    )
    recorded_now = datetime.fromisoformat(event.payload["now"].replace("Z", "+00:00"))
    assert event.timestamp - timedelta(seconds=5) < recorded_now <= event.timestamp
    decision.refresh_from_db()
    assert (decision.last_exception_seq, decision.exception_route_id) == (event.seq, "route_eng")


@pytest.mark.django_db
def test_inputs_are_redacted_in_the_trace(agent_actor: Actor) -> None:
    publish("code_v1", CODE_POLICY, grant_to=agent_actor.agent)
    decision = new_decision(agent_actor)
    evaluate(agent_actor, decision, "code_v1", {"change_type": "docs", "password": "hunter2"})
    assert evaluate_events(decision)[0].payload["inputs"] == {"change_type": "docs", "password": "[redacted]"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("inputs", "kind", "phrase"),
    [
        (
            {"component": "x"},
            "schema_violation",
            "inputs: missing required property 'change_type' (required)",
        ),
        ({"change_type": 5}, "schema_violation", "inputs.change_type: must be of type string (type)"),
    ],
)
def test_schema_violation_fails_closed_and_is_recorded(
    agent_actor: Actor, inputs: dict[str, Any], kind: str, phrase: str
) -> None:
    publish("code_v1", CODE_POLICY, grant_to=agent_actor.agent)
    decision = new_decision(agent_actor)
    with pytest.raises(InvalidArgument) as caught:
        evaluate(agent_actor, decision, "code_v1", inputs)
    assert phrase in str(caught.value) and str(caught.value).startswith("[invalid_argument]")
    (event,) = evaluate_events(decision)
    assert (event.payload["outcome"], event.payload["allowed"], event.payload["error"]["kind"]) == (
        "error",
        False,
        kind,
    )
    assert caught.value.details["event_id"] == event.event_id
    decision.refresh_from_db()
    assert (decision.last_deny_seq, decision.last_exception_seq) == (None, None)
    assert decision_problems(decision) == []  # the chain stays intact


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("when", "inputs", "kind", "phrase"),
    [
        ("inputs.amount > 10", {}, "missing_variable", "missing variable amount"),
        ("inputs.amount > 10", {"amount": "ten"}, "type_error", "type error"),
        ("inputs.amount", {"amount": 3}, "type_error", "must be true or false"),
    ],
)
def test_evaluation_errors_fail_closed_never_allow(
    agent_actor: Actor, when: str, inputs: dict[str, Any], kind: str, phrase: str
) -> None:
    # default allow: an error must still not allow
    publish(
        "amt_v1",
        {
            "name": "A",
            "rules": [{"name": "cap", "when": when, "outcome": "deny", "message": ""}],
            "default_outcome": "allow",
        },
        grant_to=agent_actor.agent,
    )
    decision = new_decision(agent_actor)
    with pytest.raises(InvalidArgument) as caught:
        evaluate(agent_actor, decision, "amt_v1", inputs)
    assert phrase in str(caught.value)
    (event,) = evaluate_events(decision)
    assert event.payload["outcome"] == "error" and event.payload["allowed"] is False
    assert event.payload["error"]["kind"] == kind and event.payload["error"]["rule"] == "cap"


@pytest.mark.django_db
def test_publish_refuses_bad_cel_with_rule_and_position() -> None:
    policy_authoring.policy_create(
        actor=SYSTEM,
        policy_id="bad_v1",
        definition={"name": "B", "rules": [{"name": "broken", "when": "inputs.a ==", "outcome": "deny"}]},
    )
    with pytest.raises(InvalidArgument) as caught:
        policy_authoring.policy_publish(actor=SYSTEM, policy_id="bad_v1")
    assert "rule 'broken'" in str(caught.value) and "line 1, column 12" in str(caught.value)
    assert caught.value.details["position"] == {"line": 1, "column": 12}
    assert selectors.latest_published("bad_v1") is None
    assert selectors.draft_of("bad_v1").status == "draft"


@pytest.mark.django_db
def test_publish_refuses_invalid_inputs_schema() -> None:
    policy_authoring.policy_create(
        actor=SYSTEM, policy_id="sch_v1", definition={"name": "S", "inputs_schema": {"type": 12}}
    )
    with pytest.raises(InvalidArgument, match="inputs_schema is not a valid JSON Schema"):
        policy_authoring.policy_publish(actor=SYSTEM, policy_id="sch_v1")
    assert selectors.latest_published("sch_v1") is None


@pytest.mark.django_db
def test_editing_a_published_policy_creates_the_next_draft() -> None:
    v1 = publish("code_v1", CODE_POLICY)
    draft = policy_authoring.policy_draft_save(
        actor=SYSTEM, policy_id="code_v1", definition={**CODE_POLICY, "name": "New"}
    )
    v1.refresh_from_db()
    assert (draft.version, draft.status, v1.status, v1.name) == (
        2,
        "draft",
        "published",
        "Code change policy",
    )
    v2 = policy_authoring.policy_publish(actor=SYSTEM, policy_id="code_v1")
    v1.refresh_from_db()
    assert (v2.status, v1.status, v1.hash) == ("published", "retired", v1.hash)
    assert v2.hash != v1.hash and len(v2.hash) == 64


@pytest.mark.django_db
def test_the_database_refuses_changes_to_published_versions() -> None:
    v1 = publish("code_v1", CODE_POLICY)
    with pytest.raises(DatabaseError, match="frozen"), transaction.atomic():
        PolicyVersion.objects.filter(pk=v1.pk).update(rules=[])
    with pytest.raises(DatabaseError, match="frozen"), transaction.atomic():
        PolicyVersion.objects.filter(pk=v1.pk).update(status="draft")
    with pytest.raises(DatabaseError, match="frozen"), transaction.atomic():
        PolicyVersion.objects.filter(pk=v1.pk).delete()
    v1.refresh_from_db()
    assert (v1.rules, v1.status) == (CODE_POLICY["rules"], "published")


@pytest.mark.django_db
def test_trace_pins_version_and_hash_after_newer_version_is_published(agent_actor: Actor) -> None:
    v1 = publish("code_v1", CODE_POLICY, grant_to=agent_actor.agent)
    decision = new_decision(agent_actor)
    first = evaluate(agent_actor, decision, "code_v1", {"change_type": "refactor"})
    changed = {
        **CODE_POLICY,
        "rules": [{"name": "all_ok", "when": "true", "outcome": "allow", "message": "ok"}],
    }
    v2 = publish("code_v1", changed)
    second = evaluate(agent_actor, decision, "code_v1", {"change_type": "refactor"})  # cache keyed by hash
    events = evaluate_events(decision)
    assert [
        (e.payload["policy_version"], e.payload["policy_hash"], e.payload["outcome"]) for e in events
    ] == [
        (1, v1.hash, "requires_exception"),
        (2, v2.hash, "allow"),
    ]
    assert (first["policy_hash"], second["policy_hash"]) == (v1.hash, v2.hash)
    assert engine.cache_contains(v2.hash)


@pytest.mark.django_db
def test_ungranted_policy_is_permission_denied_and_records_nothing(agent_actor: Actor) -> None:
    publish("code_v1", CODE_POLICY)
    decision = new_decision(agent_actor)
    with pytest.raises(PermissionDenied, match="not granted"):
        evaluate(agent_actor, decision, "code_v1", {"change_type": "docs"})
    assert evaluate_events(decision) == []


@pytest.mark.django_db
def test_capabilities_lists_granted_published_policies(agent_actor: Actor, make_agent: Any) -> None:
    other, _ = make_agent("other")
    publish("code_v1", CODE_POLICY, grant_to=agent_actor.agent)
    publish("code_v1", {**CODE_POLICY, "name": "Code change policy 2"})
    publish("other_v1", CODE_POLICY, grant_to=other)
    assert selectors.granted_policies(agent_actor.agent) == [
        {"policy_id": "code_v1", "name": "Code change policy 2", "version": 2}
    ]


@pytest.mark.django_db
def test_exactly_one_of_inputs_or_inputs_ref(agent_actor: Actor) -> None:
    publish("code_v1", CODE_POLICY, grant_to=agent_actor.agent)
    decision = new_decision(agent_actor)
    for kwargs in ({}, {"inputs": {}, "inputs_ref": "evt_x"}):
        with pytest.raises(InvalidArgument, match="exactly one of inputs"):
            policy_evaluation.decision_evaluate(
                actor=agent_actor, decision_id=decision.decision_id, policy_id="code_v1", **kwargs
            )
    with pytest.raises(InvalidArgument, match="must be a read event"):
        created = TraceEvent.objects.get(decision=decision, seq=1)
        policy_evaluation.decision_evaluate(
            actor=agent_actor,
            decision_id=decision.decision_id,
            policy_id="code_v1",
            inputs_ref=created.event_id,
        )
    assert evaluate_events(decision) == []


@pytest.mark.django_db
def test_admin_operations_need_staff(make_agent: Any) -> None:
    user = get_user_model().objects.create_user("bob", password="x")
    with pytest.raises(PermissionDenied):
        policy_authoring.policy_create(actor=Actor.for_user(user), policy_id="p_v1", definition={"name": "P"})
    assert selectors.latest_version("p_v1") is None


@pytest.mark.django_db
def test_replay_reports_exactly_the_flipping_evaluations(agent_actor: Actor) -> None:
    publish("code_v1", CODE_POLICY, grant_to=agent_actor.agent)
    decision = new_decision(agent_actor)
    evaluate(agent_actor, decision, "code_v1", {"change_type": "docs"})  # allow -> allow
    flip_refactor = evaluate(agent_actor, decision, "code_v1", {"change_type": "refactor"})  # req -> allow
    evaluate(agent_actor, decision, "code_v1", {"change_type": "delete"})  # deny -> deny
    flip_other = evaluate(
        agent_actor, decision, "code_v1", {"change_type": "feature"}
    )  # deny (default) -> allow
    draft_rules = [
        CODE_POLICY["rules"][0],
        {"name": "all_else_ok", "when": "true", "outcome": "allow", "message": ""},
    ]
    policy_authoring.policy_draft_save(
        actor=SYSTEM, policy_id="code_v1", definition={**CODE_POLICY, "rules": draft_rules}
    )
    report = policy_console.policy_replay(actor=SYSTEM, policy_id="code_v1", limit=10)
    assert (report["replayed"], report["flipped"], report["published_version"], report["draft_version"]) == (
        4,
        2,
        1,
        2,
    )
    assert {(f["event_id"], f["before"], f["after"]) for f in report["flips"]} == {
        (flip_refactor["event_id"], "requires_exception", "allow"),
        (flip_other["event_id"], "deny", "allow"),
    }
    assert policy_console.policy_replay(actor=SYSTEM, policy_id="code_v1", limit=1)["replayed"] == 1


@pytest.mark.django_db
def test_policy_test_evaluates_the_draft_without_recording() -> None:
    publish("code_v1", CODE_POLICY)
    policy_authoring.policy_draft_save(
        actor=SYSTEM, policy_id="code_v1", definition={**CODE_POLICY, "default_outcome": "allow"}
    )
    out = policy_console.policy_test(actor=SYSTEM, policy_id="code_v1", inputs={"change_type": "feature"})
    assert (out["outcome"], out["policy_version"], out["status"], out["event_id"]) == (
        "allow",
        2,
        "draft",
        None,
    )
    with pytest.raises(InvalidArgument, match="required property"):
        policy_console.policy_test(actor=SYSTEM, policy_id="code_v1", inputs={})
    assert TraceEvent.objects.filter(type="evaluate").count() == 0


@pytest.mark.django_db
def test_publish_without_draft_is_invalid_state_and_unknown_policy_not_found() -> None:
    publish("code_v1", CODE_POLICY)
    with pytest.raises(InvalidState):
        policy_authoring.policy_publish(actor=SYSTEM, policy_id="code_v1")
    with pytest.raises(NotFound):
        policy_authoring.policy_publish(actor=SYSTEM, policy_id="nope")


@pytest.mark.django_db
def test_inputs_ref_uses_the_records_of_an_earlier_read(
    agent_actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(
        "rows_v1",
        {
            "name": "Rows",
            "rules": [
                {"name": "vip", "when": 'inputs.records[0].tier == "vip"', "outcome": "allow", "message": ""}
            ],
        },
        grant_to=agent_actor.agent,
    )
    decision = new_decision(agent_actor)
    with transaction.atomic():
        locked = decision_services.decision_lock(actor=agent_actor, decision_id=decision.decision_id)
        read = decision_services.trace_append(
            decision=locked, type="read", actor=agent_actor, payload={"product": "p_v1", "data_ref": "r1"}
        )
    seen: list[str] = []

    def resolver(event: TraceEvent, actor: Actor) -> list[dict[str, Any]] | None:
        assert actor == agent_actor
        seen.append(event.event_id)
        return [{"tier": "vip"}] if event.payload.get("data_ref") == "r1" else None

    monkeypatch.setattr(policy_evaluation, "_read_records_resolvers", [resolver])
    out = policy_evaluation.decision_evaluate(
        actor=agent_actor, decision_id=decision.decision_id, policy_id="rows_v1", inputs_ref=read.event_id
    )
    assert (out["outcome"], seen) == ("allow", [read.event_id])
    (event,) = evaluate_events(decision)
    # the records stay out of the trace: the read, the row count and their keyed digest instead
    assert "inputs" not in event.payload
    assert (event.payload["inputs_ref"], event.payload["rows"], event.payload["records_digest"]) == (
        read.event_id,
        1,
        crypto.keyed_digest([{"tier": "vip"}]),
    )
    # with no recorded inputs it cannot be replayed: counted as skipped, not as a flip to error
    policy_authoring.policy_draft_save(
        actor=SYSTEM, policy_id="rows_v1", definition={"name": "Rows", "rules": [], "default_outcome": "deny"}
    )
    report = policy_console.policy_replay(actor=SYSTEM, policy_id="rows_v1", limit=10)
    assert (report["replayed"], report["skipped"], report["flipped"]) == (0, 1, 0)

    monkeypatch.setattr(policy_evaluation, "_read_records_resolvers", [])
    with pytest.raises(InvalidArgument, match="not available any more"):
        policy_evaluation.decision_evaluate(
            actor=agent_actor, decision_id=decision.decision_id, policy_id="rows_v1", inputs_ref=read.event_id
        )


@pytest.mark.django_db
def test_programs_are_compiled_once_per_version_hash(
    agent_actor: Actor, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.cache_clear()
    compiles: list[str] = []
    real = engine.compile_policy

    def counting(content: dict[str, Any]) -> engine.CompiledPolicy:
        compiles.append(content["rules"][0]["when"])
        return real(content)

    monkeypatch.setattr(engine, "compile_policy", counting)
    v1 = publish("code_v1", CODE_POLICY, grant_to=agent_actor.agent)
    engine.cache_clear()  # as in another worker process: nothing cached yet
    decision = new_decision(agent_actor)
    for _ in range(3):
        evaluate(agent_actor, decision, "code_v1", {"change_type": "docs"})
    assert len(compiles) == 2 and engine.cache_contains(v1.hash)  # publish + first evaluation
    changed_rules = [
        {"name": "deny_docs", "when": 'inputs.change_type == "docs"', "outcome": "deny", "message": ""}
    ]
    publish("code_v1", {**CODE_POLICY, "rules": changed_rules})
    assert evaluate(agent_actor, decision, "code_v1", {"change_type": "docs"})["outcome"] == "deny"
    assert compiles[-1] == 'inputs.change_type == "docs"' and len(compiles) == 3


@pytest.mark.django_db
def test_retired_policy_cannot_be_evaluated_until_republished(agent_actor: Actor) -> None:
    v1 = publish("code_v1", CODE_POLICY, grant_to=agent_actor.agent)
    retired = policy_authoring.policy_retire(actor=SYSTEM, policy_id="code_v1")
    assert (retired.status, retired.hash) == ("retired", v1.hash)
    decision = new_decision(agent_actor)
    with pytest.raises(NotFound, match="no published version"):
        evaluate(agent_actor, decision, "code_v1", {"change_type": "docs"})
    assert evaluate_events(decision) == []
    assert selectors.granted_policies(agent_actor.agent) == []
    with pytest.raises(InvalidState):
        policy_authoring.policy_retire(actor=SYSTEM, policy_id="code_v1")
    with pytest.raises(DatabaseError, match="frozen"), transaction.atomic():
        PolicyVersion.objects.filter(pk=v1.pk).update(status="published")


@pytest.mark.django_db
def test_publish_refuses_unknown_variables_but_accepts_comprehension_binders() -> None:
    typo = [{"name": "typo", "when": "input.amount > 1", "outcome": "deny"}]
    policy_authoring.policy_create(actor=SYSTEM, policy_id="typo_v1", definition={"name": "T", "rules": typo})
    with pytest.raises(InvalidArgument, match="rule 'typo': unknown variable input"):
        policy_authoring.policy_publish(actor=SYSTEM, policy_id="typo_v1")
    fixed = [{"name": "any_big", "when": "inputs.rows.exists(r, r.amount > 1)", "outcome": "deny"}]
    policy_authoring.policy_draft_save(
        actor=SYSTEM, policy_id="typo_v1", definition={"name": "T", "rules": fixed}
    )
    assert policy_authoring.policy_publish(actor=SYSTEM, policy_id="typo_v1").status == "published"


@pytest.mark.django_db
def test_evaluate_in_closed_or_foreign_decision_is_refused(agent_actor: Actor, make_agent: Any) -> None:
    publish("code_v1", CODE_POLICY, grant_to=agent_actor.agent)
    other, _ = make_agent("other")
    foreign = new_decision(Actor.for_agent(other))
    with pytest.raises(NotFound):
        evaluate(agent_actor, foreign, "code_v1", {"change_type": "docs"})
    closed = new_decision(agent_actor)
    decision_services.decision_close(actor=agent_actor, decision_id=closed.decision_id, action="abort")
    with pytest.raises(InvalidState, match="aborted"):
        evaluate(agent_actor, closed, "code_v1", {"change_type": "docs"})
    with pytest.raises(InvalidState):  # a failed evaluation in a closed decision is refused the same way
        evaluate(agent_actor, closed, "code_v1", {})
    assert evaluate_events(foreign) == [] and evaluate_events(closed) == []


@pytest.mark.django_db
def test_deny_blocks_later_writes_of_an_autonomous_decision(agent_actor: Actor) -> None:
    publish("code_v1", CODE_POLICY, grant_to=agent_actor.agent)
    decision = new_decision(agent_actor, "autonomous")
    decision_services.ensure_writable(decision)  # nothing gates it yet
    out = evaluate(agent_actor, decision, "code_v1", {"change_type": "delete"})
    decision.refresh_from_db()
    assert decision.last_deny_seq == evaluate_events(decision)[0].seq and out["allowed"] is False
    with pytest.raises(PolicyDenied):
        decision_services.ensure_writable(decision)


def test_engine_converts_only_the_keys_rules_read_and_falls_back_to_whole_objects() -> None:
    def fields(when: str) -> Any:
        return engine.compile_policy({"rules": [{"name": "r", "when": when, "outcome": "deny"}]}).fields[
            "inputs"
        ]

    assert fields("inputs.a == 1 && has(inputs.b)") == {"a", "b"}
    assert fields('inputs["a"] == 1') is None
    assert fields("size(inputs) > 1") is None
    policy = engine.compile_policy(
        {"rules": [{"name": "r", "when": "has(inputs.b) || inputs.a == 1", "outcome": "allow"}]}
    )
    now = datetime.now(UTC)
    assert engine.evaluate(policy, inputs={"a": 1, "zzz": "x"}, decision={}, now=now).outcome == "allow"
    assert engine.evaluate(policy, inputs={"a": 2, "b": None}, decision={}, now=now).outcome == "allow"
    assert engine.evaluate(policy, inputs={"a": 2}, decision={}, now=now).outcome == "deny"


FLATTEN_CASES = [
    'inputs.change_type == "refactor"',
    'inputs.change_type in ["delete", "x"] || inputs.n > 3',
    "inputs.a.b == 1",
    "has(inputs.a)",
    'inputs.s == "inputs.a" && decision.automation_mode == "propose"',
    'decision.metadata.component == "user-service" && inputs.n >= 2',
    "inputs.rows.exists(r, r > 2)",
    "size(inputs) > 1",
    "inputs.s.startsWith('ab')",
    'now > timestamp("2020-01-01T00:00:00Z") && inputs.n == 3',
    "inputs.missing == 1 || inputs.n == 3",
    "inputs.n + 1",
    'decision.metadata.inputs == "x" || inputs.n == 3',
]


@pytest.mark.parametrize("when", FLATTEN_CASES)
def test_engine_outcomes_equal_plain_cel_evaluation(when: str) -> None:
    """The engine's optimisations (flattened ``inputs.key``, reduced maps) never change an outcome."""
    import cel

    now = datetime.now(UTC)
    decision = {
        "intent": "a.b",
        "automation_mode": "propose",
        "actor": "x",
        "metadata": {"component": "user-service"},
    }
    policy = engine.compile_policy({"rules": [{"name": "r", "when": when, "outcome": "allow"}]})
    for inputs in (
        {"change_type": "refactor", "n": 3, "a": {"b": 1}, "s": "abc", "rows": [1, 3]},
        {"change_type": "x", "n": 1, "s": "inputs.a", "rows": []},
        {"n": "str"},
    ):
        try:
            got = engine.evaluate(policy, inputs=inputs, decision=decision, now=now).outcome
        except engine.EvaluationError as exc:
            got = exc.kind
        try:
            value = cel.compile(when).execute({"inputs": inputs, "decision": decision, "now": now})
            expected = (
                {True: "allow", False: "deny"}.get(value, "type_error")
                if isinstance(value, bool)
                else "type_error"
            )
        except KeyError:
            expected = "missing_variable"
        except TypeError:
            expected = "type_error"
        assert got == expected, (when, inputs)


def test_flattening_never_rewrites_string_literals_or_foreign_fields() -> None:
    assert engine.flatten_source('inputs.a == "inputs.b"', "inputs") == '__inputs__a == "inputs.b"'
    assert engine.flatten_source("decision.metadata.inputs.x == 1 && inputs.y == 2", "inputs") is None
    assert engine.flatten_source('inputs.a == r"x"', "inputs") is None
    assert engine.flatten_source('inputs["a"] == 1', "inputs") is None


@pytest.mark.django_db
def test_grant_and_revoke_both_accept_an_agent_id_or_name(agent_actor: Actor) -> None:
    from policies.models import PolicyGrant

    agent = agent_actor.agent
    assert agent is not None
    publish("code_v1", CODE_POLICY)
    for ref in (agent.name, agent.agent_id):
        policy_authoring.policy_grant(actor=SYSTEM, policy_id="code_v1", agent_id=ref)
        assert list(PolicyGrant.objects.filter(policy_id="code_v1").values_list("agent_id", flat=True)) == [
            agent.agent_id
        ]
        assert policy_authoring.policy_grant_revoke(actor=SYSTEM, policy_id="code_v1", agent_id=ref) is True
        assert not PolicyGrant.objects.filter(policy_id="code_v1").exists()
    assert policy_authoring.policy_grant_revoke(actor=SYSTEM, policy_id="code_v1", agent_id="nobody") is False


@pytest.mark.django_db
@pytest.mark.parametrize("grants", ["agent-1", {"agent": "agent-1"}, [1]])
def test_apply_policies_refuses_grants_that_are_not_a_list_of_agents(agent_actor: Actor, grants: Any) -> None:
    with pytest.raises(InvalidArgument) as caught:
        policy_config.apply_policies(
            actor=SYSTEM, items=[{"policy_id": "p_v1", **CODE_POLICY, "grants": grants}], dry_run=False
        )
    assert caught.value.details["field"] == "grants"
    assert caught.value.message == "policy p_v1: grants must be a list of agent ids or names"
    assert selectors.latest_version("p_v1") is None


@pytest.mark.django_db
def test_policy_test_refuses_decision_metadata_that_is_not_an_object() -> None:
    publish("code_v1", CODE_POLICY)
    with pytest.raises(InvalidArgument) as caught:
        policy_console.policy_test(
            actor=SYSTEM, policy_id="code_v1", inputs={"change_type": "docs"}, decision={"metadata": 5}
        )
    assert (caught.value.details["field"], caught.value.message) == (
        "decision.metadata",
        "decision.metadata must be a JSON object, got number",
    )
    ok = policy_console.policy_test(
        actor=SYSTEM, policy_id="code_v1", inputs={"change_type": "docs"}, decision={"metadata": {"a": 1}}
    )
    assert ok["outcome"] == "allow"
