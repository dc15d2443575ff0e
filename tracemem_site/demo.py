"""The quick-start demo data (``manage.py seed_demo``). Idempotent: a second run changes nothing
except printing a fresh key when the demo agent has none that still works."""

from __future__ import annotations

import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model

from agents.models import AgentKey
from agents.services import registry as agent_registry
from approvals.demo import seed_demo_routes
from policies.demo import seed_demo_policies
from products.demo import demo_tables_create, products_seed_demo
from tracemem_core.actor import Actor

DEMO_ADMIN = "admin"
DEMO_AGENT = "demo-agent"


def seed() -> list[str]:
    lines: list[str] = []
    system = Actor.system("seed_demo")
    user_model = get_user_model()
    admin = user_model.objects.filter(username=DEMO_ADMIN).first()
    if admin is None:
        password = os.environ.get("TRACEMEM_DEMO_PASSWORD") or secrets.token_urlsafe(12)
        admin = user_model.objects.create_superuser(DEMO_ADMIN, "admin@example.com", password)
        lines.append(f"Demo admin: username {DEMO_ADMIN}, password {password}  (shown once)")
    else:
        lines.append(f"Demo admin {DEMO_ADMIN} exists (password unchanged).")
    agent, _ = agent_registry.agent_get_or_create(actor=system, name=DEMO_AGENT, owner=None)
    has_working_key = any(k.state() == "active" for k in AgentKey.objects.filter(agent=agent, name="demo"))
    if not has_working_key:
        issued = agent_registry.agent_key_issue(actor=system, agent=agent, name="demo")
        lines.append(f"Demo agent {agent.name} ({agent.agent_id}) key, shown once:")
        lines.append(f"  export TRACEMEM_API_KEY={issued.secret}")
    else:
        lines.append(
            f"Demo agent {agent.name} already has a key; `manage.py create_agent {DEMO_AGENT}` prints a new one."
        )
    lines.extend(seed_demo_policies(actor=system, agent=agent))
    demo_tables_create()
    lines.extend(products_seed_demo(actor=system, agent=agent))
    lines.extend(seed_demo_routes(actor=system))
    lines.append(f"REST: {settings.TRACEMEM_PUBLIC_URL}/api/v1/   MCP: {settings.TRACEMEM_PUBLIC_URL}/mcp")
    return lines
