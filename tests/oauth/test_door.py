"""The OAuth MCP door (issue 15) through the Django test client: metadata, refusals, consent,
audience, PKCE, revocation, registration limits. The official MCP client and Chromium drive the
same door end to end in tests/oauth/test_client.py."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from oauth2_provider.models import AccessToken, Application, RefreshToken

from agents.models import Agent
from audit.models import AuditEntry
from oauth.models import OAuthConnection
from tests.mcp_door.test_official_client import SPEC_TOOLS
from tests.oauth_helpers import (
    REDIRECT,
    code_from,
    connect,
    consent,
    exchange,
    oauth_mcp,
    pkce,
    point_at,
    register,
)

BASE = "http://testserver"
MCP_URL = BASE + "/oauth/mcp"
PASSWORD = "correct horse battery staple"


def user_tokens() -> list[AccessToken]:
    """Access tokens issued to people (DCR's registration access tokens have no user)."""
    return list(AccessToken.objects.filter(user__isnull=False))


@pytest.fixture(autouse=True)
def oauth_site(settings: Any, db: Any) -> None:
    point_at(settings, BASE)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.TRACEMEM_OAUTH_REGISTRATION_RATE = "off"


@pytest.fixture
def alice() -> User:
    return User.objects.create_user("alice", password=PASSWORD)


@pytest.fixture
def signed_in(alice: User) -> Client:
    browser = Client()
    browser.force_login(alice)
    return browser


@pytest.fixture
def client_id() -> str:
    response = register(Client())
    assert response.status_code == 201, response.content
    return str(response.json()["client_id"])


# --- metadata and discovery ---------------------------------------------------------------------


def test_protected_resource_metadata_names_the_oauth_mcp_url_exactly() -> None:
    response = Client().get("/.well-known/oauth-protected-resource/oauth/mcp")
    assert response.status_code == 200
    document = response.json()
    assert document["resource"] == MCP_URL
    assert document["authorization_servers"] == [BASE + "/oauth"]
    assert document["scopes_supported"] == ["mcp"]
    assert document["bearer_methods_supported"] == ["header"]


def test_authorization_server_metadata_is_rfc_8414_with_s256_registration_and_cimd() -> None:
    response = Client().get("/.well-known/oauth-authorization-server/oauth")
    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == BASE + "/oauth"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["registration_endpoint"] == BASE + "/oauth/register/"
    assert document["client_id_metadata_document_supported"] is True
    assert document["authorization_endpoint"] == BASE + "/oauth/authorize/"
    assert document["token_endpoint"] == BASE + "/oauth/token/"
    assert document["revocation_endpoint"] == BASE + "/oauth/revoke_token/"
    assert document["response_types_supported"] == ["code"]
    assert document["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert "none" in document["token_endpoint_auth_methods_supported"]
    assert document["authorization_response_iss_parameter_supported"] is True
    assert document["scopes_supported"] == ["mcp"]


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-authorization-server/mcp",
        "/.well-known/openid-configuration",
        "/mcp/.well-known/oauth-protected-resource",
        "/mcp/.well-known/oauth-authorization-server",
        "/register",
        "/authorize",
        "/token",
    ],
)
def test_the_key_door_publishes_no_oauth_discovery(path: str) -> None:
    assert Client().get(path).status_code == 404


def test_the_key_door_401_carries_no_resource_metadata() -> None:
    response = Client().post("/mcp", "{}", content_type="application/json")
    assert response.status_code == 401
    assert "resource_metadata" not in response.get("WWW-Authenticate", "")
    assert response.get("WWW-Authenticate") == 'Agent realm="tracemem"'


