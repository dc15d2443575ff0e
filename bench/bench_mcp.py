"""Per tool call: REST vs MCP stock transport vs MCP fast path (Django test client, in-process).

Every request goes through the full Django stack (middleware, DRF auth with a real agent key,
PostgreSQL). Rows: one per tool and door, p50/p95 in ms, and the ratio to REST.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bench.common import django_setup, iterations, measure, tool_call


def run() -> list[dict[str, Any]]:
    django_setup()
    from django.conf import settings
    from django.test import Client
    from django.urls import clear_url_caches

    from agents.services import registry as agent_registry
    from decisions import services
    from tracemem_core.actor import Actor

    settings.ROOT_URLCONF = "bench.urls"
    clear_url_caches()
    agent, _ = agent_registry.agent_get_or_create(actor=Actor.system(), name="bench-agent")
    key = agent_registry.agent_key_issue(actor=Actor.system(), agent=agent).secret
    actor = Actor.for_agent(agent)
    did = services.decision_create(
        actor=actor, intent="bench.run.measure", automation_mode="autonomous"
    ).decision_id

    client = Client()
    auth = {"HTTP_AUTHORIZATION": f"Agent {key}", "HTTP_ACCEPT": "application/json, text/event-stream"}

    def rest(method: str, path: str, body: dict[str, Any] | None = None) -> Callable[[], Any]:
        def call() -> Any:
            if method == "GET":
                response = client.get(path, **auth)
            else:
                response = client.post(path, json.dumps(body), content_type="application/json", **auth)
            assert response.status_code < 300, response.content
            return response

        return call

    def mcp(endpoint: str, tool: str, arguments: dict[str, Any]) -> Callable[[], Any]:
        message = json.dumps(tool_call(tool, arguments))

        def call() -> Any:
            response = client.post(endpoint, message, content_type="application/json", **auth)
            assert response.status_code == 200 and b'"isError":false' in response.content, response.content
            return response

        return call

    create = {"intent": "bench.run.measure", "automation_mode": "autonomous"}
    context = {"context": {"step": "measuring", "n": 1}}
    cases: list[tuple[str, Callable[[], Any], str, dict[str, Any]]] = [
        ("capabilities_get", rest("GET", "/api/v1/capabilities"), "capabilities_get", {}),
        ("decision_get", rest("GET", f"/api/v1/decisions/{did}"), "decision_get", {"decision_id": did}),
        ("decision_create", rest("POST", "/api/v1/decisions", create), "decision_create", create),
        (
            "decision_add_context",
            rest("POST", f"/api/v1/decisions/{did}/context", context),
            "decision_add_context",
            {"decision_id": did, **context},
        ),
    ]
    n = iterations()
    rows: list[dict[str, Any]] = []
    for case, rest_call, tool, arguments in cases:
        results = {
            "rest": measure(rest_call, n),
            "mcp_stock": measure(mcp("/mcp-stock", tool, arguments), n),
            "mcp_fast": measure(mcp("/mcp", tool, arguments), n),
        }
        base = results["rest"]["p50_ms"]
        for door, stats in results.items():
            rows.append(
                {
                    "case": case,
                    "door": door,
                    **stats,
                    "vs_rest_p50": f"{stats['p50_ms'] / base:.2f}x",
                }
            )
    return rows
