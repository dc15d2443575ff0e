"""The OpenAPI document describes what every endpoint answers (issue 16): no success response is a
bare ``object`` without properties (the old ``responses={200: dict}``), and the 15 agent operations'
real answers validate against it (tests/test_inputs_contract.py)."""

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