def test_a_request_without_a_token_gets_401_pointing_at_the_resource_metadata() -> None:
    response = oauth_mcp(None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == (
        'Bearer realm="tracemem", resource_metadata="http://testserver/.well-known/oauth-protected-resource'
        '/oauth/mcp", scope="mcp"'
    )
    assert response.json()["error"]["code"] == "unauthenticated"
    assert response.json()["error"]["details"]["reason"] == "missing"


def test_an_agent_key_is_not_an_oauth_token(make_agent: Any) -> None:
    _, key = make_agent()
    response = oauth_mcp(key)
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert "resource_metadata=" in response["WWW-Authenticate"]


# --- the flow -----------------------------------------------------------------------------------


def test_consent_binds_person_and_client_to_a_new_agent_and_tools_run_as_it(
    signed_in: Client, alice: User, client_id: str, make_agent: Any
) -> None:
    _, key = make_agent("key-door")
    tokens = connect(signed_in, client_id, MCP_URL)
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "mcp"
    assert tokens["expires_in"] == 3600
    assert tokens["refresh_token"]
    connection = OAuthConnection.objects.get(user=alice)
    assert connection.agent.name == "Test client (alice)"
    assert connection.agent.owner == alice
    # Stored hashed only.
    stored = AccessToken.objects.get(user=alice)
    assert stored.token == "" and stored.resource == [MCP_URL]

    listed = oauth_mcp(tokens["access_token"])
    assert listed.status_code == 200, listed.content
    # Exactly the key door's tools, with the same definitions (one MCP server behind both doors).
    key_door = Client().post(
        "/mcp",
        json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Agent {key}",
        HTTP_ACCEPT="application/json, text/event-stream",
    )
    assert listed.json()["result"]["tools"] == key_door.json()["result"]["tools"]
    assert {t["name"] for t in listed.json()["result"]["tools"]} == SPEC_TOOLS

    created = oauth_mcp(
        tokens["access_token"],
        "tools/call",
        {
            "name": "decision_create",
            "arguments": {"intent": "code.refactor.execute", "automation_mode": "propose"},
        },
    )
    result = created.json()["result"]
    assert result["isError"] is False, result
    trace = oauth_mcp(
        tokens["access_token"],
        "tools/call",
        {"name": "decision_trace", "arguments": {"decision_id": result["structuredContent"]["decision_id"]}},
    ).json()["result"]["structuredContent"]
    assert trace["events"][0]["actor"] == {
        "kind": "agent",
        "id": connection.agent.agent_id,
        "name": "Test client (alice)",
    }
    entry = AuditEntry.objects.get(action="oauth.connect")
    assert entry.actor_name == "alice" and entry.after["agent_id"] == connection.agent.agent_id


def test_the_authorization_response_carries_iss(signed_in: Client, client_id: str) -> None:
    _, challenge = pkce()
    answer = code_from(consent(signed_in, client_id, challenge, resource=MCP_URL))
    assert answer["iss"] == [BASE + "/oauth"]
    assert answer["state"] == ["st4te"]


def test_consent_can_bind_an_existing_agent_of_ones_own(
    signed_in: Client, alice: User, client_id: str
) -> None:
    mine = Agent.objects.create(name="alice's codex", owner=alice)
    connect(signed_in, client_id, MCP_URL, agent=mine.agent_id)
    assert OAuthConnection.objects.get(user=alice).agent == mine


def test_consent_refuses_someone_elses_agent(signed_in: Client, client_id: str) -> None:
    theirs = Agent.objects.create(name="bob's", owner=User.objects.create_user("bob"))
    _, challenge = pkce()
    page = consent(signed_in, client_id, challenge, resource=MCP_URL, agent=theirs.agent_id)
    assert page.status_code == 400
    assert "agent must be one of your own agents" in page.content.decode()
    assert not OAuthConnection.objects.exists()


def test_the_consent_page_names_the_client_the_scope_and_the_agent(signed_in: Client, client_id: str) -> None:
    from tests.oauth_helpers import authorize_query

    _, challenge = pkce()
    page = signed_in.get(authorize_query(client_id, challenge, resource=MCP_URL))
    text = page.content.decode()
    assert page.status_code == 200
    assert 'Connect <span id="client-name">Test client</span> to TraceMem' in text
    assert "A new agent: Test client (alice)" in text
    assert "127.0.0.1:33418" in text
    assert "form-action 'self' http://127.0.0.1:33418" in page["Content-Security-Policy"]


def test_signing_in_comes_first(client_id: str) -> None:
    from tests.oauth_helpers import authorize_query

    _, challenge = pkce()
    response = Client().get(authorize_query(client_id, challenge, resource=MCP_URL))
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=/oauth/authorize/")


def test_a_request_without_pkce_is_refused(signed_in: Client, client_id: str) -> None:
    response = consent(signed_in, client_id, None, resource=MCP_URL)
    answer = code_from(response)
    assert answer["error"] == ["invalid_request"]
    assert answer["error_description"] == ["Code challenge required."]
    assert not OAuthConnection.objects.exists() and not user_tokens()


def test_a_code_exchanged_without_its_verifier_is_refused(signed_in: Client, client_id: str) -> None:
    _, challenge = pkce()
    answer = code_from(consent(signed_in, client_id, challenge, resource=MCP_URL))
    response = exchange(Client(), client_id, answer["code"][0], None, resource=MCP_URL)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert not user_tokens()


def test_a_token_for_another_resource_cannot_be_asked_for(signed_in: Client, client_id: str) -> None:
    _, challenge = pkce()
    answer = code_from(consent(signed_in, client_id, challenge, resource="https://elsewhere.example/mcp"))
    assert answer["error"] == ["invalid_target"]
    assert not user_tokens()


def test_a_token_minted_for_another_audience_is_refused(
    signed_in: Client, alice: User, client_id: str
) -> None:
    tokens = connect(signed_in, client_id, MCP_URL)
    # The same person, client and connection: only the audience differs.
    stored = AccessToken.objects.get(user=alice)
    stored.resource = ["https://elsewhere.example/mcp"]
    stored.save(update_fields=["resource"])
    response = oauth_mcp(tokens["access_token"])
    assert response.status_code == 401
    assert 'error="invalid_token"' in response["WWW-Authenticate"]
    assert response.json()["error"]["code"] == "unauthenticated"


def test_a_client_that_sends_no_resource_gets_a_token_bound_to_the_oauth_mcp_url(
    signed_in: Client, alice: User, client_id: str
) -> None:
    verifier, challenge = pkce()
    answer = code_from(consent(signed_in, client_id, challenge, resource=None))
    response = exchange(Client(), client_id, answer["code"][0], verifier, resource=None)
    assert response.status_code == 200
    assert AccessToken.objects.get(user=alice).resource == [MCP_URL]
    assert oauth_mcp(response.json()["access_token"]).status_code == 200


def test_a_token_without_the_mcp_scope_gets_403_insufficient_scope(
    signed_in: Client, alice: User, client_id: str
) -> None:
    tokens = connect(signed_in, client_id, MCP_URL)
    AccessToken.objects.filter(user=alice).update(scope="other")
    response = oauth_mcp(tokens["access_token"])
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response["WWW-Authenticate"]
    assert 'scope="mcp"' in response["WWW-Authenticate"]


def test_an_expired_token_is_refused(signed_in: Client, alice: User, client_id: str) -> None:
    tokens = connect(signed_in, client_id, MCP_URL)
    AccessToken.objects.filter(user=alice).update(expires=timezone.now() - timedelta(seconds=1))
    assert oauth_mcp(tokens["access_token"]).status_code == 401


def test_a_revoked_grant_is_refused_on_its_next_request(
    signed_in: Client, alice: User, client_id: str
) -> None:
    tokens = connect(signed_in, client_id, MCP_URL)
    assert oauth_mcp(tokens["access_token"]).status_code == 200
    connection = OAuthConnection.objects.get(user=alice)
    page = signed_in.get("/oauth/connections/")
    assert f'id="connection-{connection.pk}"' in page.content.decode()
    response = signed_in.post(f"/oauth/connections/{connection.pk}/revoke/")
    assert response.status_code == 302
    refused = oauth_mcp(tokens["access_token"])
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused["WWW-Authenticate"]
    # The refresh token died with it.
    again = Client().post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id},
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert not user_tokens() and not RefreshToken.objects.exists()
    entry = AuditEntry.objects.get(action="oauth.revoke")
    assert entry.before["revoked"] is False and entry.after["revoked"] is True


