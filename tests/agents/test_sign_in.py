"""Issue 13.3: sign-in resists guessing — failed logins are throttled per account and per client
address (django-axes) with a clear message and an unlock path for admins — and TOTP two-factor
sign-in (django-otp), which an admin can require for everyone eligible to approve; the email and
Slack approval paths respect it (such a reviewer confirms in the browser, after 2FA)."""

from __future__ import annotations

import email
import re
import time
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.utils import timezone
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from approvals.models import Approval, EmailLink, SlackIntegration, Vote
from tests.appr_helpers import make_route, open_decision, request_approval
from tests.approvals.test_channels import Recorder, deliver_all, signed_slack_post, smtp  # noqa: F401 - smtp is a fixture

pytestmark = pytest.mark.django_db
PASSWORD = "pw-rita-correct-1"
LOCKED = b"Too many failed sign-ins"


@pytest.fixture(autouse=True)
def fast_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def rita(db: Any) -> Any:
    return get_user_model().objects.create_user("rita", "rita@example.com", PASSWORD)


def sign_in(
    client: Client, username: str, password: str, *, ip: str = "10.9.0.1", path: str = "/login/"
) -> Any:
    return client.post(path, {"username": username, "password": password}, REMOTE_ADDR=ip)


def signed_in(client: Client) -> bool:
    return client.get("/").status_code == 200


# --- throttling (django-axes) ----------------------------------------------------------------------


def test_twenty_wrong_passwords_lock_the_account_and_the_right_one_is_refused_clearly(rita: Any) -> None:
    client = Client()
    for attempt in range(20):
        # Spread over addresses: the account is locked whatever address the guesses come from.
        response = sign_in(client, "rita", f"guess-{attempt}", ip=f"10.9.1.{attempt}")
        assert response.status_code in (200, 429)
    right = sign_in(client, "rita", PASSWORD, ip="10.9.2.1")
    assert right.status_code == 429
    assert LOCKED in right.content
    assert b"15 minutes" in right.content and b"ask an admin" in right.content
    assert not signed_in(client)


def test_nineteen_wrong_passwords_do_not_lock_and_a_success_resets_the_count(rita: Any) -> None:
    client = Client()
    for attempt in range(19):
        assert sign_in(client, "rita", f"guess-{attempt}").status_code == 200
    assert sign_in(client, "rita", PASSWORD).status_code == 302 and signed_in(client)
    client.post("/logout/")
    for attempt in range(19):
        assert sign_in(client, "rita", f"again-{attempt}").status_code == 200
    assert sign_in(client, "rita", PASSWORD).status_code == 302


def test_twenty_failures_from_one_address_lock_that_address_only(rita: Any) -> None:
    client = Client()
    for attempt in range(20):
        sign_in(client, f"someone-{attempt}", "wrong", ip="10.9.3.3")
    from_there = sign_in(Client(), "rita", PASSWORD, ip="10.9.3.3")
    assert from_there.status_code == 429 and LOCKED in from_there.content
    elsewhere = Client()
    assert sign_in(elsewhere, "rita", PASSWORD, ip="10.9.3.4").status_code == 302 and signed_in(elsewhere)


def test_the_django_admin_login_is_throttled_too(rita: Any) -> None:
    rita.is_staff = True
    rita.save()
    client = Client()
    for attempt in range(20):
        sign_in(client, "rita", f"guess-{attempt}", path="/admin/login/")
    refused = sign_in(client, "rita", PASSWORD, path="/admin/login/")
    assert refused.status_code == 429 and LOCKED in refused.content


def test_an_admin_unlocks_an_account_with_axes_reset_username(rita: Any, capsys: Any) -> None:
    for attempt in range(20):
        sign_in(Client(), "rita", f"guess-{attempt}")
    assert sign_in(Client(), "rita", PASSWORD).status_code == 429
    call_command("axes_reset_username", "rita")
    client = Client()
    assert sign_in(client, "rita", PASSWORD).status_code == 302 and signed_in(client)


