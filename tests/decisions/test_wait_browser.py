"""Issue 16's "must show": an agent waits with ``decision_wait`` (REST and MCP at once) on the
production server (scripts/serve.sh) while a reviewer approves in a real browser (Playwright +
Debian Chromium); both waits return ``approved`` within 1 s of the click."""

from __future__ import annotations

import concurrent.futures
import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import require_service
from tests.decisions.test_wait import pending_decision
from tests.fault_helpers import Process, free_port, process_env
from tests.mcp_helpers import mcp_call
from tests.site.test_browser_flow import CHROMIUM, CHROMIUM_ARGS
from tracemem_site import demo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "pw-demo-admin-123"


@pytest.fixture
def served(tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    require_service("Chromium", shutil.which(CHROMIUM) is not None, "apt-get install -y chromium")
    monkeypatch.setenv("TRACEMEM_DEMO_PASSWORD", PASSWORD)
    [line] = [line for line in demo.seed() if "export TRACEMEM_API_KEY=" in line]
    port = free_port()
    env = process_env(
        redis_url,
        TRACEMEM_HOST="127.0.0.1",
        TRACEMEM_PORT=str(port),
        TRACEMEM_WEB_WORKERS="1",
        TRACEMEM_VAR_DIR=str(tmp_path),
    )
    process = Process("serve.sh", tmp_path / "serve.log", env).start(ready="Application startup complete")
    yield f"http://127.0.0.1:{port}", line.split("=", 1)[1].strip()
    process.stop()


def test_decision_wait_returns_approved_within_a_second_of_the_reviewers_click(served: Any) -> None:
    url, key = served
    with httpx.Client(base_url=url, headers={"Authorization": f"Agent {key}"}, timeout=60) as http:
        decision_id = pending_decision(http)

        def rest_wait() -> tuple[dict[str, Any], float]:
            answer = http.get(f"/api/v1/decisions/{decision_id}/wait", params={"timeout_seconds": 50})
            return answer.json(), time.monotonic()

        def mcp_wait() -> tuple[Any, float]:
            result = mcp_call(url, key, "decision_wait", {"decision_id": decision_id, "timeout_seconds": 50})
            return result, time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as agents:
            by_rest, by_mcp = agents.submit(rest_wait), agents.submit(mcp_wait)
            from playwright.sync_api import sync_playwright

            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page()
                page.set_default_timeout(15_000)
                page.goto(f"{url}/login/?next=/review/")
                page.fill("#id_username", demo.DEMO_ADMIN)
                page.fill("#id_password", PASSWORD)
                page.click("button:has-text('Sign in')")
                page.wait_for_url(f"{url}/review/")
                page.locator("tr[data-approval]", has_text="please").get_by_role("link").click()
                page.wait_for_url("**/review/appr_*/")
                page.fill("#id_rationale", "Looked at it; go ahead.")
                assert not by_rest.done() and not by_mcp.done()  # both still waiting for the reviewer
                page.get_by_role("button", name="Approve").click()
                clicked = time.monotonic()
                page.locator("#outcome").wait_for()
                browser.close()
            waited, rest_returned = by_rest.result(timeout=30)
            (is_error, mcp_waited), mcp_returned = by_mcp.result(timeout=30)

    assert (waited["timed_out"], waited["approval_status"], waited["status"]) == (
        False,
        "approved",
        "approved",
    )
    assert is_error is False and (mcp_waited["timed_out"], mcp_waited["approval_status"]) == (
        False,
        "approved",
    )
    assert rest_returned - clicked < 1.0
    assert mcp_returned - clicked < 1.0
