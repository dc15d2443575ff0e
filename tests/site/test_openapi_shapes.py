"""The OpenAPI document describes what every endpoint answers (issue 16): no success response is a
bare ``object`` without properties (the old ``responses={200: dict}``), and the agent operations'
real answers validate against it (tests/mcp_door/test_inputs_contract.py)."""

from __future__ import annotations

from typing import Any

from django.test import Client


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _resolve(schema["allOf"][0], document)
    return schema


def _bare(schema: dict[str, Any], document: dict[str, Any]) -> bool:
    schema = _resolve(schema, document)
    if schema.get("type") == "array":
        return _bare(schema.get("items", {}), document)
    return schema.get("type", "object") == "object" and not schema.get("properties") and "anyOf" not in schema


def test_no_success_response_is_a_bare_object(db: Any) -> None:
    document = Client().get("/api/schema/?format=json").json()
    answers, bare = 0, []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation.get("responses", {}).items():
                if not status.startswith("2") or "content" not in response:
                    continue
                answers += 1
                for media, body in response["content"].items():
                    if _bare(body["schema"], document):
                        bare.append(f"{method.upper()} {path} {status} {media} ({operation['operationId']})")
    assert answers >= 60
    assert bare == [], "\n".join(bare)


def test_admin_and_reviewer_answers_are_what_the_document_says(db: Any, make_agent: Any) -> None:
    """Real answers of the admin, reviewer and evidence endpoints validate against their documented
    shapes (the shapes refuse properties they do not name, so a new field must be documented)."""
    import jsonschema

    from products import demo as product_demo
    from tests.mcp_door.test_inputs_contract import _json_schema
    from tests.perm_helpers import make_staff, token_for
    from tests.ui_scenario import decision_needing_approval, make_route
    from tracemem_core.actor import Actor

    agent, _ = make_agent("shapes")
    product_demo.products_seed_demo(actor=Actor.system("test"), agent=agent)
    make_route()
    decision, approval = decision_needing_approval(agent)
    admin = make_staff("shapes-admin", is_superuser=True)
    client = Client(HTTP_AUTHORIZATION=f"Token {token_for(admin)}")
    document = client.get("/api/schema/?format=json").json()
    components = _json_schema(document["components"])
    paths = {
        "/api/v1/admin/agents": {},
        "/api/v1/admin/agents/{agent_id}": {"agent_id": agent.agent_id},
        "/api/v1/admin/products": {},
        "/api/v1/admin/products/{product_id}": {"product_id": "pg_customers_v1"},
        "/api/v1/admin/data-sources": {},
        "/api/v1/admin/policies": {},
        "/api/v1/admin/policies/{policy_id}": {"policy_id": "refund_policy"},
        "/api/v1/admin/policies/{policy_id}/grants": {"policy_id": "refund_policy"},
        "/api/v1/admin/routes": {},
        "/api/v1/admin/routes/{route_id}": {"route_id": "route_refunds"},
        "/api/v1/admin/webhook-endpoints": {},
        "/api/v1/admin/integrations": {},
        "/api/v1/approvals": {},
        "/api/v1/approvals/{approval_id}": {"approval_id": approval.approval_id},
        "/api/v1/decisions/{decision_id}/evidence": {"decision_id": decision.decision_id},
    }
    for template, params in paths.items():
        response = client.get(template.format(**params))
        assert response.status_code == 200, (template, response.content)
        schema = _json_schema(
            document["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        )
        jsonschema.validate(response.json(), {"allOf": [schema], "components": components})