def test_an_admin_unlocks_an_account_in_the_django_admin(rita: Any) -> None:
    from axes.models import AccessAttempt

    for attempt in range(20):
        sign_in(Client(), "rita", f"guess-{attempt}")
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123")
    browser = Client()
    browser.force_login(admin)
    listing = browser.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and b"rita" in listing.content
    pks = [str(pk) for pk in AccessAttempt.objects.filter(username="rita").values_list("pk", flat=True)]
    done = browser.post(
        "/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": pks, "post": "yes"}
    )
    assert done.status_code == 302
    client = Client()
    assert sign_in(client, "rita", PASSWORD).status_code == 302 and signed_in(client)


def test_behind_a_proxy_the_forwarded_address_is_the_one_throttled(rita: Any, settings: Any) -> None:
    settings.TRACEMEM_TRUSTED_PROXY_COUNT = 1
    for attempt in range(20):
        Client().post(
            "/login/",
            {"username": f"x{attempt}", "password": "wrong"},
            REMOTE_ADDR="10.0.0.2",
            HTTP_X_FORWARDED_FOR=f"198.51.100.7, 203.0.113.{attempt}",
        )
    # Same proxy, another client address: not locked out by the attacker's failures.
    other = Client().post(
        "/login/",
        {"username": "rita", "password": PASSWORD},
        REMOTE_ADDR="10.0.0.2",
        HTTP_X_FORWARDED_FOR="203.0.113.200",
    )
    assert other.status_code == 302


# --- two-factor sign-in (django-otp TOTP) ------------------------------------------------------------


def code_for(device: TOTPDevice, *, ahead: int = 0) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + ahead * device.step
    return f"{totp.token():06d}"


def enrol(client: Client) -> TOTPDevice:
    page = client.get("/account/two-factor/")
    assert page.status_code == 200
    device = TOTPDevice.objects.get(user__username="rita", confirmed=False)
    done = client.post("/account/two-factor/", {"code": code_for(device)})
    assert done.status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    return device


def test_enrolment_page_shows_a_qr_code_and_the_secret_and_a_code_confirms_it(rita: Any) -> None:
    client = Client()
    client.force_login(rita)
    page = client.get("/account/two-factor/")
    assert page.status_code == 200
    body = page.content.decode()
    device = TOTPDevice.objects.get(user=rita)
    assert not device.confirmed
    assert "<svg" in body  # the QR code, drawn inline (no image host, no script)
    from base64 import b32encode

    secret = b32encode(device.bin_key).decode()
    assert " ".join(re.findall(".{1,4}", secret)) in body
    wrong = client.post(
        "/account/two-factor/", {"code": "000000" if code_for(device) != "000000" else "111111"}
    )
    assert wrong.status_code == 200 and b"did not match" in wrong.content
    device.refresh_from_db()
    assert not device.confirmed
    # django-otp throttles after a wrong code: even the right one must wait a moment.
    throttled = client.post("/account/two-factor/", {"code": code_for(device)})
    assert throttled.status_code == 200 and b"Too many wrong codes" in throttled.content
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_timestamp=timezone.now() - timedelta(minutes=1)
    )
    assert client.post("/account/two-factor/", {"code": code_for(device)}).status_code == 302
    device.refresh_from_db()
    assert device.confirmed
    assert b"Two-factor sign-in is on" in client.get("/account/").content


def test_with_totp_on_the_password_alone_does_not_open_anything(rita: Any, make_agent: Any) -> None:
    setup = Client()
    setup.force_login(rita)
    device = enrol(setup)

    client = Client()
    response = client.post("/login/", {"username": "rita", "password": PASSWORD, "next": "/review/"})
    assert response.status_code == 302 and response["Location"].startswith("/login/verify/")
    assert client.get("/review/")["Location"].startswith("/login/verify/")
    api = client.get("/api/v1/approvals")
    assert api.status_code == 403 and api.json()["error"]["code"] == "permission_denied"
    assert "two-factor" in api.json()["error"]["message"]
    wrong = client.post("/login/verify/?next=/review/", {"code": "12345x"})
    assert wrong.status_code == 200 and b"did not match" in wrong.content
    TOTPDevice.objects.filter(pk=device.pk).update(
        throttling_failure_timestamp=timezone.now() - timedelta(minutes=1)
    )
    ok = client.post("/login/verify/?next=/review/", {"code": code_for(device, ahead=1)})
    assert ok.status_code == 302 and ok["Location"] == "/review/"
    assert client.get("/review/").status_code == 200
    assert client.get("/api/v1/approvals").status_code == 200


