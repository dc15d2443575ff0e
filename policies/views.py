"""HTML door of policies: list, detail with version diff, draft editor, test console (by permission)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agents.models import Agent
from policies import selectors
from policies.forms import ConsoleForm, PolicyCreateForm, PolicyDraftForm
from policies.serializers import policy_summary_out
from policies.services import authoring as policy_authoring
from policies.services import console as console_service
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError
from tracemem_core.permissions import require_perm
from tracemem_site.web import web_actor


def guarded(perm: str | None = None) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Signed in, then a policies read permission (or ``perm``, for a page that changes something).
    The decision is the one helper's (``tracemem_core.permissions``); a refusal is a 403 page."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @login_required
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            actor = web_actor(request)
            if perm is None:
                selectors.ensure_policy_reader(actor)
            else:
                require_perm(actor, perm)
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def _actor(request: HttpRequest) -> Actor:
    return Actor.for_user(request.user)


def _policy_or_404(policy_id: str) -> Any:
    return selectors.policy_by_id(policy_id)  # not_found is a 404 page (tracemem_site.middleware)


@guarded()
def policy_list(request: HttpRequest) -> HttpResponse:
    rows = [policy_summary_out(p) for p in selectors.policies_all()]
    return render(request, "policies/list.html", {"policies": rows, "form": PolicyCreateForm()})


@guarded("policies.define_policies")
@require_POST
def policy_create(request: HttpRequest) -> HttpResponse:
    form = PolicyCreateForm(request.POST)
    if form.is_valid():
        try:
            policy_authoring.policy_create(
                actor=_actor(request),
                policy_id=form.cleaned_data["policy_id"],
                definition={"name": form.cleaned_data["name"]},
            )
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("policies:list")
        messages.success(request, "Policy created; write its rules in the draft.")
        return redirect("policies:edit", policy_id=form.cleaned_data["policy_id"])
    messages.error(request, "; ".join(f"{k}: {' '.join(str(e) for e in v)}" for k, v in form.errors.items()))
    return redirect("policies:list")


@guarded()
def policy_detail(request: HttpRequest, policy_id: str) -> HttpResponse:
    policy = _policy_or_404(policy_id)
    versions = list(selectors.policy_versions(policy_id))
    by_number = {pv.version: pv for pv in versions}
    diff: list[str] = []
    a, b = request.GET.get("a"), request.GET.get("b")
    if len(versions) >= 2:
        newer = by_number.get(int(b)) if b and b.isascii() and b.isdigit() else versions[0]
        older = by_number.get(int(a)) if a and a.isascii() and a.isdigit() else versions[1]
        if newer is not None and older is not None:
            diff = selectors.version_diff(older, newer)
            a, b = str(older.version), str(newer.version)
    agents = Agent.objects.order_by("name")
    return render(
        request,
        "policies/detail.html",
        {
            "policy": policy_summary_out(policy),
            "versions": versions,
            "grants": list(selectors.policy_grants(policy_id)),
            "evaluations": selectors.recent_evaluations(policy_id),
            "agents": agents,
            "diff": diff,
            "diff_a": a,
            "diff_b": b,
        },
    )


@guarded("policies.define_policies")
def policy_edit(request: HttpRequest, policy_id: str) -> HttpResponse:
    _policy_or_404(policy_id)
    if request.method == "POST":
        form = PolicyDraftForm(request.POST)
        if form.is_valid():
            try:
                pv = policy_authoring.policy_draft_save(
                    actor=_actor(request), policy_id=policy_id, definition=form.definition()
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                # Saving never compiles-and-refuses (work in progress is kept), but the editor
                # says at once what publishing would refuse.
                problems = policy_authoring.definition_problems(
                    policy_authoring.clean_definition(form.definition())
                )
                for problem in problems:
                    messages.warning(request, f"Saved, but publishing would refuse it: {problem}")
                if problems:
                    return redirect("policies:edit", policy_id=policy_id)
                messages.success(request, f"Draft v{pv.version} saved and compiles. Test it, then publish.")
                return redirect("policies:console", policy_id=policy_id)
    else:
        base = selectors.draft_of(policy_id) or selectors.latest_version(policy_id)
        initial = (
            {
                "name": base.name,
                "description": base.description,
                "inputs_schema": base.inputs_schema,
                "rules": base.rules,
                "default_outcome": base.default_outcome,
                "exception_route_id": base.exception_route_id or "",
            }
            if base
            else {}
        )
        form = PolicyDraftForm(initial=initial)
    return render(
        request,
        "policies/edit.html",
        {"policy_id": policy_id, "form": form, "draft": selectors.draft_of(policy_id)},
    )


@guarded("policies.publish_policies")
@require_POST
def policy_publish(request: HttpRequest, policy_id: str) -> HttpResponse:
    _policy_or_404(policy_id)
    try:
        pv = policy_authoring.policy_publish(actor=_actor(request), policy_id=policy_id)
    except DomainError as exc:
        messages.error(request, exc.message)
        return redirect("policies:console", policy_id=policy_id)
    messages.success(request, f"Published v{pv.version} ({pv.hash[:12]}…).")
    return redirect("policies:detail", policy_id=policy_id)


@guarded("policies.publish_policies")
@require_POST
def policy_retire(request: HttpRequest, policy_id: str) -> HttpResponse:
    _policy_or_404(policy_id)
    try:
        pv = policy_authoring.policy_retire(actor=_actor(request), policy_id=policy_id)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, f"Retired v{pv.version}; agents cannot evaluate {policy_id} until a draft is published."
        )
    return redirect("policies:detail", policy_id=policy_id)


@guarded("policies.grant_policies")
@require_POST
def policy_grant(request: HttpRequest, policy_id: str) -> HttpResponse:
    _policy_or_404(policy_id)
    try:
        grant = policy_authoring.policy_grant(
            actor=_actor(request), policy_id=policy_id, agent_id=request.POST.get("agent_id")
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Agent {grant.agent.name} may now evaluate {policy_id}.")
    return redirect("policies:detail", policy_id=policy_id)


@guarded("policies.grant_policies")
@require_POST
def policy_grant_revoke(request: HttpRequest, policy_id: str, agent_id: str) -> HttpResponse:
    _policy_or_404(policy_id)
    try:
        revoked = policy_authoring.policy_grant_revoke(
            actor=_actor(request), policy_id=policy_id, agent_id=agent_id
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Grant revoked." if revoked else "There was no such grant.")
    return redirect("policies:detail", policy_id=policy_id)


@guarded()
def policy_console(request: HttpRequest, policy_id: str) -> HttpResponse:
    """Test the draft against sample inputs, or replay recorded evaluations through it.

    Both actions are reads (nothing is stored), so they answer the POST directly.
    """
    _policy_or_404(policy_id)
    result: dict[str, Any] | None = None
    replay: dict[str, Any] | None = None
    error: str | None = None
    form = ConsoleForm(request.POST or None, initial={"inputs": "{}", "limit": 50})
    if request.method == "POST" and form.is_valid():
        try:
            if request.POST.get("action") == "replay":
                replay = console_service.policy_replay(
                    actor=_actor(request), policy_id=policy_id, limit=form.cleaned_data.get("limit") or 50
                )
            else:
                result = console_service.policy_test(
                    actor=_actor(request),
                    policy_id=policy_id,
                    inputs=form.cleaned_data.get("inputs") or {},
                    decision=form.cleaned_data.get("decision"),
                )
        except DomainError as exc:
            error = exc.message
    return render(
        request,
        "policies/console.html",
        {
            "policy_id": policy_id,
            "form": form,
            "result": result,
            "replay": replay,
            "error": error,
            "draft": selectors.draft_of(policy_id),
            "published": selectors.latest_published(policy_id),
        },
    )
