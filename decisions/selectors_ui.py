"""Reads behind the reviewer/admin web pages (dashboard, decision explorer).

Kept apart from ``decisions/selectors.py`` (the agent-facing reads) so the UI can grow its
queries without touching the envelope code. Every function starts from
``decisions_visible_to(actor)``, so a page never shows what its user may not see.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from agents.models import Agent
from decisions.models import TERMINAL_STATUSES, ApprovalStatus, Decision, DecisionStatus
from decisions.selectors import decisions_visible_to
from tracemem_core.actor import Actor

# The chart groups statuses into three outcomes a reader cares about at a glance.
OUTCOMES = ("committed", "aborted", "in_flight")


@dataclass(frozen=True)
class DashboardStats:
    open_decisions: int
    pending_approvals: int
    resolved_today: int
    median_seconds_to_decision: float | None
    per_day: list[dict[str, Any]]  # [{"day": date, "committed": n, "aborted": n, "in_flight": n}]


def _start_of_today() -> datetime:
    now = timezone.now()
    return datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)


def dashboard_stats(actor: Actor, *, days: int = 14, sample: int = 1000) -> DashboardStats:
    """The dashboard's numbers; the median uses the latest ``sample`` closed decisions."""
    visible = decisions_visible_to(actor)
    open_count = visible.exclude(status__in=TERMINAL_STATUSES).count()
    # decisions.services keeps approval_status on the row, so this needs no approvals import.
    pending = visible.filter(approval_status=ApprovalStatus.PENDING).count()
    today = _start_of_today()
    resolved_today = visible.filter(status__in=TERMINAL_STATUSES, closed_at__gte=today).count()
    durations = [
        (closed - created).total_seconds()
        for created, closed in visible.filter(closed_at__isnull=False)
        .order_by("-closed_at")
        .values_list("created_at", "closed_at")[:sample]
        if closed is not None
    ]
    median = statistics.median(durations) if durations else None

    first_day = (today - timedelta(days=days - 1)).date()
    rows = (
        visible.filter(created_at__gte=today - timedelta(days=days - 1))
        .annotate(day=TruncDate("created_at"))
        .values("day", "status")
        .annotate(n=Count("pk"))
    )
    by_day: dict[date, dict[str, Any]] = {
        first_day + timedelta(days=i): {"day": first_day + timedelta(days=i), **dict.fromkeys(OUTCOMES, 0)}
        for i in range(days)
    }
    for row in rows:
        bucket = by_day.get(row["day"])
        if bucket is None:
            continue
        outcome = row["status"] if row["status"] in ("committed", "aborted") else "in_flight"
        bucket[outcome] += row["n"]
    return DashboardStats(
        open_decisions=open_count,
        pending_approvals=pending,
        resolved_today=resolved_today,
        median_seconds_to_decision=median,
        per_day=list(by_day.values()),
    )


@dataclass(frozen=True)
class DecisionFilters:
    agent: str = ""
    intent_prefix: str = ""
    status: str = ""
    mode: str = ""
    date_from: date | None = None
    date_to: date | None = None
    has_approval: str = ""  # "", "yes", "no"
    q: str = ""


def decision_search(actor: Actor, filters: DecisionFilters) -> QuerySet[Decision]:
    """Decisions matching the explorer's filters, newest first."""
    qs = decisions_visible_to(actor).select_related("agent")
    if filters.agent:
        qs = qs.filter(agent_id=filters.agent)
    if filters.intent_prefix:
        qs = qs.filter(intent__startswith=filters.intent_prefix)
    if filters.status:
        qs = qs.filter(status=filters.status)
    if filters.mode:
        qs = qs.filter(automation_mode=filters.mode)
    if filters.date_from:
        qs = qs.filter(created_at__gte=datetime.combine(filters.date_from, time.min, tzinfo=UTC))
    if filters.date_to:
        end = datetime.combine(filters.date_to + timedelta(days=1), time.min, tzinfo=UTC)
        qs = qs.filter(created_at__lt=end)
    if filters.has_approval == "yes":
        qs = qs.filter(approval_status__isnull=False)
    elif filters.has_approval == "no":
        qs = qs.filter(approval_status__isnull=True)
    if filters.q:
        term = filters.q.strip()
        qs = qs.filter(
            Q(decision_id=term)
            | Q(intent__icontains=term)
            | Q(actor__icontains=term)
            | Q(agent__name__icontains=term)
            | Q(instance__icontains=term)
        )
    return qs.order_by("-created_at")


def decision_status_choices() -> list[tuple[str, str]]:
    return list(DecisionStatus.choices)


def agent_choices() -> list[tuple[str, str]]:
    """(agent_id, name) of every agent, for the explorer's agent filter."""
    return list(Agent.objects.order_by("name").values_list("agent_id", "name"))
