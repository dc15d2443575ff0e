"""HTML door of decisions: the decision explorer and the decision page (read-only)."""

from __future__ import annotations

import json
from datetime import date

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render

from decisions import selectors
from decisions.integrity import decision_problems
from decisions.models import AutomationMode, Decision, DecisionStatus, TraceEvent
from decisions.records import record_chain, record_of
from decisions.selectors import (
    DecisionFilters,
    agent_choices,
    decision_as_reported,
    decision_events,
    decision_for,
    decision_search,
    trace_page,
)
from decisions.serializers import trace_out
from decisions.timeline import event_line
from tracemem_core.errors import InvalidArgument
from tracemem_site.web import web_actor


def _date(value: str) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None  # a malformed date filter is ignored rather than a 500


def _filters(request: HttpRequest) -> DecisionFilters:
    g = request.GET
    return DecisionFilters(
        agent=g.get("agent", "").strip(),
        intent_prefix=g.get("intent", "").strip(),
        status=g.get("status", "") if g.get("status", "") in DecisionStatus.values else "",
        mode=g.get("mode", "") if g.get("mode", "") in AutomationMode.values else "",
        date_from=_date(g.get("from", "")),
        date_to=_date(g.get("to", "")),
        has_approval=g.get("has_approval", "") if g.get("has_approval", "") in ("yes", "no") else "",
        denied=g.get("denied", "") if g.get("denied", "") in ("yes", "no") else "",
        closed=g.get("closed", "") if g.get("closed", "") in ("yes", "no") else "",
        closed_from=_date(g.get("closed_from", "")),
        q=g.get("q", "").strip()[:200],
    )


@login_required
def decision_list(request: HttpRequest) -> HttpResponse:
    actor = web_actor(request)
    filters = _filters(request)
    page = Paginator(decision_search(actor, filters), 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "decisions/list.html",
        {
            "page": page,
            "filters": filters,
            "agents": agent_choices(),
            "statuses": DecisionStatus.values,
            "modes": AutomationMode.values,
            "querystring": query.urlencode(),
        },
    )


def _decision_or_404(request: HttpRequest, decision_id: str) -> Decision:
    return decision_for(web_actor(request), decision_id)  # not_found: a 404 page


@login_required
def decision_detail(request: HttpRequest, decision_id: str) -> HttpResponse:
    decision = _decision_or_404(request, decision_id)
    try:
        page = trace_page(decision, after_seq=request.GET.get("after_seq"))
    except InvalidArgument as exc:
        return HttpResponseBadRequest(exc.message)
    events = page.events
    # The badge is verify_traces' check: the whole chain (not just the page shown), and the row,
    # the close event and the stored receipt against each other.
    problems = decision_problems(decision)
    record = record_of(decision)
    return render(
        request,
        "decisions/detail.html",
        {
            "record": record,
            "record_chain": record_chain(record) if record is not None else [],
            "decision": decision_as_reported(decision),
            "events": [
                {
                    "event": e,
                    "line": event_line(e.type, e.payload, e.actor),
                    "payload_json": json.dumps(e.payload, indent=2, sort_keys=True),
                }
                for e in events
            ],
            "metadata_json": json.dumps(decision.metadata, indent=2, sort_keys=True),
            "problems": problems,
            # Approvals under the approvals app's visibility: a decision reader may not see them.
            "approvals": selectors.decision_approvals(web_actor(request), decision.decision_id),
            "page": _timeline_page(events, page.next_after_seq, decision.event_count),
        },
    )


def _timeline_page(events: list[TraceEvent], next_after_seq: int | None, total: int) -> dict[str, object]:
    """Where this page of the timeline sits, and the after_seq of the pages around it."""
    first = events[0].seq if events else 0
    previous = max(0, first - 1 - selectors.TRACE_PAGE_DEFAULT) if first > 1 else None
    return {
        "first": first,
        "last": events[-1].seq if events else 0,
        "total": total,
        "next_after_seq": next_after_seq,
        "previous_after_seq": previous,
    }


@login_required
def decision_export(request: HttpRequest, decision_id: str) -> HttpResponse:
    """The decision and its trace as JSON: the same shape ``decision_trace`` returns to agents."""
    decision = _decision_or_404(request, decision_id)
    body = json.dumps(trace_out(decision, decision_events(decision)), indent=2)
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{decision.decision_id}.json"'
    return response
