"""The audit log page in a real browser (Playwright + Debian Chromium): a superuser finds it in the
menu, filters it and pages back; a staff user with every admin permission sees neither."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from agents.services import registry as agent_registry
from tests.perm_helpers import make_staff
from tests.site.test_browser_flow import fast_password_hashing, launch_chromium, open_page  # noqa: F401
from tests.ui_scenario import PASSWORD
from tracemem_core.actor import Actor

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    # Module-scoped: Playwright's sync API runs one instance at a time, and test_ui_browser's
    # session-scoped browser starts after this module is done.
    yield from launch_chromium()


@pytest.mark.django_db(transaction=True)
def test_superuser_reads_filters_and_pages_the_audit_log(open_page: Callable[..., Any]) -> None:  # noqa: F811
    get_user_model().objects.create_superuser("root", "root@example.com", PASSWORD)
    make_staff("ada", password=PASSWORD)
    for index in range(55):
        agent_registry.agent_create(actor=Actor.system("seed"), name=f"bot-{index:02d}")

    page = open_page("root")
    page.click("nav.mainnav a:has-text('Audit log')")
    page.wait_for_selector("#audit-entries")
    assert "Hash chain intact: 55 entries verified." in page.inner_text("#chain-status")
    assert page.locator("#audit-entries tbody tr").count() == 50
    assert page.inner_text("#entry-55").count("agent.create") == 1
    page.click("#older")
    page.wait_for_selector("#entry-5")
    assert page.locator("#audit-entries tbody tr").count() == 5

    page.fill("input[name=object]", "agent:nonexistent")
    page.click("button:has-text('Filter')")
    page.wait_for_selector("text=No entries.")
    page.fill("input[name=since]", "last tuesday")
    page.click("button:has-text('Filter')")
    assert "since must be an ISO-8601 timestamp" in page.inner_text("#filter-error")

    staff = open_page("ada")
    assert staff.locator("nav.mainnav a:has-text('Audit log')").count() == 0
    response = staff.goto(staff.url.replace("/review/", "/audit/"))
    assert response is not None and response.status == 403