def test_the_password_alone_cannot_turn_two_factor_sign_in_off_or_replace_the_phone(rita: Any) -> None:
    setup = Client()
    setup.force_login(rita)
    device = enrol(setup)
    attacker = Client()
    attacker.post("/login/", {"username": "rita", "password": PASSWORD})
    refused = attacker.post("/account/two-factor/disable/")
    assert refused.status_code == 302 and refused["Location"].startswith("/login/verify/")
    chain = attacker.get("/account/two-factor/", follow=True).redirect_chain
    assert chain[-1][0].startswith("/login/verify/")  # no new phone behind the existing one's back
    assert list(TOTPDevice.objects.filter(user=rita)) == [device]


def test_a_used_code_cannot_be_replayed(rita: Any) -> None:
    setup = Client()
    setup.force_login(rita)
    device = enrol(setup)
    code = code_for(device, ahead=1)
    first = Client()
    first.post("/login/", {"username": "rita", "password": PASSWORD})
    assert first.post("/login/verify/", {"code": code}).status_code == 302
    second = Client()
    second.post("/login/", {"username": "rita", "password": PASSWORD})
    assert second.post("/login/verify/", {"code": code}).status_code == 200
    assert second.get("/")["Location"].startswith("/login/verify/")


def test_required_for_approvers_sends_an_eligible_reviewer_to_enrol_first(rita: Any, settings: Any) -> None:
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    route = make_route("route_finance")
    rita.groups.add(route.approver_group)
    bystander = get_user_model().objects.create_user("bea", "bea@example.com", PASSWORD)

    client = Client()
    response = client.post("/login/", {"username": "rita", "password": PASSWORD, "next": "/review/"})
    assert response["Location"].startswith("/account/two-factor/")
    assert client.get("/review/")["Location"].startswith("/account/two-factor/")
    page = client.get("/account/two-factor/")
    assert b"requires two-factor sign-in" in page.content
    device = TOTPDevice.objects.get(user=rita)
    assert (
        client.post("/account/two-factor/?next=/review/", {"code": code_for(device)})["Location"]
        == "/review/"
    )
    assert client.get("/review/").status_code == 200

    other = Client()
    assert other.post("/login/", {"username": "bea", "password": PASSWORD})["Location"] == "/"
    assert other.get("/").status_code == 200  # not eligible to approve: not forced
    assert not TOTPDevice.objects.filter(user=bystander).exists()


def test_required_for_approvers_covers_superusers(settings: Any) -> None:
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    client = Client()
    assert client.post("/login/", {"username": "root", "password": PASSWORD})["Location"].startswith(
        "/account/two-factor/"
    )
    assert client.get("/admin/")["Location"].startswith("/account/two-factor/")


def test_turning_totp_off_is_refused_while_it_is_required(rita: Any, settings: Any) -> None:
    client = Client()
    client.force_login(rita)
    enrol(client)
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    rita.groups.add(make_route("route_finance").approver_group)
    refused = client.post("/account/two-factor/disable/", follow=True)
    assert b"required" in refused.content and TOTPDevice.objects.filter(user=rita, confirmed=True).exists()
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = False
    client.post("/account/two-factor/disable/")
    assert not TOTPDevice.objects.filter(user=rita).exists()


# --- email and Slack approvals respect it -------------------------------------------------------


