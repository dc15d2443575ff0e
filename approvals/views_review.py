"""HTML door of approvals for reviewers: the review queue and the approval page.

Kept in its own module (the approvals app's other doors are built elsewhere); votes go through
``approvals.services.approval_vote`` exactly like the Slack, email and webhook doors.
"""

from __future__ import annotations

import json
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from approvals import selectors_review as sel
from approvals import services as approval_services
from approvals.selectors import approval_as_reported, frozen_rules
from decisions.models import EventType, TraceEvent
from decisions.selectors import decision_as_reported, decision_events, trace_page
from tracemem_core.errors import DomainError, NotFound
from tracemem_site.web import refusal_as_403, web_actor

WEB_CHANNEL = "web"


def _span(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def _queue_context(request: HttpRequest) -> dict[str, object]:
    actor = web_actor(request)
    g = request.GET
    filters = sel.QueueFilters(
        agent=g.get("agent", "").strip(),
        route=g.get("route", "").strip(),
        intent_prefix=g.get("intent", "").strip(),
        mine=g.get("mine") == "1",
    )
    now = timezone.now()
    rows = [
        {"approval": a, "age": _span(now - a.requested_at), "time_left": _span(a.expires_at - now)}
        for a in sel.review_queue(actor, filters)
    ]
    return {
        "rows": rows,
        "filters": filters,
        "routes": sel.route_ids(),
        "querystring": g.urlencode(),
        "now": now,
    }


@login_required
def review_queue(request: HttpRequest) -> HttpResponse:
    context = _queue_context(request)
    # htmx polling asks for the table only; a plain GET gets the whole page.
    template = (
        "approvals/_review_rows.html" if request.headers.get("HX-Request") else "approvals/review_queue.html"
    )
    return render(request, template, context)


@login_required
def review_count(request: HttpRequest) -> HttpResponse:
    count = sel.pending_count(web_actor(request))
    return HttpResponse(str(count) if count else "", content_type="text/plain")


def _event_rows(events: list[TraceEvent]) -> list[dict[str, object]]:
    return [{"event": e, "payload_json": json.dumps(e.payload, indent=2, sort_keys=True)} for e in events]


@login_required
def approval_page(request: HttpRequest, approval_id: str) -> HttpResponse:
    actor = web_actor(request)
    try:
        # Past its deadline it shows as expired (and the decision as rejected) before the tick writes it.
        approval = approval_as_reported(sel.approval_for(actor, approval_id))
    except NotFound:
        raise Http404("no such approval") from None
    decision = decision_as_reported(approval.decision)
    # One page of the timeline (trace reads are bounded); the decision page has the rest.
    page = trace_page(decision)
    evaluations = list(decision_events(decision).filter(type=EventType.EVALUATE))
    now = timezone.now()
    return render(
        request,
        "approvals/review_detail.html",
        {
            "approval": approval,
            "decision": decision,
            "metadata_json": json.dumps(decision.metadata, indent=2, sort_keys=True),
            "evaluations": _event_rows(evaluations),
            "events": _event_rows(page.events),
            "more_events_after": page.next_after_seq,
            "votes": sel.approval_votes(approval),
            "tally": sel.vote_tally(approval),
            "rules": frozen_rules(approval),
            "deliveries": sel.approval_deliveries(approval),
            "block_reason": sel.vote_block_reason(actor, approval),
            "age": _span(now - approval.requested_at),
            "time_left": _span(approval.expires_at - now),
            "draft": request.session.pop("tracemem_rationale_draft", ""),
        },
    )


@login_required
@require_POST
def approval_vote(request: HttpRequest, approval_id: str) -> HttpResponse:
    choice = request.POST.get("decision", "")
    try:
        approval_services.approval_vote(
            actor=web_actor(request),
            approval_id=approval_id,
            decision=choice,
            rationale=request.POST.get("rationale", ""),
            channel=WEB_CHANNEL,
        )
    except NotFound:
        raise Http404("no such approval") from None
    except DomainError as exc:
        # The service's message already says what was wrong and what to do next.
        messages.error(request, str(exc))
        if exc.code == "invalid_argument":
            request.session["tracemem_rationale_draft"] = request.POST.get("rationale", "")[:10000]
    else:
        verb = "approved" if choice == "approve" else "rejected"
        messages.success(request, f"Your vote was recorded: {verb}.")
    return redirect(f"/review/{approval_id}/")


@login_required
@refusal_as_403
def route_list(request: HttpRequest) -> HttpResponse:
    return render(
        request, "approvals/review_routes.html", {"routes": sel.routes_overview(web_actor(request))}
    )


@login_required
@refusal_as_403
def route_detail(request: HttpRequest, route_id: str) -> HttpResponse:
    route = sel.routes_overview(web_actor(request)).filter(route_id=route_id).first()
    if route is None:
        raise Http404("no such route")
    return render(
        request,
        "approvals/review_route.html",
        {"route": route, "channels_json": json.dumps(route.channels, indent=2)},
    )
