"""Issue 16's "must show": a function governed by ``@governed`` waits while a reviewer approves in a
real browser (Playwright + Debian Chromium), then runs; the trace shows each step."""

from __future__ import annotations

import concurrent.futures
import shutil
import time
from typing import Any

import pytest
from tracemem_client import Client, governed

from tests.client_helpers import APPROVED_CALL, event_types
from tests.conftest import require_service
from tests.site.test_browser_flow import CHROMIUM, CHROMIUM_ARGS
from tracemem_site import demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-demo-admin-123"


def test_governed_function_runs_after_a_reviewer_approves_in_the_browser(
    live_server: Any, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    require_service("Chromium", shutil.which(CHROMIUM) is not None, "apt-get install -y chromium")
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setenv("TRACEMEM_DEMO_PASSWORD", PASSWORD)
    [key_line] = [line for line in demo.seed() if "export TRACEMEM_API_KEY=" in line]
    calls: list[tuple[str, str]] = []
    ran_at: list[float] = []

    with Client(live_server.url, key_line.split("=", 1)[1].strip()) as client:

        @governed(
            client,
            intent="code.refactor.execute",
            policy="code_change_policy_v1",
            approval_title="Refactoring Approval Required",
        )
        def refactor(component: str, change_type: str) -> str:
            calls.append((component, change_type))
            ran_at.append(time.monotonic())
            return "extracted auth logic"

        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as agent:
            waiting = agent.submit(refactor.with_decision, "user-service", "refactor")
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.set_default_timeout(15_000)
                page.goto(f"{live_server.url}/login/?next=/review/")
                page.fill("#id_username", demo.DEMO_ADMIN)
                page.fill("#id_password", PASSWORD)
                page.click("button:has-text('Sign in')")
                page.wait_for_url(f"{live_server.url}/review/")
                row = page.locator("tr[data-approval]", has_text="Refactoring Approval Required")
                deadline = time.monotonic() + 15
                while row.count() == 0 and time.monotonic() < deadline:
                    time.sleep(0.3)
                    page.reload()
                assert calls == []  # still waiting for the reviewer
                row.get_by_role("link").click()
                page.wait_for_url("**/review/appr_*/")
                assert "refactors need a reviewer" in page.content()
                page.fill("#id_rationale", "Refactor reviewed; go ahead.")
                page.get_by_role("button", name="Approve").click()
                clicked = time.monotonic()
                page.locator("#outcome").wait_for()
                browser.close()
            done = waiting.result(timeout=60)

        assert done.value == "extracted auth logic"
        assert calls == [("user-service", "refactor")]
        # The client waits with decision_wait, which the approval's commit wakes: no polling delay.
        assert ran_at[0] - clicked < 1.0
        decision_id = done.decision.decision_id
        assert event_types(client, decision_id) == APPROVED_CALL
        vote = next(e for e in client.iter_trace_events(decision_id) if e["type"] == "approval_vote")
        assert (vote["payload"]["channel"], vote["payload"]["voter"]["name"]) == ("web", "admin")
        assert client.decision_get(decision_id)["status"] == "committed"