def test_someone_else_cannot_revoke_a_connection(signed_in: Client, alice: User, client_id: str) -> None:
    tokens = connect(signed_in, client_id, MCP_URL)
    connection = OAuthConnection.objects.get(user=alice)
    mallory = Client()
    mallory.force_login(User.objects.create_user("mallory"))
    mallory.post(f"/oauth/connections/{connection.pk}/revoke/")
    assert oauth_mcp(tokens["access_token"]).status_code == 200
    assert OAuthConnection.objects.get(pk=connection.pk).revoked_at is None


def test_an_admin_sees_and_revokes_every_connection(signed_in: Client, alice: User, client_id: str) -> None:
    tokens = connect(signed_in, client_id, MCP_URL)
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password=PASSWORD))
    page = admin.get("/oauth/connections/?all=1").content.decode()
    assert "alice" in page and "Test client (alice)" in page
    connection = OAuthConnection.objects.get(user=alice)
    admin.post(f"/oauth/connections/{connection.pk}/revoke/", {"back": "all"})
    assert oauth_mcp(tokens["access_token"]).status_code == 401
    assert AuditEntry.objects.get(action="oauth.revoke").actor_name == "root"


def test_a_refresh_rotates_and_the_old_refresh_token_is_refused(signed_in: Client, client_id: str) -> None:
    tokens = connect(signed_in, client_id, MCP_URL)
    first = Client().post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id},
    )
    assert first.status_code == 200, first.content
    assert first.json()["refresh_token"] != tokens["refresh_token"]
    assert oauth_mcp(first.json()["access_token"]).status_code == 200
    reused = Client().post(
        "/oauth/token/",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id},
    )
    assert reused.status_code == 400
    # Reuse means theft: the whole family is revoked, the rotated refresh token with it.
    stolen_after = Client().post(
        "/oauth/token/",
        {
            "grant_type": "refresh_token",
            "refresh_token": first.json()["refresh_token"],
            "client_id": client_id,
        },
    )
    assert stolen_after.status_code == 400


