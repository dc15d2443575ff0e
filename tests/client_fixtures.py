"""Fixtures of the Python client's tests (``pytest_plugins = ["tests.client_fixtures"]``): the seeded
demo on a live server, the real client over HTTP with the demo agent's key."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from tracemem_client import Client

from agents.services import tokens as agent_tokens
from tests.client_helpers import Seeded
from tracemem_core.actor import Actor
from tracemem_site import demo


@pytest.fixture
def seeded(live_server: Any) -> Seeded:
    """``seed_demo`` (demo agent with code_change_policy_v1 and the demo products, route_default,
    superuser ``admin``) and a personal token for ``admin``."""
    lines = demo.seed()
    [line] = [line for line in lines if "export TRACEMEM_API_KEY=" in line]
    admin = get_user_model().objects.get(username=demo.DEMO_ADMIN)
    token = agent_tokens.personal_token_create(actor=Actor.system(), user=admin).secret
    return Seeded(live_server.url, line.split("=", 1)[1].strip(), token)


@pytest.fixture
def agent_client(seeded: Seeded) -> Iterator[Client]:
    with Client(seeded.url, seeded.key, timeout=20) as opened:
        yield opened
