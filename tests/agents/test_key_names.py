"""Issue 18: wherever a key or a personal token is issued without a name, or a form proposes one,
the name is one its owner's keys (or tokens) do not have yet; one function proposes it."""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from agents.models import Agent, AgentKey, PersonalToken
from tests.perm_helpers import TokenClient, make_staff

pytestmark = pytest.mark.django_db


def _proposed(body: str, action: str) -> str:
    form = body.split(f'action="{action}"', 1)[1]
    return form.split('name="name" value="', 1)[1].split('"', 1)[0]


def test_account_form_proposes_a_token_name_none_of_my_tokens_has() -> None:
    user = get_user_model().objects.create_user("rita", password="x")
    client = Client()
    client.force_login(user)
    assert _proposed(client.get("/account/").content.decode(), "/account/tokens/") == "default"
    client.post("/account/tokens/", {"name": "default"})
    proposal = _proposed(client.get("/account/").content.decode(), "/account/tokens/")
    assert proposal != "default"
    client.post("/account/tokens/", {"name": proposal})
    assert _proposed(client.get("/account/").content.decode(), "/account/tokens/") not in {
        "default",
        proposal,
    }
    # An empty name gets the proposal too, never a second "default".
    client.post("/account/tokens/", {"name": ""})
    names = list(PersonalToken.objects.filter(user=user).values_list("name", flat=True))
    assert len(names) == 3 and len(set(names)) == 3


def test_issuing_a_key_without_a_name_never_repeats_one(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    agent, _ = make_agent("unnamed-keys")  # its first key is "default"
    staff = make_staff("keeper", password="x")
    html = Client()
    html.force_login(staff)
    html.post(f"/agents/{agent.agent_id}/keys/", {"name": ""})
    rest = TokenClient(staff)
    issued = rest.post(f"/api/v1/admin/agents/{agent.agent_id}/keys", {})
    assert issued.status_code == 201, issued.content
    call_command("create_agent", "unnamed-keys", stdout=StringIO())  # reuses the agent: a new key
    names = list(AgentKey.objects.filter(agent=agent).values_list("name", flat=True))
    assert len(names) == 4 and len(set(names)) == 4, names
    assert issued.json()["name"] in names and "default" in names


def test_create_token_without_a_name_never_repeats_one() -> None:
    user = get_user_model().objects.create_user("cli-user", password="x")
    call_command("create_token", "cli-user", stdout=StringIO())
    call_command("create_token", "cli-user", stdout=StringIO())
    names = list(PersonalToken.objects.filter(user=user).values_list("name", flat=True))
    assert len(names) == 2 and len(set(names)) == 2, names


def test_agent_page_form_proposes_a_key_name_none_of_its_keys_has(
    make_agent: Callable[..., tuple[Agent, str]],
) -> None:
    """Issue 18 (audit): the agent page's "Issue a key" form, not only the account page's."""
    agent, _ = make_agent("proposing-agent")  # its first key is "default"
    staff = make_staff("keeper", password="x")
    client = Client()
    client.force_login(staff)
    action = f"/agents/{agent.agent_id}/keys/"
    for _ in range(2):
        proposal = _proposed(client.get(f"/agents/{agent.agent_id}/").content.decode(), action)
        names = set(AgentKey.objects.filter(agent=agent).values_list("name", flat=True))
        assert proposal and proposal not in names, (proposal, names)
        client.post(action, {"name": proposal})
    assert AgentKey.objects.filter(agent=agent).count() == 3
