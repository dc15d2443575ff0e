"""Issue 13.4: personal access tokens have a lifecycle — people list and revoke their own (admins:
anyone's) on the settings page and through ``GET /api/v1/tokens`` / ``POST /api/v1/tokens/{id}/revoke``,
tokens may expire, ``manage.py revoke_token`` revokes one, and a revoked token gets 401 next time."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from agents.models import PersonalToken
from agents.services import tokens as agent_tokens
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument

pytestmark = pytest.mark.django_db


def make_user(username: str, *, superuser: bool = False) -> Any:
    model = get_user_model()
    if superuser:
        return model.objects.create_superuser(username, f"{username}@example.com", "pw-unused-123")
    return model.objects.create_user(username, f"{username}@example.com", "pw-unused-123")


def issue(user: Any, **kw: Any) -> tuple[PersonalToken, str]:
    issued = agent_tokens.personal_token_create(actor=Actor.system(), user=user, **kw)
    return issued.token, issued.secret


def call(secret: str, method: str, path: str) -> Any:
    client = Client()
    send = client.get if method == "GET" else client.post
    return send(path, HTTP_AUTHORIZATION=f"Token {secret}")


def test_a_revoked_personal_token_gets_401_on_its_next_request() -> None:
    rita = make_user("rita")
    token, secret = issue(rita, name="laptop")
    listed = call(secret, "GET", "/api/v1/tokens")
    assert listed.status_code == 200
    [row] = listed.json()["tokens"]
    assert row["token_id"] == token.token_id == f"tok_{token.pk}"
    assert (row["name"], row["user"], row["state"], row["prefix"]) == (
        "laptop",
        "rita",
        "active",
        token.prefix,
    )
    assert secret not in listed.content.decode()

    revoked = call(secret, "POST", f"/api/v1/tokens/{token.token_id}/revoke")
    assert revoked.status_code == 200 and revoked.json()["state"] == "revoked"
    again = call(secret, "GET", "/api/v1/tokens")
    assert again.status_code == 401
    assert again.json()["error"]["details"]["reason"] == "revoked"


def test_people_see_only_their_own_tokens_and_cannot_revoke_anyone_elses() -> None:
    rita, bob = make_user("rita"), make_user("bob")
    _, rita_secret = issue(rita)
    bob_token, bob_secret = issue(bob)
    assert [t["user"] for t in call(rita_secret, "GET", "/api/v1/tokens").json()["tokens"]] == ["rita"]
    refused = call(rita_secret, "POST", f"/api/v1/tokens/{bob_token.token_id}/revoke")
    assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    unknown = call(rita_secret, "POST", "/api/v1/tokens/tok_999999/revoke").json()
    assert unknown["error"] == {**refused.json()["error"], "message": "no token tok_999999"}
    bob_token.refresh_from_db()
    assert bob_token.revoked_at is None and call(bob_secret, "GET", "/api/v1/tokens").status_code == 200
    nosy = call(rita_secret, "GET", "/api/v1/tokens?user=bob")
    assert nosy.status_code == 403 and nosy.json()["error"]["code"] == "permission_denied"


def test_an_admin_lists_and_revokes_anyones_token() -> None:
    root, bob = make_user("root", superuser=True), make_user("bob")
    _, root_secret = issue(root)
    bob_token, bob_secret = issue(bob)
    assert [t["user"] for t in call(root_secret, "GET", "/api/v1/tokens?user=bob").json()["tokens"]] == [
        "bob"
    ]
    assert {t["user"] for t in call(root_secret, "GET", "/api/v1/tokens?all=true").json()["tokens"]} == {
        "root",
        "bob",
    }
    assert call(root_secret, "GET", "/api/v1/tokens?user=nobody").status_code == 404
    assert call(root_secret, "POST", f"/api/v1/tokens/{bob_token.token_id}/revoke").status_code == 200
    assert call(bob_secret, "GET", "/api/v1/tokens").status_code == 401


def test_a_token_with_an_expiry_stops_working_when_it_passes() -> None:
    rita = make_user("rita")
    token, secret = issue(rita, expires_at=timezone.now() + timedelta(days=30))
    body = call(secret, "GET", "/api/v1/tokens").json()["tokens"][0]
    assert body["expires_at"] == token.expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    PersonalToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    expired = call(secret, "GET", "/api/v1/tokens")
    assert expired.status_code == 401 and expired.json()["error"]["details"]["reason"] == "expired"
    with pytest.raises(InvalidArgument):
        issue(rita, expires_at=timezone.now() - timedelta(days=1))


def test_the_settings_page_creates_a_token_shown_once_lists_and_revokes_it() -> None:
    rita = make_user("rita")
    browser = Client()
    browser.force_login(rita)
    assert b"No tokens" in browser.get("/account/").content
    created = browser.post("/account/tokens/", {"name": "ci", "expires_in_days": "30"})
    assert created.status_code == 302 and created["Location"] == "/account/"
    page = browser.get("/account/")
    assert page["Cache-Control"] == "no-store"
    token = PersonalToken.objects.get(user=rita)
    secret = page.content.decode().split('<code id="new-token">')[1].split("</code>")[0]
    assert secret.startswith("tmpat_") and token.expires_at is not None
    assert call(secret, "GET", "/api/v1/tokens").status_code == 200
    again = browser.get("/account/").content.decode()
    assert secret not in again and token.prefix in again  # shown once; listed by prefix
    bad = browser.post("/account/tokens/", {"name": "x", "expires_in_days": "-4"}, follow=True)
    assert b"from 1 to 3650" in bad.content and PersonalToken.objects.filter(user=rita).count() == 1
    assert browser.post(f"/account/tokens/{token.token_id}/revoke/").status_code == 302
    assert call(secret, "GET", "/api/v1/tokens").status_code == 401
    assert b"revoked" in browser.get("/account/").content


def test_the_settings_page_cannot_revoke_someone_elses_token() -> None:
    rita, bob = make_user("rita"), make_user("bob")
    bob_token, _ = issue(bob)
    browser = Client()
    browser.force_login(rita)
    page = browser.post(f"/account/tokens/{bob_token.token_id}/revoke/", follow=True)
    assert b"no token" in page.content
    bob_token.refresh_from_db()
    assert bob_token.revoked_at is None


def test_manage_py_revoke_token_revokes_once_and_says_so(capsys: Any) -> None:
    rita = make_user("rita")
    token, secret = issue(rita)
    call_command("revoke_token", token.token_id)
    first = capsys.readouterr().out
    assert f"Revoked token {token.token_id} ({token.prefix}…) of rita" in first
    assert call(secret, "GET", "/api/v1/tokens").status_code == 401
    call_command("revoke_token", token.token_id)
    assert "was already revoked" in capsys.readouterr().out
    with pytest.raises(CommandError, match="no token tok_424242"):
        call_command("revoke_token", "tok_424242")


def test_manage_py_create_token_can_set_an_expiry(capsys: Any) -> None:
    make_user("rita")
    call_command("create_token", "rita", "--expires-in-days", "7")
    token = PersonalToken.objects.get(user__username="rita")
    assert timedelta(days=6, hours=23) < token.expires_at - timezone.now() <= timedelta(days=7)
    assert "expires" in capsys.readouterr().out


def test_the_token_endpoints_are_in_the_openapi_schema() -> None:
    schema = Client().get("/api/schema/?format=json").json()
    assert schema["paths"]["/api/v1/tokens"]["get"]["operationId"] == "tokens_list"
    assert schema["paths"]["/api/v1/tokens/{token_id}/revoke"]["post"]["operationId"] == "token_revoke"


def test_an_agent_key_is_not_a_personal_token(api: Any) -> None:
    response = api.get("/api/v1/tokens")
    assert response.status_code == 401


# --- token ids are parsed strictly; every change is in the audit log -----------------------------

BAD_IDS = [
    "tok_²",
    "tok_١",
    "tok_abc",
    "12",
    "tok_0",
    "tok_01",
    "tok_-1",
    "tok_" + "9" * 19,
    "tok_1 ",
    "TOK_1",
]


@pytest.mark.parametrize("bad", BAD_IDS)
def test_a_malformed_token_id_is_an_invalid_argument_naming_it(bad: str) -> None:
    from urllib.parse import quote

    rita = make_user("rita")
    token, secret = issue(rita)
    response = call(secret, "POST", f"/api/v1/tokens/{quote(bad)}/revoke")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_argument" and error["details"]["field"] == "token_id"
    assert "tok_ followed by a number, as GET /api/v1/tokens shows" in error["message"]
    token.refresh_from_db()
    assert token.revoked_at is None


def test_a_well_formed_token_id_that_does_not_exist_is_not_found() -> None:
    _, secret = issue(make_user("rita"))
    response = call(secret, "POST", "/api/v1/tokens/tok_999999/revoke")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"


def test_the_settings_page_and_the_command_refuse_a_malformed_token_id_with_its_rule() -> None:
    rita = make_user("rita")
    token, _ = issue(rita)
    client = Client(raise_request_exception=False)
    client.force_login(rita)
    page = client.post("/account/tokens/tok_%C2%B2/revoke/", follow=True)
    assert page.status_code == 200
    assert "tok_ followed by a number" in page.content.decode()
    with pytest.raises(CommandError, match="tok_ followed by a number"):
        call_command("revoke_token", "tok_²")
    token.refresh_from_db()
    assert token.revoked_at is None


def test_creating_and_revoking_tokens_is_in_the_audit_log_by_whoever_did_it(capsys: Any) -> None:
    from audit.models import AuditEntry

    rita = make_user("rita")
    admin = make_user("root", superuser=True)
    client = Client()
    client.force_login(rita)
    client.post("/account/tokens/", {"name": "laptop", "expires_in_days": "30"})
    laptop = PersonalToken.objects.get(user=rita, name="laptop")
    client.post(f"/account/tokens/{laptop.token_id}/revoke/")
    client.post(f"/account/tokens/{laptop.token_id}/revoke/")  # twice: nothing changes, nothing logged
    _, admin_secret = issue(admin, name="admin-cli")
    ci, _ = issue(rita, name="ci")
    assert call(admin_secret, "POST", f"/api/v1/tokens/{ci.token_id}/revoke").status_code == 200
    call_command("create_token", "rita", "--expires-in-days", "7")
    cli = PersonalToken.objects.filter(user=rita).order_by("-pk").first()
    call_command("revoke_token", cli.token_id)

    entries = list(AuditEntry.objects.filter(object_type="personal_token").order_by("seq"))
    seen = [
        (e.action, e.object_id, e.actor_name if e.actor_kind == "user" else e.actor_kind) for e in entries
    ]
    admin_cli = PersonalToken.objects.get(name="admin-cli")
    assert seen == [
        ("personal_token.create", laptop.token_id, "rita"),
        ("personal_token.revoke", laptop.token_id, "rita"),
        ("personal_token.create", admin_cli.token_id, "system"),
        ("personal_token.create", ci.token_id, "system"),
        ("personal_token.revoke", ci.token_id, "root"),
        ("personal_token.create", cli.token_id, "system"),
        ("personal_token.revoke", cli.token_id, "system"),
    ]
    # The expiry is part of what was created; revocation keeps it and adds when.
    laptop.refresh_from_db()
    assert entries[0].after["expires_at"] == laptop.expires_at.isoformat(timespec="microseconds").replace(
        "+00:00", "Z"
    )
    assert entries[5].after["expires_at"] is not None
    assert entries[1].before["revoked_at"] is None and entries[1].after["revoked_at"] is not None
    dumped = str([(e.before, e.after) for e in entries])
    assert not re.search(r"tmpat_[A-Za-z0-9]{40}", dumped) and "token_hash" not in dumped