def test_a_disabled_agent_stops_its_oauth_tokens(signed_in: Client, alice: User, client_id: str) -> None:
    tokens = connect(signed_in, client_id, MCP_URL)
    Agent.objects.filter(owner=alice).update(disabled=True)
    response = oauth_mcp(tokens["access_token"])
    assert response.status_code == 401 and response.json()["error"]["details"]["reason"] == "agent_disabled"


def test_only_the_configured_group_may_connect(
    settings: Any, signed_in: Client, alice: User, client_id: str
) -> None:
    settings.TRACEMEM_OAUTH_CONNECT_GROUP = "oauth-users"
    _, challenge = pkce()
    from tests.oauth_helpers import authorize_query

    refused = signed_in.get(authorize_query(client_id, challenge, resource=MCP_URL))
    assert refused.status_code == 403
    assert not OAuthConnection.objects.exists()
    alice.groups.add(Group.objects.create(name="oauth-users"))
    connect(signed_in, client_id, MCP_URL)
    assert OAuthConnection.objects.filter(user=alice).exists()


# --- dynamic client registration ----------------------------------------------------------------


def test_registration_is_open_to_public_clients_with_chatgpt_redirect() -> None:
    response = register(
        Client(), redirect_uris=["https://chatgpt.com/connector_platform_oauth_redirect"], name="ChatGPT"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["token_endpoint_auth_method"] == "none"
    application = Application.objects.get(client_id=body["client_id"])
    assert application.client_type == "public" and application.registration_source == "dcr"


@pytest.mark.parametrize(
    ("uri", "why"),
    [
        ("http://evil.example/callback", "must use https"),
        ("https://evil.example/callback", "not allowed on this server"),
        ("javascript:alert(1)", "must use https"),
    ],
)
def test_registration_refuses_redirect_uris_outside_the_rules(uri: str, why: str) -> None:
    response = register(Client(), redirect_uris=[uri])
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_redirect_uri"
    assert why in response.json()["error_description"]
    assert not Application.objects.exists()


def test_allowed_redirect_patterns_are_configurable(settings: Any) -> None:
    settings.TRACEMEM_OAUTH_REDIRECT_URIS = ["https://agents.example.com/*"]
    assert register(Client(), redirect_uris=["https://agents.example.com/oauth/cb"]).status_code == 201
    assert (
        register(
            Client(), redirect_uris=["https://chatgpt.com/connector_platform_oauth_redirect"]
        ).status_code
        == 400
    )


def test_registration_is_rate_limited_per_address(settings: Any, redis_url: str) -> None:
    settings.TRACEMEM_OAUTH_REGISTRATION_RATE = "2/hour"
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "dcr"}
    }
    statuses = [register(Client(REMOTE_ADDR="203.0.113.9")).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    assert register(Client(REMOTE_ADDR="203.0.113.10")).status_code == 201
    assert Application.objects.count() == 3


def test_registration_body_must_be_json() -> None:
    response = Client().post("/oauth/register/", "not json", content_type="application/json")
    assert response.status_code == 400
    assert json.loads(response.content)["error"] == "invalid_client_metadata"


# --- sign-in with a second factor ----------------------------------------------------------------


def test_a_person_who_must_use_a_second_factor_reaches_no_consent_without_it(
    settings: Any, client_id: str
) -> None:
    from tests.oauth_helpers import authorize_query

    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    browser = Client()
    browser.force_login(User.objects.create_superuser("approver", password=PASSWORD))  # password only
    _, challenge = pkce()
    response = browser.get(authorize_query(client_id, challenge, resource=MCP_URL))
    assert response.status_code == 302 and response["Location"].startswith("/account/two-factor/")
    assert not OAuthConnection.objects.exists()


# --- the bound agent is the person's: separation of duties ---------------------------------------


def test_the_person_cannot_approve_their_oauth_agents_request(
    signed_in: Client, alice: User, client_id: str
) -> None:
    from approvals.models import Approval, Vote
    from tests.appr_helpers import make_route
    from tracemem_core.actor import Actor

    route = make_route("route_finance")
    alice.groups.add(route.approver_group)
    tokens = connect(signed_in, client_id, MCP_URL)

    def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = oauth_mcp(
            tokens["access_token"], "tools/call", {"name": name, "arguments": arguments}
        ).json()
        assert result["result"]["isError"] is False, result
        return dict(result["result"]["structuredContent"])

    decision_id = call("decision_create", {"intent": "finance.refund.issue", "automation_mode": "propose"})[
        "decision_id"
    ]
    approval_id = call(
        "decision_request_approval",
        {"decision_id": decision_id, "title": "Refund", "approval_route_id": "route_finance"},
    )["approval_id"]
    from approvals.services.requests import approval_vote
    from tracemem_core.errors import PermissionDenied

    with pytest.raises(PermissionDenied):
        approval_vote(
            actor=Actor.for_user(alice), approval_id=approval_id, decision="approve", rationale="mine"
        )
    assert not Vote.objects.exists()
    assert Approval.objects.get(pk=approval_id).status == "pending"


# --- client ID metadata documents under the outbound rules ---------------------------------------


@pytest.fixture
def cimd_https(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Any:
    import ssl

    import trustme
    from pytest_httpserver import HTTPServer

    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    yield server
    server.clear()
    server.stop()


def _document(url: str, redirect: str = REDIRECT) -> dict[str, Any]:
    return {
        "client_id": url,
        "client_name": "Doc client",
        "redirect_uris": [redirect],
        "token_endpoint_auth_method": "none",
    }


def _authorize_as(browser: Client, client_id: str) -> Any:
    from tests.oauth_helpers import authorize_query

    _, challenge = pkce()
    return browser.get(authorize_query(client_id, challenge, resource=MCP_URL))


def test_a_metadata_document_on_loopback_is_used_when_the_outbound_rules_allow_loopback(
    signed_in: Client, cimd_https: Any
) -> None:
    url = f"https://localhost:{cimd_https.port}/allowed.json"
    cimd_https.expect_request("/allowed.json").respond_with_json(_document(url))
    page = _authorize_as(signed_in, url)
    assert page.status_code == 200, page.content[:300]
    assert "Doc client" in page.content.decode() and "from its metadata document" in page.content.decode()
    assert Application.objects.get(client_id=url).registration_source == "cimd"


def test_a_metadata_document_on_loopback_is_refused_in_production(
    settings: Any, signed_in: Client, cimd_https: Any
) -> None:
    settings.TRACEMEM_OUTBOUND_ALLOW = []
    url = f"https://localhost:{cimd_https.port}/production.json"
    cimd_https.expect_request("/production.json").respond_with_json(_document(url))
    page = _authorize_as(signed_in, url)
    assert page.status_code == 400
    assert "invalid_client" in page.content.decode() or "Invalid client" in page.content.decode()
    assert not Application.objects.filter(client_id=url).exists()
    assert cimd_https.log == []  # never contacted


def test_a_metadata_document_at_a_link_local_address_is_never_fetched(signed_in: Client) -> None:
    url = "https://169.254.169.254/latest/client.json"
    page = _authorize_as(signed_in, url)
    assert page.status_code == 400
    assert not Application.objects.filter(client_id=url).exists()


def test_a_metadata_document_with_a_foreign_redirect_uri_is_refused(
    signed_in: Client, cimd_https: Any
) -> None:
    url = f"https://localhost:{cimd_https.port}/foreign.json"
    cimd_https.expect_request("/foreign.json").respond_with_json(_document(url, "https://evil.example/cb"))
    page = _authorize_as(signed_in, url)
    assert page.status_code == 400
    assert not Application.objects.filter(client_id=url).exists()
    assert len(cimd_https.log) == 1


def test_a_metadata_document_naming_another_client_id_is_refused(signed_in: Client, cimd_https: Any) -> None:
    url = f"https://localhost:{cimd_https.port}/liar.json"
    cimd_https.expect_request("/liar.json").respond_with_json(_document("https://chatgpt.com/client.json"))
    assert _authorize_as(signed_in, url).status_code == 400
    assert not Application.objects.filter(client_id=url).exists()


def test_the_django_admin_lists_connections_and_revokes_through_the_service(
    signed_in: Client, alice: User, client_id: str
) -> None:
    tokens = connect(signed_in, client_id, MCP_URL)
    connection = OAuthConnection.objects.get(user=alice)
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password=PASSWORD))
    listing = admin.get("/admin/oauth/oauthconnection/")
    assert listing.status_code == 200 and "Test client" in listing.content.decode()
    response = admin.post(
        "/admin/oauth/oauthconnection/",
        {"action": "revoke", "_selected_action": [str(connection.pk)]},
    )
    assert response.status_code == 302
    assert oauth_mcp(tokens["access_token"]).status_code == 401
    assert AuditEntry.objects.get(action="oauth.revoke").actor_name == "root"


