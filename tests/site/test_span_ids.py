"""Issue 18 (audit): every request about a decision puts the decision id and the agent id on its
span, reads included (GET a decision, its trace, a wait), not only the calls that lock it. The
current span here is one of a local tracer provider, as the Django instrumentation's server span is
in a served process; the end-to-end export is tests/site/test_ops_tracing.py."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/decisions/{id}",
        "/api/v1/decisions/{id}/trace",
        "/api/v1/decisions/{id}/wait?timeout_seconds=0",
    ],
)
def test_a_read_of_a_decision_names_the_decision_and_agent_on_its_span(
    api: Any, agent_and_key: Any, path: str
) -> None:
    agent, _ = agent_and_key
    created = api.post("/api/v1/decisions", {"intent": "ops.span.check", "automation_mode": "autonomous"})
    assert created.status_code == 201, created.content
    decision_id = created.json()["decision_id"]
    tracer = TracerProvider().get_tracer("audit")
    with tracer.start_as_current_span("request") as span:
        answer = api.get(path.format(id=decision_id))
        assert answer.status_code == 200, answer.content
    assert span.attributes.get("tracemem.decision_id") == decision_id  # type: ignore[attr-defined]
    assert span.attributes.get("tracemem.agent_id") == agent.agent_id  # type: ignore[attr-defined]
