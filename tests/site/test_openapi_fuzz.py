"""Issue 13.1: schemathesis over the whole OpenAPI schema, once with an agent key and once with an
admin's personal token, against a real server (pytest-django's live_server): no 5xx anywhere.

Bounded so that CI spends about half a minute per run: a fixed number of examples per operation and a
time cap. ``TRACEMEM_FUZZ_SEED`` replays another seed; ``TRACEMEM_FUZZ_EXAMPLES`` runs longer.
Nothing leaves the machine: the schema has no operation that connects anywhere on save, and
email goes to Django's test outbox.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from agents.models import Agent
from agents.services import tokens as agent_tokens
from approvals.models import SlackIntegration, WebhookEndpoint
from approvals.services import credentials as approval_credentials
from approvals.services import requests as approval_requests
from decisions import services as decision_services
from policies.services import authoring as policy_authoring
from products import demo as product_demo
from products.demo import demo_tables_create
from tests.appr_helpers import make_route
from tests.ui_scenario import REFUND_POLICY, publish_refund_policy
from tracemem_core.actor import Actor

SEED = os.environ.get("TRACEMEM_FUZZ_SEED", "1313")
EXAMPLES = os.environ.get("TRACEMEM_FUZZ_EXAMPLES", "12")
MAX_SECONDS = os.environ.get("TRACEMEM_FUZZ_MAX_SECONDS", "35")


def write_config(workdir: Path, ids: dict[str, list[str]]) -> None:
    """Real identifiers for the path parameters most of the time, so that the fuzzer reaches the
    operations' logic instead of their 404 (schemathesis dictionaries, one per parameter)."""
    lines = []
    for name, values in ids.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = 0.8 }}' for name in ids]
    # decision_wait legitimately holds a request up to 50 s (default 25) on a decision whose approval
    # is pending, longer than the request timeout; the fuzzer looks for server errors, not waits.
    lines.append('"query.timeout_seconds" = 0')
    (workdir / "schemathesis.toml").write_text("\n".join(lines) + "\n")


def run_schemathesis(
    base_url: str, authorization: str, workdir: Path, only: list[str] | None = None
) -> subprocess.CompletedProcess[str]:
    st = Path(sys.executable).with_name("st")
    return subprocess.run(
        [
            str(st),
            "run",
            f"{base_url}/api/schema/",
            *(["--include-path-regex", "|".join(only)] if only else []),
            "--checks",
            "not_a_server_error",
            "--header",
            f"Authorization: {authorization}",
            "--max-examples",
            EXAMPLES,
            "--max-time",
            str(min(int(MAX_SECONDS), 20)) if only else MAX_SECONDS,
            "--seed",
            SEED,
            "--workers",
            "1",
            "--phases",
            "examples,coverage,fuzzing",
            "--suppress-health-check",
            "all",
            "--request-timeout",
            "20",
            "--no-color",
        ],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=int(MAX_SECONDS) + 120,
        check=False,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "160"},
    )


