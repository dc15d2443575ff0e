"""Management commands of docs/contract/admin.md that the foundation owns: each idempotent, each prints what it did."""

from __future__ import annotations

import re
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

from agents.models import Agent, AgentKey, PersonalToken
from tests.perm_helpers import make_staff

pytestmark = pytest.mark.django_db


def _run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _secret(output: str, prefix: str) -> str:
    found = re.findall(rf"{prefix}[0-9A-Za-z]{{40}}", output)
    assert len(found) == 1, output
    return found[0]


def test_create_agent_prints_a_working_key_and_reuses_the_agent(db: Any) -> None:
    first = _run("create_agent", "cli-bot")
    key = _secret(first, "tmem_")
    assert first.startswith("Created agent cli-bot (agent_")
    assert Client().get("/api/v1/capabilities", HTTP_AUTHORIZATION=f"Agent {key}").json()["name"] == "cli-bot"
    second = _run("create_agent", "cli-bot")
    assert second.startswith("Reused agent cli-bot")
    assert _secret(second, "tmem_") != key
    assert Agent.objects.filter(name="cli-bot").count() == 1
    assert AgentKey.objects.filter(agent__name="cli-bot").count() == 2


def test_create_agent_with_unknown_owner_fails_cleanly(db: Any) -> None:
    with pytest.raises(CommandError, match="no user named 'ghost'"):
        call_command("create_agent", "owned-bot", "--owner", "ghost", stdout=StringIO())
    assert not Agent.objects.filter(name="owned-bot").exists()


def test_create_token_prints_a_token_the_admin_api_accepts(db: Any) -> None:
    make_staff("ops")
    token = _secret(_run("create_token", "ops"), "tmpat_")
    assert PersonalToken.objects.get(user__username="ops").token_hash != token
    response = Client().get("/api/v1/admin/agents", HTTP_AUTHORIZATION=f"Token {token}")
    assert response.status_code == 200 and response.json() == {"agents": []}


def test_seed_demo_is_idempotent_and_prints_the_key_once(db: Any) -> None:
    first = _run("seed_demo")
    key = _secret(first, "tmem_")
    assert f"export TRACEMEM_API_KEY={key}" in first
    second = _run("seed_demo")
    assert "tmem_" not in second.replace("TRACEMEM_API_KEY", "")
    assert Agent.objects.filter(name="demo-agent").count() == 1
    assert get_user_model().objects.filter(username="admin").count() == 1
    assert Client().get("/api/v1/capabilities", HTTP_AUTHORIZATION=f"Agent {key}").status_code == 200