def test_a_reviewer_who_must_use_2fa_is_emailed_a_browser_link_not_a_vote_link(
    api: Any,
    smtp: Recorder,  # noqa: F811 - the fixture imported above
    rita: Any,
    settings: Any,
) -> None:
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    route = make_route("route_finance", channels=[{"type": "email"}])
    rita.groups.add(route.approver_group)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    [delivery] = deliver_all(approval_id)
    assert delivery.status == "delivered"
    [(_, raw)] = smtp.messages
    text = "\n".join(
        p.get_payload(decode=True).decode()
        for p in email.message_from_bytes(raw).walk()
        if not p.is_multipart()
    )
    assert "/approvals/email/" not in text and f"/review/{approval_id}/" in text
    assert "two-factor" in text
    assert not EmailLink.objects.exists()


def test_an_email_link_cannot_vote_for_a_reviewer_who_must_use_2fa(
    api: Any,
    smtp: Recorder,  # noqa: F811 - the fixture imported above
    rita: Any,
    settings: Any,
) -> None:
    route = make_route("route_finance", channels=[{"type": "email"}])
    rita.groups.add(route.approver_group)
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    deliver_all(approval_id)  # sent while 2FA was not required: a vote link
    [(_, raw)] = smtp.messages
    path = re.search(r"(/approvals/email/[^\s\"<]+)", raw.decode(errors="replace").replace("=\n", "")).group(
        1
    )
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    browser = Client()
    page = browser.get(path)
    assert page.status_code == 200 and b"two-factor" in page.content
    assert b'value="approve"' not in page.content  # no vote buttons, a link to the review page instead
    csrf = browser.cookies["csrftoken"].value
    refused = browser.post(path, {"decision": "approve", "csrfmiddlewaretoken": csrf})
    assert refused.status_code == 403 and b"two-factor" in refused.content
    assert not Vote.objects.exists() and Approval.objects.get(pk=approval_id).status == "pending"


def test_a_slack_press_by_a_reviewer_who_must_use_2fa_points_to_the_browser(
    api: Any, rita: Any, settings: Any, httpserver: Any
) -> None:
    SlackIntegration.objects.create(
        name="main",
        bot_token="xoxb-test-1",
        signing_secret="sl4ck-s3cret",
        api_base_url=httpserver.url_for("/api/"),
    )
    httpserver.expect_request("/api/users.info").respond_with_json(
        {"ok": True, "user": {"id": "U1", "profile": {"email": "rita@example.com"}}}
    )
    route = make_route("route_finance")
    rita.groups.add(route.approver_group)
    TOTPDevice.objects.create(user=rita, name="phone", confirmed=True)  # turned on by herself
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    press = {
        "type": "block_actions",
        "user": {"id": "U1"},
        "actions": [{"action_id": "approve", "value": approval_id}],
    }
    response = signed_slack_post("sl4ck-s3cret", press)
    assert response.status_code == 200
    text = response.json()["text"]
    assert "two-factor" in text and f"/review/{approval_id}/" in text
    assert not Vote.objects.exists()


def test_a_personal_token_still_votes_for_a_reviewer_who_must_use_2fa(
    api: Any, rita: Any, settings: Any
) -> None:
    """Tokens are made on the settings page after signing in with the code (or by an admin): a
    machine credential, not a guessable password, so the API takes votes through them."""
    from agents.services import tokens as agent_tokens
    from tracemem_core.actor import Actor

    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    route = make_route("route_finance")
    rita.groups.add(route.approver_group)
    secret = agent_tokens.personal_token_create(actor=Actor.system(), user=rita).secret
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]
    voted = Client().post(
        f"/api/v1/approvals/{approval_id}/approve",
        {},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Token {secret}",
    )
    assert voted.status_code == 200 and voted.json()["status"] == "approved"


# --- TRACEMEM_REQUIRE_2FA_FOR_APPROVERS gates every way of approving -------------------------------


@pytest.fixture
def pending_for_rita(api: Any, rita: Any) -> str:
    route = make_route("route_finance", channels=[{"type": "email"}])
    rita.groups.add(route.approver_group)
    decision_id = open_decision(api)
    return request_approval(api, decision_id, approval_route_id="route_finance").json()["approval_id"]