@pytest.fixture
def fuzz_world(
    transactional_db: Any, settings: Any, make_agent: Callable[..., tuple[Agent, str]], tmp_path: Path
) -> Iterator[dict[str, str]]:
    settings.TRACEMEM_AGENT_RATE_LIMIT = "off"  # the fuzzer is one agent sending thousands of calls
    settings.TRACEMEM_WAIT_CAP_SECONDS = 1  # decision_wait on the pending decision answers in a second
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    demo_tables_create(reset=True)  # the owner creates the business tables the products run on
    route = make_route("route_finance", is_default=True, channels=[{"type": "email"}])
    agent, key = make_agent("fuzz-agent")
    product_demo.products_seed_demo(actor=Actor.system(), agent=agent)
    publish_refund_policy(agent)
    admin = get_user_model().objects.create_superuser("fuzz-admin", "fuzz@example.com", "pw-fuzz-123")
    token = agent_tokens.personal_token_create(actor=Actor.system(), user=admin).secret
    # Another person's token for the revoke operation (revoking the fuzzer's own would end its run).
    reviewer = get_user_model().objects.create_user("fuzz-reviewer", "r@example.com", "pw-fuzz-456")
    other_token = agent_tokens.personal_token_create(actor=Actor.system(), user=reviewer).token
    as_agent = Actor.for_agent(agent)
    open_one = decision_services.decision_create(
        actor=as_agent, intent="fuzz.case.run", automation_mode="propose"
    )
    asking = decision_services.decision_create(
        actor=as_agent, intent="fuzz.case.ask", automation_mode="propose"
    )
    approval = approval_requests.decision_request_approval(actor=as_agent, decision_id=asking.decision_id)
    # Something for every named admin object to act on (nothing is contacted on save: the receivers
    # are a closed loopback port), and a draft policy for publish/test to reach their logic.
    WebhookEndpoint.objects.create(
        name="fuzz-hook",
        url="http://127.0.0.1:9/hook",
        signing_secret="whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
    )
    SlackIntegration.objects.create(
        name="fuzz-slack",
        bot_token="xoxb-fuzz-1",
        signing_secret="fuzz-s3cret",
        api_base_url="http://127.0.0.1:9/",
    )
    policy_authoring.policy_create(actor=Actor.system(), policy_id="fuzz_draft", definition=REFUND_POLICY)
    products = [p["product_id"] for p in product_demo.DEMO_PRODUCTS]
    write_config(
        tmp_path,
        {
            "decision_id": [open_one.decision_id, asking.decision_id],
            "approval_id": [approval.approval_id],
            "agent_id": [agent.agent_id],
            "key_id": [k.key_id for k in agent.keys.all()],
            "policy_id": ["refund_policy", "fuzz_draft"],
            "name": ["fuzz-hook", "fuzz-slack"],
            "route_id": [route.route_id],
            "product_id": products,
            "product": products,
            "token_id": [other_token.token_id],
        },
    )
    _, webhook_secret = approval_credentials.webhook_credential_create(actor=Actor.system(), user=admin)
    yield {"agent": f"Agent {key}", "admin": f"Token {token}", "webhook": f"Bearer {webhook_secret}"}
    demo_tables_create(reset=True)  # the owner creates the business tables the products run on


# The webhook credential opens one operation only (a receiver answering an approval); the agent key
# and the admin token see everything else (each gets 401/403 where the other belongs).
ONLY = {"webhook": ["/resolve$"]}


@pytest.mark.parametrize("who", ["agent", "admin", "webhook"])
def test_schemathesis_finds_no_server_error_over_the_whole_schema(
    who: str, fuzz_world: dict[str, str], live_server: Any, tmp_path: Path
) -> None:
    done = run_schemathesis(live_server.url, fuzz_world[who], tmp_path, ONLY.get(who))
    output = done.stdout + done.stderr
    print(output[-5000:])
    assert done.returncode == 0, output[-6000:]
    assert "No issues found" in output or "passed" in output, output[-3000:]


# --- what the fuzzer found, pinned as plain tests -------------------------------------------------


@pytest.fixture
def key_issuer(db: Any, make_agent: Callable[..., tuple[Agent, str]]) -> tuple[Agent, Callable[[dict], Any]]:
    """An agent, and a call issuing it a key through the admin API with an admin's token."""
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    token = agent_tokens.personal_token_create(actor=Actor.system(), user=admin).secret
    agent, _ = make_agent("expiring")

    def issue_key(body: dict) -> Any:
        return Client().post(
            f"/api/v1/admin/agents/{agent.agent_id}/keys",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {token}",
        )

    return agent, issue_key


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("expires_at", "stored"),
    [
        ("3277-09-13T22:53:40.2+22:11", "3277-09-13T00:42:40.200000Z"),
        ("2100-01-01T00:00:00-15:59", "2100-01-01T15:59:00.000000Z"),
    ],
)
def test_key_expiry_with_any_utc_offset_is_stored_in_utc(
    expires_at: str, stored: str, key_issuer: Any
) -> None:
    # PostgreSQL refuses offsets beyond ±15:59 ("time zone displacement out of range"): a 500 before.
    _, issue_key = key_issuer
    response = issue_key({"expires_at": expires_at})
    assert response.status_code == 201, response.content
    assert response.json()["expires_at"] == stored


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [
        {"expires_at": "9999-12-31T23:00:00-05:00"},
        {"expires_at": "2030-13-45T00:00:00Z"},
        {"expires_in_seconds": 10**15},
    ],
)
def test_key_expiry_beyond_the_calendar_is_an_invalid_argument(body: dict[str, Any], key_issuer: Any) -> None:
    agent, issue_key = key_issuer
    response = issue_key(body)
    assert response.status_code == 400
    assert response.json()["error"]["details"]["field"] == next(iter(body))
    assert not agent.keys.filter(expires_at__isnull=False).exists()
