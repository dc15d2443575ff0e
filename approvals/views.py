"""HTML and integration doors of approvals: the email confirmation page and Slack interactions.

The email page identifies the reviewer by the signed link (no login): GET only shows the request,
so link scanners resolve nothing; the POST (CSRF-protected) votes through ``approval_vote``.
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST
from slack_sdk.signature import SignatureVerifier

from approvals import selectors, services
from approvals.channels import DeliveryError, review_url, slack_call
from approvals.models import SlackIntegration
from approvals.serializers import approval_out
from tracemem_core import safejson
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError, PermissionDenied

logger = logging.getLogger(__name__)


@require_http_methods(["GET", "POST"])
def email_confirm(request: HttpRequest, token: str) -> HttpResponse:
    try:
        link = selectors.email_link_for_token(token)
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
        approval = services.approval_vote_by_email_link(
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
        user = services.user_for_email(email) if email else None
        if user is None:
            raise PermissionDenied("your Slack profile has no email; TraceMem cannot identify you")
        approval = services.approval_vote(
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
