"""Run inside a subprocess with no DATABASE_URL/REDIS_URL: the docs/contract/story.md story on the embedded default.

Prints one line per step; exits non-zero on the first surprise. Driven by
tests/site/test_embedded_default.py after `manage.py migrate` and `manage.py seed_demo`.
"""

from __future__ import annotations

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracemem_site.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402

from agents.models import Agent  # noqa: E402
from agents.services import registry as agent_registry  # noqa: E402
from agents.services import tokens as agent_tokens  # noqa: E402
from tracemem_core.actor import Actor  # noqa: E402

assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3", "not the embedded default"
assert settings.CELERY_TASK_ALWAYS_EAGER, "tasks must run inline on the embedded default"

agent = Agent.objects.get(name="demo-agent")
key = agent_registry.agent_key_issue(actor=Actor.system(), agent=agent, name="smoke").secret
token = agent_tokens.personal_token_create(
    actor=Actor.system(), user=get_user_model().objects.get(username="admin")
).secret
client = Client(HTTP_HOST="127.0.0.1")
agent_headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"}


def call(
    method: str, path: str, body: dict | None = None, headers: dict | None = None, expect: int = 200
) -> dict:
    kwargs = {**(headers or agent_headers)}
    if method == "get":
        response = client.get(path, **kwargs)
    else:
        response = client.post(path, json.dumps(body or {}), content_type="application/json", **kwargs)
    if response.status_code != expect:
        sys.exit(f"{method.upper()} {path} -> {response.status_code} {response.content[:300]!r}")
    return response.json()


d = call(
    "post",
    "/api/v1/decisions",
    {
        "intent": "code.refactor.execute",
        "automation_mode": "propose",
        "metadata": {"api_key": "sk-live-abcdefghijklmnop1234"},
    },
    expect=201,
)["decision_id"]
print("created", d)
call("post", f"/api/v1/decisions/{d}/context", {"context": {"step": "extracting_auth_logic"}}, expect=201)
evaluation = call(
    "post",
    f"/api/v1/decisions/{d}/evaluate",
    {
        "policy_id": "code_change_policy_v1",
        "inputs": {"change_type": "refactor", "component": "user-service"},
    },
)
print("evaluate", evaluation["outcome"])
approval = call(
    "post", f"/api/v1/decisions/{d}/approvals", {"title": "Refactoring Approval Required"}, expect=201
)
print("approval", approval["status"], approval["delivery"]["status"])
call(
    "post",
    f"/api/v1/approvals/{approval['approval_id']}/approve",
    {"rationale": "reviewed"},
    headers={"HTTP_AUTHORIZATION": f"Token {token}"},
)
print("decision", call("get", f"/api/v1/decisions/{d}")["status"])
written = call(
    "post",
    f"/api/v1/decisions/{d}/write",
    {
        "product": "pg_orders_insert_v1",
        "purpose": "order_processing",
        "mutation": {"data": {"customer_id": 1, "amount": 12.5, "status": "new"}},
    },
)
print("write", written["status"], written["affected_rows"])
print("close", call("post", f"/api/v1/decisions/{d}/close", {"action": "commit", "reason": "done"})["status"])
trace = call("get", f"/api/v1/decisions/{d}/trace")
print("secret stored", "sk-live-abcdefghijklmnop1234" in json.dumps(trace))
print("receipt", call("get", f"/api/v1/decisions/{d}/receipt")["algorithm"])
print("DECISION", d)
