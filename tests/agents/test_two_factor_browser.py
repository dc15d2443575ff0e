"""Issue 13 in a real browser (Playwright + Debian Chromium): TOTP enrolment and sign-in, the
Content-Security-Policy breaking nothing (htmx polling, copy buttons, the API docs), and the API
docs loading only from this server."""

from __future__ import annotations

import os
import time
from base64 import b32decode
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django_otp.oath import TOTP

from agents.models import Agent
from tests.site.test_browser_flow import launch_chromium
from tests.ui_scenario import PASSWORD, decision_needing_approval, make_reviewer, make_route

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def shots() -> Path:
    target = Path(settings.VAR_DIR) / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    return target


class Tab:
    """A page plus everything its console said about the Content-Security-Policy."""

    def __init__(self, context: Any, base: str) -> None:
        self.page = context.new_page()
        self.page.set_default_timeout(10_000)
        self.base = base
        self.csp_errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", self._console)
        self.page.on("request", lambda request: self.requests.append(request.url))

    def _console(self, message: Any) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.csp_errors.append(message.text)

    def go(self, path: str) -> Any:
        self.page.goto(self.base + path)
        return self.page

    def sign_in(self, username: str, password: str = PASSWORD) -> Any:
        self.go("/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        self.page.click("button:has-text('Sign in')")
        return self.page


@pytest.fixture
def tab(browser: Any, live_server: Any) -> Iterator[Callable[[], Tab]]:
    contexts: list[Any] = []

    def open_tab() -> Tab:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        return Tab(context, live_server.url)

    yield open_tab
    for context in contexts:
        context.close()


def totp_code(secret: str, *, ahead: int = 0) -> str:
    totp = TOTP(b32decode(secret.replace(" ", "")), step=30, t0=0, digits=6, drift=0)
    totp.time = time.time() + 30 * ahead
    return f"{totp.token():06d}"


def test_totp_enrolment_and_sign_in_in_chromium(
    tab: Callable[[], Tab], live_server: Any, shots: Path
) -> None:
    make_route()
    make_reviewer("rita")
    first = tab()
    page = first.sign_in("rita")
    page.wait_for_url(f"{live_server.url}/")
    page.click("a.username")  # the account page, from the top bar
    page.wait_for_url("**/account/")
    page.get_by_role("link", name="Set up two-factor sign-in").click()
    page.wait_for_url("**/account/two-factor/")
    assert page.locator(".qr svg").is_visible()
    secret = page.locator("#totp-secret").inner_text()
    page.screenshot(path=str(shots / "totp_enrolment.png"), full_page=True)
    page.fill("#id_code", totp_code(secret))
    page.get_by_role("button", name="Turn on").click()
    page.wait_for_url("**/account/")
    assert "Two-factor sign-in is on" in page.content()
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login/")

    page = first.sign_in("rita")
    page.wait_for_url("**/login/verify/**")
    page.goto(f"{live_server.url}/review/")  # the password alone opens nothing
    page.wait_for_url("**/login/verify/**")
    page.fill("#id_code", "000000" if totp_code(secret, ahead=1) != "000000" else "111111")
    page.locator("main").get_by_role("button", name="Verify").click()
    page.locator(".msg-error").wait_for()
    assert "did not match" in page.locator(".msg-error").inner_text()
    get_user_model().objects.get(username="rita").totpdevice_set.update(throttling_failure_count=0)
    page.fill("#id_code", totp_code(secret, ahead=1))
    page.locator("main").get_by_role("button", name="Verify").click()
    page.wait_for_url(f"{live_server.url}/review/")
    page.screenshot(path=str(shots / "totp_signed_in.png"), full_page=True)
    assert first.csp_errors == []


def test_the_csp_breaks_nothing_htmx_polls_and_copy_buttons_work(
    tab: Callable[[], Tab], live_server: Any, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    make_route()
    make_reviewer("rob")
    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    agent, _ = make_agent("csp-agent")
    reviewer = tab()
    page = reviewer.sign_in("rob")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/review/")
    assert "Nothing is waiting for review." in page.locator("#queue").inner_text()
    _, approval = decision_needing_approval(agent)
    # htmx (a static script) polls the queue and the badge under the policy.
    page.locator(f"tr[data-approval='{approval.approval_id}']").wait_for(timeout=15_000)
    page.locator("#approval-count:has-text('1')").wait_for(timeout=25_000)

    admin = tab()
    page = admin.sign_in("root")
    page.wait_for_url(f"{live_server.url}/")
    page.goto(f"{live_server.url}/agents/{agent.agent_id}/")
    page.get_by_role("button", name="Issue key").click()
    page.locator("#new-key").wait_for()
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.locator("[data-copy='new-key']").click()
    page.locator(
        "[data-copy='new-key']:has-text('Copied'), [data-copy='new-key']:has-text('Ctrl+C')"
    ).wait_for()
    for path in ("/", "/decisions/", "/policies/", "/products/", "/routes/", "/account/", "/admin/"):
        page.goto(live_server.url + path)
    assert reviewer.csp_errors == [] and admin.csp_errors == []


def test_the_api_docs_render_from_this_server_alone(
    tab: Callable[[], Tab], live_server: Any, shots: Path
) -> None:
    docs = tab()
    page = docs.go("/api/docs/")
    page.locator(".swagger-ui .opblock").first.wait_for(timeout=20_000)
    assert page.locator(".swagger-ui .opblock").count() > 40
    page.screenshot(path=str(shots / "api_docs.png"))
    assert [u for u in docs.requests if not u.startswith(live_server.url) and not u.startswith("data:")] == []
    assert docs.csp_errors == []
