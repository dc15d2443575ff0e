"""Reads behind the agents pages of the web UI."""

from __future__ import annotations

from django.db.models import QuerySet

from agents.models import Agent


def agents_overview() -> QuerySet[Agent]:
    """Every agent with its owner, by name (the page is for staff and reviewers alike)."""
    return Agent.objects.select_related("owner").order_by("name")
