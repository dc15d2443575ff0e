"""HTML and integration doors of approvals: the email confirmation page and Slack interactions.

The email page identifies the reviewer by the signed link (no login): GET only shows the request,
so link scanners resolve nothing; the POST (CSRF-protected) votes through ``approval_vote``.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, time, timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST
from slack_sdk.signature import SignatureVerifier

from approvals import selectors
from approvals.conf import review_url
from approvals.models import DeliveryStatus, SlackIntegration
from approvals.selectors import approval_as_reported, frozen_rules
from approvals.serializers import approval_out
from approvals.services import credentials as approval_credentials
from approvals.services import email_links as approval_email_links
from approvals.services import requests as approval_requests
from approvals.services.channels import DeliveryError, slack_call
from decisions.models import EventType, TraceEvent
from decisions.selectors import decision_as_reported, decision_events, trace_page
from decisions.timeline import event_line
from tracemem_core import safejson
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError, InvalidArgument, NotFound, PermissionDenied
from tracemem_site.web import web_actor

logger = logging.getLogger(__name__)


@require_http_methods(["GET", "POST"])
def email_confirm(request: HttpRequest, token: str) -> HttpResponse:
    try:
        link = approval_email_links.email_link_open(token=token)
    except DomainError as exc:
        return render(request, "approvals/email_confirm.html", {"error": exc.message}, status=403)
    context = {
        "approval": approval_out(link.approval),
        "reviewer": link.user.get_username(),
        "token": token,
        # Who must use two-factor sign-in confirms in the browser; the service refuses the link's vote.
        "browser_only": selectors.second_factor_required(link.user),
        "review_url": review_url(link.approval),
    }
    if request.method == "GET":
        return render(request, "approvals/email_confirm.html", context)
    try:
        approval = approval_email_links.approval_vote_by_email_link(
            token=token,
            decision=request.POST.get("decision", ""),
            rationale=request.POST.get("rationale", ""),
        )
    except DomainError as exc:
        status = 403 if exc.code in ("permission_denied",) else 400 if exc.code == "invalid_argument" else 409
        return render(
            request, "approvals/email_confirm.html", {**context, "error": exc.message}, status=status
        )
    return render(
        request, "approvals/email_confirm.html", {**context, "approval": approval_out(approval), "done": True}
    )


def _verified_integration(request: HttpRequest) -> SlackIntegration | None:
    body = request.body.decode("utf-8", errors="replace")
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    for integration in SlackIntegration.objects.all():
        if SignatureVerifier(integration.signing_secret).is_valid(body, timestamp, signature):
            return integration
    return None


@csrf_exempt  # Slack cannot send a CSRF token; the request signature authenticates it instead.
@require_POST
def slack_interactions(request: HttpRequest) -> HttpResponse:
    integration = _verified_integration(request)
    if integration is None:
        return JsonResponse(
            {
                "error": {
                    "code": "unauthenticated",
                    "message": "Slack signature did not verify",
                    "details": {},
                }
            },
            status=401,
        )
    try:
        payload = safejson.loads(request.POST.get("payload", ""))
    except safejson.JSONTooDeep as exc:
        return JsonResponse({"text": f"TraceMem could not read this interaction: {exc}"}, status=400)
    except ValueError:
        return JsonResponse({"text": "TraceMem could not read this interaction."}, status=400)
    try:
        action = payload["actions"][0]
        choice, approval_id, slack_user = action["action_id"], action["value"], payload["user"]["id"]
    except (ValueError, KeyError, IndexError, TypeError):
        return JsonResponse({"text": "TraceMem could not read this interaction."}, status=400)
    try:
        info = slack_call(integration, "users.info", query={"user": str(slack_user)})
        email = (info.get("user") or {}).get("profile", {}).get("email") or ""
    except DeliveryError as exc:
        logger.warning("Slack users.info failed: %s", exc)
        return JsonResponse(
            {"response_type": "ephemeral", "text": "TraceMem could not look up your Slack user."}
        )
    try:
        user = approval_credentials.user_for_email(email) if email else None
        if user is None:
            raise PermissionDenied("your Slack profile has no email; TraceMem cannot identify you")
        approval = approval_requests.approval_vote(
            actor=Actor.for_user(user), approval_id=approval_id, decision=choice, channel="slack"
        )
    except DomainError as exc:
        return JsonResponse({"response_type": "ephemeral", "replace_original": False, "text": str(exc)})
    return JsonResponse(
        {
            "response_type": "ephemeral",
            "replace_original": False,
            "text": f"Your {choice} vote was recorded; the approval is {approval.status}.",
        }
    )


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
    filters = selectors.QueueFilters(
        agent=g.get("agent", "").strip(),
        route=g.get("route", "").strip(),
        intent_prefix=g.get("intent", "").strip(),
        mine=g.get("mine") == "1",
    )
    now = timezone.now()
    rows = [
        {"approval": a, "age": _span(now - a.requested_at), "time_left": _span(a.expires_at - now)}
        for a in selectors.review_queue(actor, filters)
    ]
    return {
        "rows": rows,
        "filters": filters,
        "routes": selectors.route_ids(),
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


def _day(params: QueryDict, name: str, *, end: bool = False) -> datetime | None:
    """A ``YYYY-MM-DD`` filter as the start of that UTC day (``end``: of the next one)."""
    raw = params.get(name, "").strip()
    if not raw:
        return None
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be a date as YYYY-MM-DD; got {raw!r}", field=name) from None
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start + timedelta(days=1) if end else start


@login_required
def resolved_list(request: HttpRequest) -> HttpResponse:
    """``/review/resolved/``: what was decided, by whom and why (the queue's history)."""
    g = request.GET
    context: dict[str, object] = {
        "outcomes": selectors.RESOLVED_STATES,
        "routes": selectors.route_ids(),
        "params": {
            k: g.get(k, "").strip() for k in ("outcome", "route", "agent", "reviewer", "since", "until")
        },
    }
    try:
        filters = selectors.ResolvedFilters(
            outcome=g.get("outcome", "").strip(),
            route=g.get("route", "").strip(),
            agent=g.get("agent", "").strip(),
            reviewer=g.get("reviewer", "").strip(),
            since=_day(g, "since"),
            until=_day(g, "until", end=True),
        )
        rows = selectors.resolved_approvals(web_actor(request), filters)
    except InvalidArgument as exc:
        return render(
            request, "approvals/review_resolved.html", {**context, "rows": [], "error": str(exc)}, status=400
        )
    return render(request, "approvals/review_resolved.html", {**context, "rows": rows})


@login_required
def delivery_list(request: HttpRequest) -> HttpResponse:
    """``/review/deliveries/``: each channel's delivery of the approval requests this reviewer may
    see, newest first, filtered by status and day (the dashboard's delivery failures link here)."""
    g = request.GET
    context: dict[str, object] = {
        "statuses": DeliveryStatus.values,
        "params": {k: g.get(k, "").strip() for k in ("status", "since")},
    }
    try:
        filters = selectors.DeliveryFilters(status=g.get("status", "").strip(), since=_day(g, "since"))
        rows = selectors.delivery_list(web_actor(request), filters)
    except InvalidArgument as exc:
        return render(
            request, "approvals/deliveries.html", {**context, "rows": [], "error": str(exc)}, status=400
        )
    return render(request, "approvals/deliveries.html", {**context, "rows": rows})


@login_required
def review_count(request: HttpRequest) -> HttpResponse:
    count = selectors.pending_count(web_actor(request))
    return HttpResponse(str(count) if count else "", content_type="text/plain")


def _event_rows(events: list[TraceEvent]) -> list[dict[str, object]]:
    return [
        {
            "event": e,
            "line": event_line(e.type, e.payload, e.actor),
            "payload_json": json.dumps(e.payload, indent=2, sort_keys=True),
        }
        for e in events
    ]


@login_required
def approval_page(request: HttpRequest, approval_id: str) -> HttpResponse:
    actor = web_actor(request)
    # Past its deadline it shows as expired (and the decision as rejected) before the tick writes it.
    approval = approval_as_reported(selectors.approval_for(actor, approval_id))
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
            "votes": selectors.approval_votes(approval),
            "tally": selectors.vote_tally(approval),
            "rules": frozen_rules(approval),
            "deliveries": selectors.approval_deliveries(approval),
            "block_reason": selectors.vote_block_reason(actor, approval),
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
        approval_requests.approval_vote(
            actor=web_actor(request),
            approval_id=approval_id,
            decision=choice,
            rationale=request.POST.get("rationale", ""),
            channel=WEB_CHANNEL,
        )
    except NotFound:
        raise  # a 404 page, not a message (tracemem_site.middleware.RefusalPageMiddleware)
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
def route_list(request: HttpRequest) -> HttpResponse:
    return render(
        request, "approvals/review_routes.html", {"routes": selectors.routes_overview(web_actor(request))}
    )


@login_required
def route_detail(request: HttpRequest, route_id: str) -> HttpResponse:
    route = selectors.routes_overview(web_actor(request)).filter(route_id=route_id).first()
    if route is None:
        raise Http404("no such route")
    return render(
        request,
        "approvals/review_route.html",
        {"route": route, "channels_json": json.dumps(route.channels, indent=2)},
    )