def test_required_2fa_refuses_browser_votes_until_the_code_is_given(
    pending_for_rita: str, rita: Any, settings: Any
) -> None:
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    approval_id = pending_for_rita
    client = Client()
    assert sign_in(client, "rita", PASSWORD)["Location"].startswith("/account/two-factor/")
    page_vote = client.post(f"/review/{approval_id}/vote/", {"decision": "approve"})
    assert page_vote.status_code == 302 and page_vote["Location"].startswith("/account/two-factor/")
    htmx_vote = client.post(f"/review/{approval_id}/vote/", {"decision": "approve"}, HTTP_HX_REQUEST="true")
    assert htmx_vote.status_code == 403
    api_vote = client.post(f"/api/v1/approvals/{approval_id}/approve", {}, content_type="application/json")
    assert api_vote.status_code == 403
    assert api_vote.json()["error"]["details"] == {"reason": "second_factor_required"}
    assert not Vote.objects.exists() and Approval.objects.get(pk=approval_id).status == "pending"

    # A session that signed in before the setting was turned on is held back the same way.
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = False
    earlier = Client()
    sign_in(earlier, "rita", PASSWORD)
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    assert earlier.post(f"/review/{approval_id}/vote/", {"decision": "approve"})["Location"].startswith(
        "/account/two-factor/"
    )
    assert not Vote.objects.exists()

    enrol(client)  # the code turns it on and verifies this session
    voted = client.post(f"/review/{approval_id}/vote/", {"decision": "approve"})
    assert voted.status_code == 302 and voted["Location"] == f"/review/{approval_id}/"
    assert [(v.user.username, v.channel) for v in Vote.objects.all()] == [("rita", "web")]
    assert Approval.objects.get(pk=approval_id).status == "approved"


def test_required_2fa_refuses_a_slack_press_of_a_reviewer_without_a_device(
    pending_for_rita: str, rita: Any, settings: Any, httpserver: Any
) -> None:
    SlackIntegration.objects.create(
        name="main",
        bot_token="xoxb-test-1",
        signing_secret="sl4ck-s3cret",
        api_base_url=httpserver.url_for("/api/"),
    )
    httpserver.expect_request("/api/users.info").respond_with_json(
        {"ok": True, "user": {"id": "U1", "profile": {"email": "rita@example.com"}}}
    )
    press = {
        "type": "block_actions",
        "user": {"id": "U1"},
        "actions": [{"action_id": "approve", "value": pending_for_rita}],
    }
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    refused = signed_slack_post("sl4ck-s3cret", press)
    assert refused.status_code == 200
    assert "two-factor" in refused.json()["text"] and f"/review/{pending_for_rita}/" in refused.json()["text"]
    assert not Vote.objects.exists()
    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = False  # not required, no device: the button votes
    accepted = signed_slack_post("sl4ck-s3cret", press)
    assert accepted.status_code == 200
    assert [(v.user.username, v.channel) for v in Vote.objects.all()] == [("rita", "slack")]


def test_required_2fa_leaves_a_webhook_credential_able_to_resolve(
    pending_for_rita: str, rita: Any, settings: Any
) -> None:
    """As documented (docs/security-signin.md): webhook credentials, like personal tokens, are
    machine secrets an admin creates, not guessable passwords."""
    from approvals.services import credentials as approval_services
    from tracemem_core.actor import Actor

    settings.TRACEMEM_REQUIRE_2FA_FOR_APPROVERS = True
    _, secret = approval_services.webhook_credential_create(actor=Actor.system(), user=rita)
    resolved = Client().post(
        f"/api/v1/approvals/{pending_for_rita}/resolve",
        {"decision": "approve"},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {secret}",
    )
    assert resolved.status_code == 200, resolved.content
    assert [(v.user.username, v.channel) for v in Vote.objects.all()] == [("rita", "webhook")]
