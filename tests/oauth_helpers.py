"""The OAuth door driven through the Django test client: register a client, sign in, consent, and
exchange the code, exactly as a browser and a client would (no token is made behind the door)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from django.test import Client

from oauth.conf import provider_settings

REDIRECT = "http://127.0.0.1:33418/callback"


def point_at(settings: Any, public_url: str) -> None:
    """Serve the OAuth door as ``public_url`` (what TRACEMEM_PUBLIC_URL does in production)."""
    settings.TRACEMEM_PUBLIC_URL = public_url
    settings.OAUTH2_PROVIDER = provider_settings(public_url)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def register(client: Client, *, redirect_uris: list[str] | None = None, name: str = "Test client") -> Any:
    return client.post(
        "/oauth/register/",
        json.dumps(
            {
                "client_name": name,
                "redirect_uris": redirect_uris or [REDIRECT],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            }
        ),
        content_type="application/json",
    )


def authorize_query(client_id: str, challenge: str | None, *, resource: str | None, **extra: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "state": "st4te",
        **extra,
    }
    if challenge is not None:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    if resource is not None:
        params["resource"] = resource
    return "/oauth/authorize/?" + urlencode(params)


def consent(
    browser: Client, client_id: str, challenge: str | None, *, resource: str | None, agent: str = "new"
) -> Any:
    """GET the consent page, then POST it as the signed-in person would ("Connect")."""
    page = browser.get(authorize_query(client_id, challenge, resource=resource))
    if page.status_code != 200:
        return page
    form = page.context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None}
    data.update(allow="Authorize", agent=agent)
    return browser.post("/oauth/authorize/", data)


def code_from(response: Any) -> dict[str, list[str]]:
    assert response.status_code == 302, (response.status_code, getattr(response, "content", b"")[:500])
    location = response["Location"]
    assert location.startswith(REDIRECT), location
    return parse_qs(urlsplit(location).query)


def exchange(client: Client, client_id: str, code: str, verifier: str | None, *, resource: str | None) -> Any:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
    }
    if verifier is not None:
        data["code_verifier"] = verifier
    if resource is not None:
        data["resource"] = resource
    return client.post("/oauth/token/", urlencode(data), content_type="application/x-www-form-urlencoded")


def connect(browser: Client, client_id: str, resource: str, agent: str = "new") -> dict[str, Any]:
    """The whole authorization-code flow with PKCE: the token response."""
    verifier, challenge = pkce()
    answer = code_from(consent(browser, client_id, challenge, resource=resource, agent=agent))
    response = exchange(Client(), client_id, answer["code"][0], verifier, resource=resource)
    assert response.status_code == 200, response.content
    return response.json()


def mcp_message(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}})


def oauth_mcp(token: str | None, method: str = "tools/list", params: dict[str, Any] | None = None) -> Any:
    headers = {"HTTP_ACCEPT": "application/json, text/event-stream"}
    if token is not None:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return Client().post(
        "/oauth/mcp", mcp_message(method, params), content_type="application/json", **headers
    )
