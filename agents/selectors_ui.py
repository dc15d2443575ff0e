"""Reads behind the agents pages of the web UI."""

from __future__ import annotations

from django.db.models import QuerySet

from agents.models import Agent
from agents.selectors import require_staff
from tracemem_site.actor import Actor


def agents_overview(actor: Actor) -> QuerySet[Agent]:
    """Every agent with its owner, by name: for staff only (agents, owners and keys are admin data)."""
    require_staff(actor)
    return Agent.objects.select_related("owner").order_by("name")
