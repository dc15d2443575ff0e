"""Policies through the doors: decision_evaluate over MCP and REST, the admin API, Django admin."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from agents.services import tokens as agent_tokens
from decisions import services as decision_services
from decisions.models import TraceEvent
from policies import selectors
from policies.models import PolicyVersion
from policies.services import authoring as policy_authoring
from tests.mcp_helpers import DOORS, call_tool, error_code, shape
from tests.perm_helpers import make_staff
from tracemem_core.actor import Actor

SYSTEM = Actor.system("test")
CODE_POLICY: dict[str, Any] = {
    "name": "Code change policy",
    "inputs_schema": {"type": "object", "required": ["change_type"]},
    "rules": [
        {
            "name": "refactor_needs_exception",
            "when": 'inputs.change_type == "refactor"',
            "outcome": "requires_exception",
            "message": "refactors need a human",
        }
    ],
    "exception_route_id": "route_eng",
}


def published(policy_id: str = "code_change_policy_v1", agent: Any = None) -> PolicyVersion:
    policy_authoring.policy_create(actor=SYSTEM, policy_id=policy_id, definition=CODE_POLICY)
    pv = policy_authoring.policy_publish(actor=SYSTEM, policy_id=policy_id)
    if agent is not None:
        policy_authoring.policy_grant(actor=SYSTEM, policy_id=policy_id, agent_id=agent.agent_id)
    return pv


def open_decision(agent: Any) -> str:
    return decision_services.decision_create(
        actor=Actor.for_agent(agent), intent="code.refactor.execute", automation_mode="propose"
    ).decision_id


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("door", DOORS)
def test_decision_evaluate_contract(door: str, live_server: Any, make_agent: Any) -> None:
    agent, key = make_agent()
    pv = published(agent=agent)
    did = open_decision(agent)
    is_error, value = call_tool(
        door,
        live_server,
        key,
        "decision_evaluate",
        {"decision_id": did, "policy": "code_change_policy_v1", "inputs": {"change_type": "refactor"}},
    )
    assert not is_error, value
    assert shape(value) == {
        "event_id": "<str>",
        "policy_id": "code_change_policy_v1",
        "policy_version": 1,
        "policy_hash": pv.hash,
        "outcome": "requires_exception",
        "rationale": {"message": "refactors need a human", "rule": "refactor_needs_exception"},
        "allowed": False,
        "requires_approval": True,
        "approval_route_id": "route_eng",
    }
    assert TraceEvent.objects.get(event_id=value["event_id"]).payload["outcome"] == "requires_exception"

    # fail closed: the refusal code is the same on both doors and the failed attempt is in the trace
    is_error, text = call_tool(
        door,
        live_server,
        key,
        "decision_evaluate",
        {"decision_id": did, "policy_id": "code_change_policy_v1", "inputs": {}},
    )
    assert is_error and error_code(text) == "invalid_argument" and "change_type" in text
    events = list(TraceEvent.objects.filter(decision_id=did, type="evaluate").order_by("seq"))
    assert [e.payload["outcome"] for e in events] == ["requires_exception", "error"]

    # the commit gate of propose mode now refuses until an approval is granted
    is_error, text = call_tool(
        door, live_server, key, "decision_close", {"decision_id": did, "action": "commit"}
    )
    assert is_error and error_code(text) == "approval_required"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("door", DOORS)
def test_decision_evaluate_of_ungranted_policy_is_permission_denied(
    door: str, live_server: Any, make_agent: Any
) -> None:
    agent, key = make_agent()
    published()
    did = open_decision(agent)
    is_error, text = call_tool(
        door,
        live_server,
        key,
        "decision_evaluate",
        {"decision_id": did, "policy_id": "code_change_policy_v1", "inputs": {}},
    )
    assert is_error and error_code(text) == "permission_denied"
    assert not TraceEvent.objects.filter(decision_id=did, type="evaluate").exists()


@pytest.mark.django_db
def test_capabilities_get_lists_granted_policies(make_agent: Any) -> None:
    agent, key = make_agent()
    published(agent=agent)
    response = Client().get("/api/v1/capabilities", HTTP_AUTHORIZATION=f"Agent {key}")
    assert response.json()["permissions"]["policies"] == [
        {"policy_id": "code_change_policy_v1", "name": "Code change policy", "version": 1}
    ]


def admin_client(staff: bool = True) -> tuple[Client, dict[str, str]]:
    user = (
        make_staff("ada", password="pw")
        if staff
        else get_user_model().objects.create_user("bob", password="pw")
    )
    token = agent_tokens.personal_token_create(actor=SYSTEM, user=user).secret
    return Client(), {"HTTP_AUTHORIZATION": f"Token {token}"}


def send(client: Client, auth: dict[str, str], method: str, path: str, data: Any = None) -> Any:
    return client.generic(method, path, json.dumps(data or {}), content_type="application/json", **auth)


@pytest.mark.django_db
def test_admin_api_lifecycle_with_personal_token(make_agent: Any) -> None:
    agent, _ = make_agent()
    client, auth = admin_client()
    created = send(client, auth, "POST", "/api/v1/admin/policies", {"policy_id": "p_v1", **CODE_POLICY})
    assert (created.status_code, created.json()["status"], created.json()["version"]) == (201, "draft", 1)
    bad = send(
        client,
        auth,
        "PUT",
        "/api/v1/admin/policies/p_v1/draft",
        {**CODE_POLICY, "rules": [{"name": "x", "when": "(", "outcome": "deny"}]},
    )
    assert bad.status_code == 200  # a draft may be broken; publishing is what compiles
    refused = send(client, auth, "POST", "/api/v1/admin/policies/p_v1/publish")
    assert refused.status_code == 400 and refused.json()["error"]["details"]["rule"] == "x"
    send(client, auth, "PUT", "/api/v1/admin/policies/p_v1/draft", CODE_POLICY)
    pub = send(client, auth, "POST", "/api/v1/admin/policies/p_v1/publish").json()
    assert (pub["status"], len(pub["hash"])) == ("published", 64)
    tested = send(
        client, auth, "POST", "/api/v1/admin/policies/p_v1/test", {"inputs": {"change_type": "refactor"}}
    )
    assert tested.json()["outcome"] == "requires_exception"
    grant = send(client, auth, "POST", "/api/v1/admin/policies/p_v1/grants", {"agent_id": agent.agent_id})
    assert (grant.status_code, grant.json()["agent_id"]) == (201, agent.agent_id)
    # editing the published policy through the API creates v2; v1 stays exactly as published
    edited = send(
        client, auth, "PUT", "/api/v1/admin/policies/p_v1/draft", {**CODE_POLICY, "name": "Renamed"}
    ).json()
    assert (edited["version"], edited["status"]) == (2, "draft")
    detail = client.get("/api/v1/admin/policies/p_v1", **auth).json()
    assert [(v["version"], v["status"], v["name"], v["hash"]) for v in detail["versions"]] == [
        (2, "draft", "Renamed", None),
        (1, "published", "Code change policy", pub["hash"]),
    ]
    listing = client.get("/api/v1/admin/policies", **auth).json()["policies"]
    assert listing == [
        {
            "policy_id": "p_v1",
            "name": "Renamed",
            "status": "published",
            "version": 1,
            "hash": pub["hash"],
            "draft_version": 2,
        }
    ]


@pytest.mark.django_db
def test_admin_api_refuses_non_staff_and_changes_nothing() -> None:
    client, auth = admin_client(staff=False)
    created = send(client, auth, "POST", "/api/v1/admin/policies", {"policy_id": "p_v1", **CODE_POLICY})
    listing = client.get("/api/v1/admin/policies", **auth)
    assert (created.status_code, created.json()["error"]["code"]) == (403, "permission_denied")
    assert (listing.status_code, listing.json()["error"]["code"]) == (403, "permission_denied")
    assert selectors.latest_version("p_v1") is None


@pytest.mark.django_db
def test_django_admin_cannot_change_a_published_version() -> None:
    pv = published()
    user = get_user_model().objects.create_superuser("root", "r@example.com", "pw")
    client = Client()
    client.force_login(user)
    url = f"/admin/policies/policyversion/{pv.pk}/change/"
    assert client.get(url).status_code == 200  # viewable
    response = client.post(url, {"name": "hacked", "rules": "[]", "status": "draft"})
    assert response.status_code == 403
    pv.refresh_from_db()
    assert (pv.name, pv.status) == ("Code change policy", "published")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("body", "field", "phrase"),
    [
        ({"inputs": {}}, "policy_id", "policy_id is required"),
        (
            {"policy_id": "code_change_policy_v1", "inputs": "refactor"},
            "inputs",
            "inputs must be a JSON object",
        ),
        ({"policy_id": "code_change_policy_v1"}, "inputs", "exactly one of inputs"),
        ({"policy_id": 5, "inputs": {}}, "policy_id", "policy_id must be a string"),
    ],
)
def test_rest_evaluate_bad_shapes_are_invalid_argument(
    make_agent: Any, body: dict[str, Any], field: str, phrase: str
) -> None:
    agent, key = make_agent()
    published(agent=agent)
    did = open_decision(agent)
    response = Client().post(
        f"/api/v1/decisions/{did}/evaluate",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Agent {key}",
    )
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["details"]["field"]) == (
        400,
        "invalid_argument",
        field,
    )
    assert phrase in error["message"]
    assert not TraceEvent.objects.filter(decision_id=did, type="evaluate").exists()


@pytest.mark.django_db
def test_admin_api_accepts_a_staff_session_and_refuses_agent_keys(make_agent: Any) -> None:
    published()
    _, key = make_agent()
    client = Client()
    client.force_login(make_staff("ada", password="pw"))
    listing = client.get("/api/v1/admin/policies")
    assert (listing.status_code, [p["policy_id"] for p in listing.json()["policies"]]) == (
        200,
        ["code_change_policy_v1"],
    )
    as_agent = Client().get("/api/v1/admin/policies", HTTP_AUTHORIZATION=f"Agent {key}")
    assert (as_agent.status_code, as_agent.json()["error"]["code"]) == (401, "unauthenticated")


@pytest.mark.django_db
def test_schema_violation_messages_never_carry_the_inputs_values(make_agent: Any) -> None:
    from tests.conftest import AgentClient

    agent, key = make_agent()
    policy_authoring.policy_create(
        actor=SYSTEM,
        policy_id="schema_v1",
        definition={
            "name": "S",
            "inputs_schema": {
                "type": "object",
                "properties": {"password": {"type": "string", "maxLength": 3}, "note": {"enum": ["a"]}},
            },
            "rules": [{"name": "r", "when": "true", "outcome": "allow", "message": ""}],
        },
    )
    policy_authoring.policy_publish(actor=SYSTEM, policy_id="schema_v1")
    policy_authoring.policy_grant(actor=SYSTEM, policy_id="schema_v1", agent_id=agent.agent_id)
    did = open_decision(agent)
    api = AgentClient(key)
    secret_token = "ghp_" + "a" * 30 + " tail"
    cases = [
        ({"password": "hunter2secret"}, "hunter2secret", "inputs.password: too long (maxLength 3)"),
        ({"note": secret_token}, "a" * 30, "inputs.note: not one of the allowed values (enum)"),
    ]
    for inputs, secret, problem in cases:
        response = api.post(f"/api/v1/decisions/{did}/evaluate", {"policy_id": "schema_v1", "inputs": inputs})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "invalid_argument"
        assert error["message"] == (
            f"policy schema_v1 v1 could not be evaluated: {problem}; the policy's inputs_schema refused it; "
            "nothing was allowed (the failed attempt is in the trace): fix the inputs and try again"
        )
        assert secret not in response.content.decode()
    events = list(TraceEvent.objects.filter(decision_id=did, type="evaluate").order_by("seq"))
    assert [e.payload["error"]["kind"] for e in events] == ["schema_violation", "schema_violation"]
    assert [e.payload["rationale"]["message"] for e in events] == [
        "inputs.password: too long (maxLength 3); the policy's inputs_schema refused it",
        "inputs.note: not one of the allowed values (enum); the policy's inputs_schema refused it",
    ]
    stored = json.dumps([e.payload for e in events])
    assert "hunter2secret" not in stored and "a" * 30 not in stored


@pytest.fixture
def recording_http_server() -> Any:
    """A real local HTTP server that records every request it gets (it must get none)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            body = b'{"type": "string"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", hits
    server.shutdown()
    server.server_close()


