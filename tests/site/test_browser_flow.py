"""End to end in a real browser (Playwright + Debian Chromium) against pytest-django's live_server.

An agent works through the official MCP client; reviewers work through the pages. Screenshots of
the queue, the approval page and the decision page are written to VAR_DIR/screenshots/.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from agents.models import Agent
from approvals.models import Approval
from decisions.models import Decision
from tests.conftest import require_service
from tests.mcp_helpers import mcp_call
from tests.ui_scenario import (
    PASSWORD,
    SECRET,
    decision_needing_approval,
    make_reviewer,
    make_route,
    publish_refund_policy,
)

# Playwright's sync API runs an event loop in this thread; Django's ORM calls made from the test
# body (set-up, assertions) are still plain synchronous calls.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("TRACEMEM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def launch_chromium() -> Iterator[Any]:
    """Debian's Chromium under Playwright, for a module-scoped browser fixture: Playwright's sync API
    keeps an event loop running in this thread while it is open, and other modules call asyncio.run()."""
    require_service("Chromium", shutil.which(CHROMIUM) is not None, "apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module-scoped like every browser fixture: while Playwright's sync API is open it keeps an
    # event loop running in this thread, and later modules (tests/site/test_wait_front.py) call
    # asyncio.run().
    yield from launch_chromium()


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    # PBKDF2's deliberate slowness is not under test here; six logins would cost seconds.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def screenshots() -> Path:
    target = Path(settings.VAR_DIR) / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    return target


@pytest.fixture
def open_page(browser: Any, live_server: Any) -> Iterator[Callable[..., Any]]:
    contexts: list[Any] = []

    def login(username: str, *, width: int = 1280) -> Any:
        context = browser.new_context(viewport={"width": width, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.goto(f"{live_server.url}/review/")
        assert "/login/?next=/review/" in page.url  # logged out → sent to login
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORD)
        page.click("button:has-text('Sign in')")
        page.wait_for_url(f"{live_server.url}/review/")
        return page

    yield login
    for context in contexts:
        context.close()


def _agent_mcp(live_server: Any, key: str, tool: str, args: dict[str, Any]) -> tuple[bool, Any]:
    # The official MCP client runs its own asyncio loop; keep it off Playwright's thread.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(mcp_call, live_server, key, tool, args).result(timeout=60)


@pytest.mark.django_db(transaction=True)
def test_reviewer_approves_in_the_browser_and_agent_sees_approved(
    open_page: Callable[..., Any],
    live_server: Any,
    make_agent: Callable[..., tuple[Agent, str]],
    screenshots: Path,
) -> None:
    make_route(rationale=True)
    make_reviewer("rita")
    agent, key = make_agent("refund-agent")
    publish_refund_policy(agent)
    # The agent's half goes through the official MCP client, as a real agent would.
    is_error, created = _agent_mcp(
        live_server,
        key,
        "decision_create",
        {"intent": "customer.refund", "automation_mode": "autonomous", "metadata": {"api_key": SECRET}},
    )
    assert not is_error, created
    decision_id = created["decision_id"]
    is_error, evaluated = _agent_mcp(
        live_server,
        key,
        "decision_evaluate",
        {"decision_id": decision_id, "policy_id": "refund_policy", "inputs": {"amount": 250}},
    )
    assert not is_error and evaluated["outcome"] == "requires_exception", evaluated
    is_error, requested = _agent_mcp(
        live_server,
        key,
        "decision_request_approval",
        {"decision_id": decision_id, "title": "Refund 250 EUR", "message": "Customer T-42 asks for 250"},
    )
    assert not is_error, requested
    decision = Decision.objects.get(pk=decision_id)
    approval = Approval.objects.get(decision=decision)
    page = open_page("rita")

    # The queue: the request is listed, the nav badge counts it.
    row = page.locator(f"tr[data-approval='{approval.approval_id}']")
    row.wait_for()
    assert "refund-agent" in row.inner_text() and "route_refunds" in row.inner_text()
    page.locator("#approval-count:has-text('1')").wait_for()
    page.screenshot(path=str(screenshots / "review_queue.png"), full_page=True)

    row.get_by_role("link").click()
    page.wait_for_url(f"**/review/{approval.approval_id}/")
    html = page.content()
    assert SECRET not in html
    assert "[redacted]" in page.locator("#metadata").inner_text()
    assert "refunds of 100 or more need a human" in html
    page.screenshot(path=str(screenshots / "approval_page.png"), full_page=True)

    page.fill("#id_rationale", "Customer is long-standing; refund is within goodwill budget.")
    page.get_by_role("button", name="Approve").click()
    page.locator("#outcome").wait_for()
    assert "approved" in page.locator("#approval-status").inner_text()
    assert page.get_by_role("button", name="Approve").count() == 0

    is_error, got = _agent_mcp(live_server, key, "decision_get", {"decision_id": decision.decision_id})
    assert not is_error and got["status"] == "approved" and got["approval_status"] == "approved"
    is_error, trace = _agent_mcp(live_server, key, "decision_trace", {"decision_id": decision.decision_id})
    assert not is_error
    vote = next(e for e in trace["events"] if e["type"] == "approval_vote")
    assert vote["payload"]["vote"] == "approve" and vote["payload"]["voter"]["name"] == "rita"
    assert vote["payload"]["channel"] == "web"
    resolved = next(e for e in trace["events"] if e["type"] == "approval_resolved")
    assert [a["name"] for a in resolved["payload"]["approvers"]] == ["rita"]
    assert SECRET not in str(trace)

    page.goto(f"{live_server.url}/decisions/{decision.decision_id}/")
    assert "Chain verified" in page.locator("#chain-badge").inner_text()
    assert SECRET not in page.content()
    page.screenshot(path=str(screenshots / "decision_page.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(screenshots / "decision_page_phone.png"), full_page=True)

    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server.url}/")
    assert page.locator("#stat-open").inner_text() == "1"  # approved, not yet committed
    page.screenshot(path=str(screenshots / "dashboard.png"), full_page=True)


@pytest.mark.django_db(transaction=True)
def test_reject_needs_a_rationale_then_rejects(
    open_page: Callable[..., Any], make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    make_route(rationale=True)
    make_reviewer("rob")
    agent, _ = make_agent("reject-agent")
    page = open_page("rob")
    assert "Nothing is waiting for review." in page.locator("#queue").inner_text()
    # The request arrives while the reviewer looks at the queue: htmx polling shows it unasked.
    _, approval = decision_needing_approval(agent)
    page.locator(f"tr[data-approval='{approval.approval_id}']").wait_for(timeout=15_000)
    page.goto(page.url + f"{approval.approval_id}/")
    # Bypass the browser's own `required` check to prove the server enforces the rationale.
    page.eval_on_selector("#id_rationale", "el => el.removeAttribute('required')")
    page.get_by_role("button", name="Reject").click()
    page.locator(".msg-error").wait_for()
    assert "requires a rationale" in page.locator(".msg-error").inner_text()
    assert Approval.objects.get(pk=approval.pk).status == "pending"

    page.fill("#id_rationale", "Amount exceeds the customer's order total.")
    page.get_by_role("button", name="Reject").click()
    page.locator("#outcome").wait_for()
    assert "rejected" in page.locator("#approval-status").inner_text()
    assert Approval.objects.get(pk=approval.pk).status == "rejected"


@pytest.mark.django_db(transaction=True)
def test_quorum_of_two_needs_both_reviewers_and_owner_sees_no_buttons(
    open_page: Callable[..., Any], make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    make_route(required=2)
    make_reviewer("ana")
    make_reviewer("ben")
    owner = make_reviewer("olga")
    agent, _ = make_agent("quorum-agent", owner=owner)
    _, approval = decision_needing_approval(agent)
    url_tail = f"{approval.approval_id}/"

    olga = open_page("olga")
    olga.goto(olga.url + url_tail)
    assert "You own the agent that asked" in olga.locator("#vote-blocked").inner_text()
    assert olga.get_by_role("button", name="Approve").count() == 0

    ana = open_page("ana")
    ana.goto(ana.url + url_tail)
    ana.get_by_role("button", name="Approve").click()
    ana.locator(".msg-success").wait_for()
    assert "pending" in ana.locator("#approval-status").inner_text()
    assert "already voted" in ana.locator("#vote-blocked").inner_text()
    assert Approval.objects.get(pk=approval.pk).status == "pending"

    ben = open_page("ben", width=390)  # a phone-sized screen
    ben.goto(ben.url + url_tail)
    ben.get_by_role("button", name="Approve").click()
    ben.locator("#outcome").wait_for()
    assert Approval.objects.get(pk=approval.pk).status == "approved"


def _no_horizontal_overflow(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


@pytest.mark.django_db(transaction=True)
def test_approved_request_shows_in_resolved_view_and_decision_card(
    open_page: Callable[..., Any],
    live_server: Any,
    make_agent: Callable[..., tuple[Agent, str]],
    screenshots: Path,
) -> None:
    """Issue 18: who decided and why stays visible after resolution, at 1280 px and on a phone."""
    make_route(rationale=True)
    make_reviewer("vera")
    agent, _ = make_agent("history-agent")
    decision, approval = decision_needing_approval(agent)
    why = "Within the goodwill budget; customer since 2019."
    page = open_page("vera")
    page.goto(f"{live_server.url}/review/{approval.approval_id}/")
    page.fill("#id_rationale", why)
    page.get_by_role("button", name="Approve").click()
    page.locator("#outcome").wait_for()

    # The queue is empty now; its link leads to the resolved view.
    page.goto(f"{live_server.url}/review/")
    page.get_by_role("link", name="Resolved approvals").click()
    page.wait_for_url("**/review/resolved/")
    item = page.locator(f"article[data-approval='{approval.approval_id}']")
    item.wait_for()
    text = item.inner_text()
    assert "approved" in text and "vera" in text and why in text and "route_refunds" in text
    page.screenshot(path=str(screenshots / "resolved_approvals.png"), full_page=True)

    item.get_by_role("link", name=decision.intent).click()
    page.wait_for_url(f"**/decisions/{decision.decision_id}/")
    card = page.locator("#approvals-card")
    card_text = card.inner_text()
    assert "approved" in card_text and "vera" in card_text and why in card_text and "web" in card_text
    assert card.get_by_role("link", name="Refund 250 EUR").get_attribute("href") == (
        f"/review/{approval.approval_id}/"
    )
    page.screenshot(path=str(screenshots / "decision_approvals_card.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    for url, name in (
        (f"/decisions/{decision.decision_id}/", "decision_approvals_card_phone.png"),
        ("/review/resolved/", "resolved_approvals_phone.png"),
        ("/review/", "review_queue_phone.png"),
        ("/", "dashboard_phone.png"),
    ):
        page.goto(f"{live_server.url}{url}")
        page.screenshot(path=str(screenshots / name), full_page=True)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert _no_horizontal_overflow(page), f"{url} overflows at 390 px: {width}"


LONG_AGENT = "customer-success-refunds-and-chargebacks-automation-agent-eu-west-1"
LONG_ROUTE = "route_customer_success_refunds_and_chargebacks_escalations_eu_west"
LONG_INTENT = "customer.refund.chargeback.dispute.escalation.second_line_review_requested"


@pytest.mark.django_db(transaction=True)
def test_phone_layout_with_a_full_queue_has_no_horizontal_overflow(
    open_page: Callable[..., Any],
    live_server: Any,
    make_agent: Callable[..., tuple[Agent, str]],
    screenshots: Path,
) -> None:
    """Issue 18: at 390 px the document never scrolls sideways, even with a full queue of long
    agent, route and intent names; wide tables scroll inside their own container."""
    from approvals.models import ApprovalRoute
    from tests.perm_helpers import grant
    from tests.ui_scenario import reviewers_group

    make_route()
    ApprovalRoute.objects.create(
        route_id=LONG_ROUTE,
        name="Refund and chargeback escalations",
        channels=[],
        approver_group=reviewers_group(),
    )
    keeper = make_reviewer("keeper-with-a-rather-long-username-for-a-phone")
    grant(keeper, "agents.manage_agents", "agents.manage_agent_keys", "agents.view_agent")
    agent, _ = make_agent(LONG_AGENT)
    approvals = []
    for n in range(24):
        decision, approval = decision_needing_approval(agent, intent=f"{LONG_INTENT}.{n:02d}")
        approvals.append(approval)
    Approval.objects.filter(pk__in=[a.pk for a in approvals[::2]]).update(
        route=ApprovalRoute.objects.get(route_id=LONG_ROUTE)
    )
    for approval in approvals[:3]:
        Approval.objects.filter(pk=approval.pk).update(status="approved", resolved_at=approval.requested_at)

    page = open_page(keeper.username, width=390)
    page.locator(f"tr[data-approval='{approvals[-1].approval_id}']").wait_for()
    for url, name in (
        ("/", "full_dashboard_phone.png"),
        ("/review/", "full_review_queue_phone.png"),
        (f"/review/?route={LONG_ROUTE}", "full_review_queue_route_phone.png"),
        ("/review/resolved/", "full_resolved_phone.png"),
        (f"/review/{approvals[-1].approval_id}/", "full_approval_phone.png"),
        (f"/decisions/{approvals[-1].decision_id}/", "full_decision_phone.png"),
        ("/decisions/", "full_decisions_phone.png"),
        (f"/agents/{agent.agent_id}/", "full_agent_keys_phone.png"),
        ("/agents/", "full_agents_phone.png"),
        ("/account/", "full_account_phone.png"),
    ):
        page.goto(f"{live_server.url}{url}")
        page.wait_for_load_state("networkidle")
        page.screenshot(path=str(screenshots / name), full_page=True)
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= 390 and _no_horizontal_overflow(page), f"{url} overflows at 390 px: {width}"
    # The queue table itself is wider than the phone: it scrolls inside its own container.
    page.goto(f"{live_server.url}/review/")
    wrap = page.evaluate(
        "(() => { const t = document.querySelector('#queue table');"
        " const w = t.closest('.table-wrap'); return [t.scrollWidth, w.clientWidth, getComputedStyle(w).overflowX]; })()"
    )
    assert wrap[0] > wrap[1] and wrap[2] == "auto", wrap
    # Every nav link and the account box are on screen (the nav wraps rather than running off).
    rights = page.evaluate(
        "[...document.querySelectorAll('.topbar a, .topbar button')].map(e => e.getBoundingClientRect().right)"
    )
    assert len(rights) >= 5 and max(rights) <= 390, rights


@pytest.mark.django_db(transaction=True)
def test_phone_layout_for_a_superuser_with_every_menu_has_no_horizontal_overflow(
    open_page: Callable[..., Any],
    live_server: Any,
    make_agent: Callable[..., tuple[Agent, str]],
    screenshots: Path,
) -> None:
    """Issue 18 (audit): the superuser's nav is the longest (agents, policies, products, routes,
    audit log, admin); at 390 px it still wraps on screen and no page listed in it scrolls sideways."""
    from django.contrib.auth import get_user_model

    make_route()
    root = get_user_model().objects.create_superuser("root-with-a-long-name", password=PASSWORD)
    agent, _ = make_agent(LONG_AGENT)
    decision, approval = decision_needing_approval(agent, intent=LONG_INTENT)
    page = open_page(root.username, width=390)
    for url in (
        "/",
        "/review/",
        "/review/resolved/",
        "/review/deliveries/",
        f"/review/{approval.approval_id}/",
        "/decisions/",
        f"/decisions/{decision.decision_id}/",
        "/agents/",
        "/policies/",
        "/policies/refund_policy/",
        "/products/",
        "/routes/",
        "/audit/",
        "/account/",
    ):
        response = page.goto(f"{live_server.url}{url}")
        assert response is not None and response.status == 200, url
        page.wait_for_load_state("networkidle")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if not _no_horizontal_overflow(page):
            page.screenshot(path=str(screenshots / "superuser_overflow_phone.png"), full_page=True)
        assert _no_horizontal_overflow(page), f"{url} overflows at 390 px: {width}"
        rights = page.evaluate(
            "[...document.querySelectorAll('.topbar a, .topbar button')].map(e => e.getBoundingClientRect().right)"
        )
        assert len(rights) >= 9 and max(rights) <= 390, (url, rights)
