"""The OAuth door's HTTP endpoints: metadata (RFC 9728, RFC 8414), the consent page, dynamic client
registration with TraceMem's limits, the OAuth-protected MCP endpoint, and the connections page.

The protocol itself (authorization codes, PKCE, tokens, refresh rotation, revocation, DCR, client ID
metadata documents, ``iss``) is django-oauth-toolkit's; this module decides only what TraceMem adds:
which resource, which redirect URIs, which agent.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from oauth2_provider.exceptions import OAuthToolkitError
from oauth2_provider.forms import AllowForm
from oauth2_provider.models import Application
from oauth2_provider.scopes import get_scopes_backend
from oauth2_provider.views import (
    AuthorizationView,
    OAuthProtectedResourceMetadataView,
    OAuthServerMetadataView,
)
from oauth2_provider.views.dynamic_client_registration import (
    DynamicClientRegistrationManagementView,
    DynamicClientRegistrationView,
)
from oauthlib.oauth2.rfc6749.errors import CustomOAuth2Error

from oauth import conf, selectors, services
from oauth.auth import InsufficientScope, OAuthAgentAuthentication, challenge
from oauth.validators import resource_problem
from tracemem_core import safejson
from tracemem_core.errors import DomainError
from tracemem_core.permissions import may_connect_oauth, may_read
from tracemem_core.rate_limit import count_shared, parse_rate
from tracemem_core.shared_cache import guarded
from tracemem_site.mcp import MCPView
from tracemem_site.web import client_ip, web_actor

# --- metadata ---------------------------------------------------------------------------------


class ProtectedResourceMetadataView(OAuthProtectedResourceMetadataView):
    """``/.well-known/oauth-protected-resource/oauth/mcp``: ``resource`` is the OAuth MCP URL exactly."""

    def get_resource(self, request: HttpRequest) -> str:
        return conf.mcp_url()

    def get_authorization_servers(self, request: HttpRequest) -> list[str]:
        return [conf.issuer()]

    def get_resource_documentation(self) -> str:
        return conf.public_url() + "/api/docs/"


class ServerMetadataView(OAuthServerMetadataView):
    """``/.well-known/oauth-authorization-server/oauth`` (RFC 8414, issuer ``<public URL>/oauth``)."""


# --- consent ----------------------------------------------------------------------------------


class ConsentForm(AllowForm):
    agent = forms.CharField(required=False)


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


class ConsentView(AuthorizationView):
    """DOT's authorization endpoint with TraceMem's consent: the person (signed in, with a second
    factor where required) sees the client, the scope and the agent it will act as, and chooses."""

    template_name = "oauth/authorize.html"
    form_class = ConsentForm

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not may_connect_oauth(web_actor(request)):
            return render(
                request,
                "oauth/refused.html",
                {"message": "Your account may not connect OAuth clients to TraceMem. Ask an administrator."},
                status=403,
            )
        # The consent page is where the agent is chosen: never skip it (approval_prompt=auto).
        if request.GET.get("approval_prompt"):
            query = request.GET.copy()
            query.pop("approval_prompt")
            request.GET = query
        response = super().get(request, *args, **kwargs)
        redirect_uri = (getattr(self, "oauth2_data", None) or {}).get("redirect_uri")
        if redirect_uri and response.status_code == 200:
            # CSP form-action also governs where the form's POST may redirect to: the client's callback.
            response._csp_update = {"form-action": [_origin(redirect_uri)]}  # type: ignore[attr-defined]
        return response

    def validate_authorization_request(self, request: HttpRequest) -> Any:
        """DOT's validation, then RFC 8707: the only resource this server issues tokens for is the
        OAuth MCP URL (an error redirected to the client, like every other invalid request)."""
        scopes, credentials = super().validate_authorization_request(request)
        problem = resource_problem(request.GET.getlist("resource"))
        if problem:
            raise OAuthToolkitError(
                error=CustomOAuth2Error(
                    error="invalid_target", description=problem, state=credentials.get("state")
                ),
                redirect_uri=credentials.get("redirect_uri"),
            )
        return scopes, credentials

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        application = context.get("application")
        actor = web_actor(self.request)
        if isinstance(application, Application):
            existing = selectors.connection_for(actor, application.pk)
            context["connection"] = existing
            context["agents"] = list(selectors.agents_owned(actor))
            context["chosen"] = (
                existing.agent_id
                if existing is not None and not existing.agent.disabled
                else services.NEW_AGENT
            )
            context["new_agent_name"] = services.default_agent_name(application=application, user=actor.user)
            context["redirect_host"] = urlsplit(str(context.get("redirect_uri") or "")).netloc
            context["source"] = application.registration_source
            context["resource"] = conf.mcp_url()
        return context

    def form_invalid(self, form: ConsentForm) -> HttpResponse:
        """The consent page again, with the refusal (a tampered form or an agent not one's own)."""
        application = Application.objects.filter(client_id=form.data.get("client_id") or "").first()
        if application is None:
            return render(self.request, "oauth/refused.html", {"message": "Unknown client."}, status=400)
        scopes = str(form.data.get("scope") or "").split()
        described = get_scopes_backend().get_all_scopes()
        redirect_uri = str(form.data.get("redirect_uri") or "")
        context = self.get_context_data(
            form=form,
            application=application,
            scopes=scopes,
            scopes_descriptions=[described.get(scope, scope) for scope in scopes],
            redirect_uri=redirect_uri,
        )
        response = self.render_to_response(context, status=400)
        if application.redirect_uri_allowed(redirect_uri):
            response._csp_update = {"form-action": [_origin(redirect_uri)]}  # type: ignore[attr-defined]
        return response

    def form_valid(self, form: ConsentForm) -> HttpResponse:
        problem = resource_problem(str(form.cleaned_data.get("resource") or "").split())
        if problem:
            form.add_error(None, problem)
            return self.form_invalid(form)
        if form.cleaned_data.get("allow"):
            application = Application.objects.filter(client_id=form.cleaned_data["client_id"]).first()
            if application is None:
                form.add_error(None, "this client is not registered; start the connection again")
                return self.form_invalid(form)
            try:
                services.connection_bind(
                    actor=web_actor(self.request),
                    application=application,
                    agent_choice=form.cleaned_data.get("agent") or services.NEW_AGENT,
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
                return self.form_invalid(form)
        return super().form_valid(form)


# --- dynamic client registration ----------------------------------------------------------------


def _registration_error(error: str, description: str, status: int = 400, **headers: str) -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _redirect_uris_refusal(request: HttpRequest) -> JsonResponse | None:
    """The redirect-URI rule (``conf.redirect_uri_problem``) on a registration body; a body that is
    not a JSON object is left to DOT, which words that error."""
    try:
        # Bounded before DOT's own json.loads sees it (a deep body was a RecursionError, a 500).
        data = safejson.loads((request.body or b"{}").decode("utf-8"))
    except safejson.JSONTooDeep as exc:
        return _registration_error("invalid_client_metadata", str(exc))
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    uris = data.get("redirect_uris")
    if not isinstance(uris, list) or not uris:
        return _registration_error("invalid_redirect_uri", "redirect_uris must be a non-empty array")
    for uri in uris:
        problem = conf.redirect_uri_problem(uri)
        if problem:
            return _registration_error("invalid_redirect_uri", problem)
    return None


@method_decorator(csrf_exempt, name="dispatch")
class RegistrationManagementView(DynamicClientRegistrationManagementView):
    """RFC 7592 reads, updates and deletes; an update passes the same redirect-URI rule."""

    def put(self, request: HttpRequest, client_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = _redirect_uris_refusal(request)
        if refused is not None:
            return refused
        return super().put(request, client_id, *args, **kwargs)


@method_decorator(csrf_exempt, name="dispatch")
class RegistrationView(DynamicClientRegistrationView):
    """RFC 7591 registration, open (ChatGPT and Codex register themselves) but limited: a number of
    registrations per client address (``TRACEMEM_OAUTH_REGISTRATION_RATE``), and redirect URIs that
    are https or loopback and match ``TRACEMEM_OAUTH_REDIRECT_URIS``."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        limit = parse_rate(str(getattr(settings, "TRACEMEM_OAUTH_REGISTRATION_RATE", "") or ""))
        if limit is not None:
            allowed, window = limit
            now = time.time()
            key = f"tracemem:oauth-dcr:{client_ip(request)}:{window}:{int(now // window)}"
            count = guarded(
                "oauth_registration", lambda: count_shared(key, window + 1), fallback="not limiting"
            )
            if count is not None and count > allowed:
                wait = max(1, int(window - now % window))
                return _registration_error(
                    "rate_limited",
                    f"too many client registrations from this address; retry after {wait} seconds",
                    429,
                    Retry_After=str(wait),
                )
        refused = _redirect_uris_refusal(request)
        if refused is not None:
            return refused
        return super().post(request, *args, **kwargs)


# --- the OAuth MCP endpoint ---------------------------------------------------------------------


class OAuthMCPView(MCPView):
    """``POST /oauth/mcp``: the same tools as ``/mcp``, authenticated by OAuth access tokens."""

    def get_authenticators(self) -> list[Any]:
        return [OAuthAgentAuthentication()]

    def initial(self, request: Any, *args: Any, **kwargs: Any) -> None:
        # Some clients (Codex) probe with GET: without a valid token the answer is the 401 that
        # points at the metadata (public anyway); with one, GET is 405 as on /mcp.
        if request.method in ("GET", "DELETE"):
            self.perform_authentication(request)
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc: Exception) -> Any:
        response = super().handle_exception(exc)
        if response.status_code == 401:
            error = {"error": "invalid_token"} if self.request.META.get("HTTP_AUTHORIZATION") else None
            response["WWW-Authenticate"] = challenge(error)
        elif isinstance(exc, InsufficientScope):
            response["WWW-Authenticate"] = challenge(
                {"error": "insufficient_scope", "error_description": exc.message}
            )
        return response


# --- connections (the person's own; every person's for managers) --------------------------------


@login_required
def connections(request: HttpRequest) -> HttpResponse:
    actor = web_actor(request)
    everyone = request.GET.get("all") == "1" and may_read(actor, "oauth_connections")
    rows = selectors.connections_visible(actor, everyone=everyone)
    return render(
        request,
        "oauth/connections.html",
        {
            "connections": rows,
            "everyone": everyone,
            "may_see_everyone": may_read(actor, "oauth_connections"),
            "oauth_mcp_url": conf.mcp_url(),
        },
    )


@login_required
@require_POST
def connection_revoke(request: HttpRequest, connection_id: int) -> HttpResponse:
    try:
        connection = services.connection_revoke(actor=web_actor(request), connection_id=connection_id)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Revoked {connection.client_name}: its tokens stop working now.")
    back = {"all": "/oauth/connections/?all=1", "account": "/account/"}
    return redirect(back.get(request.POST.get("back", ""), "/oauth/connections/"))