@pytest.mark.django_db
def test_inputs_schema_refs_outside_the_schema_or_dangling_are_refused_without_fetching(
    recording_http_server: Any,
) -> None:
    base, hits = recording_http_server
    client, auth = admin_client()
    rules = [{"name": "r", "when": "true", "outcome": "allow", "message": ""}]
    created = send(
        client, auth, "POST", "/api/v1/admin/policies", {"policy_id": "p_v1", "name": "P", "rules": rules}
    )
    assert created.status_code == 201
    cases = [
        (
            {"$ref": f"{base}/s.json"},
            f"inputs_schema is not a valid JSON Schema at (root): $ref '{base}/s.json' is not a local reference; "
            "only references inside the schema (e.g. #/$defs/name) are allowed; fix the draft and publish again",
        ),
        (
            {"type": "object", "properties": {"x": {"$ref": "#/nope"}}},
            "inputs_schema cannot be used: Pointer '/nope' does not exist; fix the draft and publish again",
        ),
    ]
    for schema, message in cases:
        saved = send(
            client,
            auth,
            "PUT",
            "/api/v1/admin/policies/p_v1/draft",
            {"name": "P", "rules": rules, "inputs_schema": schema},
        )
        assert saved.status_code == 200  # a draft may be broken; publishing is what compiles
        for path, body in (("publish", {}), ("test", {"inputs": {"x": "a"}})):
            response = send(client, auth, "POST", f"/api/v1/admin/policies/p_v1/{path}", body)
            assert response.status_code == 400, response.content
            error = response.json()["error"]
            assert (error["code"], error["message"], error["details"]["field"]) == (
                "invalid_argument",
                message,
                "inputs_schema",
            )
    assert selectors.latest_published("p_v1") is None
    assert hits == []