def test_cancel_on_the_consent_page_sends_access_denied_and_binds_nothing(
    signed_in: Client, client_id: str
) -> None:
    from tests.oauth_helpers import authorize_query

    _, challenge = pkce()
    page = signed_in.get(authorize_query(client_id, challenge, resource=MCP_URL))
    data = {name: value for name, value in page.context["form"].initial.items() if value is not None}
    answer = code_from(signed_in.post("/oauth/authorize/", {**data, "agent": "new"}))
    assert answer["error"] == ["access_denied"] and "code" not in answer
    assert not OAuthConnection.objects.exists() and not Agent.objects.exists()


def test_a_registered_client_cannot_move_its_redirect_uri_outside_the_rules() -> None:
    registered = register(Client()).json()
    token = registered["registration_access_token"]
    path = urlsplit(registered["registration_client_uri"]).path
    body = {
        "client_name": "Test client",
        "redirect_uris": ["https://evil.example/cb"],
        "token_endpoint_auth_method": "none",
    }
    refused = Client().put(
        path, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_redirect_uri"
    assert Application.objects.get(client_id=registered["client_id"]).redirect_uris == REDIRECT
    body["redirect_uris"] = ["http://127.0.0.1:5000/cb"]
    moved = Client().put(
        path, json.dumps(body), content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert moved.status_code == 200, moved.content
    assert (
        Application.objects.get(client_id=registered["client_id"]).redirect_uris == "http://127.0.0.1:5000/cb"
    )


def test_the_settings_page_lists_and_revokes_ones_own_connections(
    signed_in: Client, alice: User, client_id: str
) -> None:
    tokens = connect(signed_in, client_id, MCP_URL)
    connection = OAuthConnection.objects.get(user=alice)
    page = signed_in.get("/account/").content.decode()
    assert f'id="oauth-connection-{connection.pk}"' in page and "Test client (alice)" in page
    response = signed_in.post(f"/oauth/connections/{connection.pk}/revoke/", {"back": "account"})
    assert response.status_code == 302 and response["Location"] == "/account/"
    assert oauth_mcp(tokens["access_token"]).status_code == 401
    assert "revoked" in signed_in.get("/account/").content.decode()


def test_a_get_without_a_token_is_the_discovery_401_and_with_one_405(
    signed_in: Client, client_id: str
) -> None:
    anonymous = Client().get("/oauth/mcp")
    assert anonymous.status_code == 401 and "resource_metadata=" in anonymous["WWW-Authenticate"]
    tokens = connect(signed_in, client_id, MCP_URL)
    with_token = Client().get("/oauth/mcp", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert with_token.status_code == 405
    # The key door is unchanged: 405 before anything else.
    assert Client().get("/mcp").status_code == 405


# --- JSON nested beyond the limit (issue 13): refused, never a RecursionError -------------------


def test_client_registration_refuses_a_body_nested_beyond_the_limit() -> None:
    depth = 100_000
    body = '{"redirect_uris": ["' + REDIRECT + '"], "x": ' + "[" * depth + "]" * depth + "}"
    response = Client(raise_request_exception=False).post(
        "/oauth/register/", body, content_type="application/json"
    )
    assert response.status_code == 400, response.content[:300]
    assert response.json()["error"] == "invalid_client_metadata"
    assert "nested deeper than" in response.json()["error_description"]
    assert not Application.objects.exists()


def test_a_metadata_document_nested_beyond_the_limit_is_refused(signed_in: Client, cimd_https: Any) -> None:
    url = f"https://localhost:{cimd_https.port}/deep.json"
    depth = 50_000
    cimd_https.expect_request("/deep.json").respond_with_data(
        '{"client_id": "' + url + '", "x": ' + "[" * depth + "]" * depth + "}",
        content_type="application/json",
    )
    page = _authorize_as(signed_in, url)
    assert page.status_code == 400
    assert not Application.objects.filter(client_id=url).exists()
