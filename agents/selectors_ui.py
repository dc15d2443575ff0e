"""Reads behind the agents pages of the web UI."""

from __future__ import annotations

from django.db.models import QuerySet

from agents.models import Agent
from agents.selectors import agents_for_admin
from tracemem_core.actor import Actor


def agents_overview(actor: Actor) -> QuerySet[Agent]:
    """The agents this person may see, with their owners, by name (agents, owners and keys are
    admin data: see ``agents_for_admin``)."""
    return agents_for_admin(actor)
