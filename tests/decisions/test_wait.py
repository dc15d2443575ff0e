"""``decision_wait`` (docs/contract/interfaces.md, issue 16): returns on the approval's commit, at its timeout with
``timed_out: true``, at an approval's expiry, and never by a sleep loop; REST and MCP alike.

These run against the live test server (a thread per request: a wait blocks its thread there).
The production server, where a wait holds no thread, is tested in ``tests/site/test_wait_front.py``.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.utils import timezone

from approvals.models import Approval
from approvals.services import requests as approval_services
from decisions.models import Decision
from tests.client_helpers import Seeded
from tests.conftest import superuser_sql
from tests.mcp_helpers import call_both, error_code, mcp_call
from tracemem_core import waits
from tracemem_core.actor import Actor
from tracemem_site.demo import DEMO_ADMIN

pytest_plugins = ["tests.client_fixtures"]  # fixtures: seeded
pytestmark = pytest.mark.django_db(transaction=True)


def rest(seeded: Seeded) -> httpx.Client:
    return httpx.Client(base_url=seeded.url, headers={"Authorization": f"Agent {seeded.key}"}, timeout=60)


def pending_decision(http: httpx.Client, *, expires_in: float | None = None) -> str:
    decision_id = http.post(
        "/api/v1/decisions", json={"intent": "code.refactor.execute", "automation_mode": "propose"}
    ).json()["decision_id"]
    answer = http.post(f"/api/v1/decisions/{decision_id}/approvals", json={"title": "please"})
    assert answer.status_code == 201, answer.text
    if expires_in is not None:  # routes allow at least 60 s; the test brings the deadline closer
        Approval.objects.filter(pk=answer.json()["approval_id"]).update(
            expires_at=timezone.now() + timedelta(seconds=expires_in)
        )
    return decision_id


def vote_later(decision_id: str, vote: str, delay: float) -> tuple[threading.Thread, list[float]]:
    """A reviewer who votes through the service after ``delay``; records when the vote committed."""
    committed: list[float] = []

    def run() -> None:
        time.sleep(delay)
        try:
            approval_id = Decision.objects.get(pk=decision_id).pending_approval_id
            admin = get_user_model().objects.get(username=DEMO_ADMIN)
            approval_services.approval_vote(
                actor=Actor.for_user(admin),
                approval_id=approval_id,
                decision=vote,
                rationale="looked at it",
                channel="web",
            )
            committed.append(time.monotonic())
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, committed


def test_rest_wait_returns_approved_right_after_the_vote_commits(seeded: Seeded) -> None:
    with rest(seeded) as http:
        decision_id = pending_decision(http)
        thread, committed = vote_later(decision_id, "approve", 1.0)
        started = time.monotonic()
        answer = http.get(f"/api/v1/decisions/{decision_id}/wait", params={"timeout_seconds": 20})
        returned = time.monotonic()
        thread.join(10)
    assert answer.status_code == 200, answer.text
    waited = answer.json()
    assert (waited["timed_out"], waited["status"], waited["approval_status"]) == (
        False,
        "approved",
        "approved",
    )
    assert waited["pending_approval_id"] is None and waited["decision_id"] == decision_id
    assert returned - committed[0] < 0.5  # woken by the commit, not by a poll
    assert returned - started >= 1.0


def test_rest_wait_with_no_answer_returns_at_its_timeout(seeded: Seeded) -> None:
    with rest(seeded) as http:
        decision_id = pending_decision(http)
        started = time.monotonic()
        waited = http.get(f"/api/v1/decisions/{decision_id}/wait", params={"timeout_seconds": "1.5"}).json()
        elapsed = time.monotonic() - started
    assert (waited["timed_out"], waited["status"], waited["approval_status"]) == (
        True,
        "needs_approval",
        "pending",
    )
    assert 1.5 <= elapsed < 3


def test_wait_reports_an_expiry_when_it_happens_not_at_the_timeout(seeded: Seeded) -> None:
    with rest(seeded) as http:
        decision_id = pending_decision(http, expires_in=2)
        started = time.monotonic()
        waited = http.get(f"/api/v1/decisions/{decision_id}/wait", params={"timeout_seconds": 30}).json()
        elapsed = time.monotonic() - started
    assert (waited["timed_out"], waited["status"], waited["approval_status"]) == (
        False,
        "rejected",
        "expired",
    )
    assert 1 <= elapsed < 4


def test_wait_returns_at_once_when_nothing_is_pending_and_after_an_abort(seeded: Seeded) -> None:
    with rest(seeded) as http:
        decision_id = http.post(
            "/api/v1/decisions", json={"intent": "a.b.c", "automation_mode": "autonomous"}
        ).json()["decision_id"]
        started = time.monotonic()
        waited = http.get(f"/api/v1/decisions/{decision_id}/wait").json()
        assert time.monotonic() - started < 1
        assert (waited["timed_out"], waited["approval_status"], waited["status"]) == (False, None, "open")

        pending = pending_decision(http)

        def abort() -> None:
            time.sleep(0.8)
            with rest(seeded) as other:
                other.post(f"/api/v1/decisions/{pending}/close", json={"action": "abort"})

        threading.Thread(target=abort, daemon=True).start()
        started = time.monotonic()
        waited = http.get(f"/api/v1/decisions/{pending}/wait", params={"timeout_seconds": 20}).json()
        assert time.monotonic() - started < 3
        assert (waited["timed_out"], waited["status"], waited["approval_status"]) == (False, "aborted", None)


def test_wait_refuses_bad_timeouts_and_unknown_or_foreign_decisions(seeded: Seeded, make_agent: Any) -> None:
    with rest(seeded) as http:
        decision_id = pending_decision(http)
        for bad in ("-1", "51", "true", "soon", "1e3"):
            answer = http.get(f"/api/v1/decisions/{decision_id}/wait", params={"timeout_seconds": bad})
            assert answer.status_code == 400, bad
            assert answer.json()["error"]["code"] == "invalid_argument"
            assert answer.json()["error"]["details"]["field"] == "timeout_seconds"
        answer = http.get(f"/api/v1/decisions/{decision_id}/wait", params={"timeout": 3})
        assert answer.status_code == 400 and answer.json()["error"]["details"]["field"] == "timeout"
        unknown = http.get("/api/v1/decisions/TMEM_01J00000000000000000000000/wait")
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    _, other_key = make_agent("someone-else")
    with httpx.Client(base_url=seeded.url, headers={"Authorization": f"Agent {other_key}"}) as other:
        started = time.monotonic()
        foreign = other.get(f"/api/v1/decisions/{decision_id}/wait", params={"timeout_seconds": 5})
        assert foreign.status_code == 404 and time.monotonic() - started < 2


def test_mcp_wait_returns_approved_after_the_vote_and_times_out_otherwise(seeded: Seeded) -> None:
    with rest(seeded) as http:
        decision_id = pending_decision(http)
        thread, committed = vote_later(decision_id, "approve", 1.0)
        is_error, waited = mcp_call(
            seeded.url, seeded.key, "decision_wait", {"decision_id": decision_id, "timeout_seconds": 20}
        )
        returned = time.monotonic()
        thread.join(10)
        other = pending_decision(http)
    assert is_error is False
    assert (waited["timed_out"], waited["approval_status"], waited["status"]) == (
        False,
        "approved",
        "approved",
    )
    assert returned - committed[0] < 1.0  # the client's own session teardown included
    started = time.monotonic()
    is_error, timed_out = mcp_call(
        seeded.url, seeded.key, "decision_wait", {"decision_id": other, "timeout_seconds": 1}
    )
    assert is_error is False and timed_out["timed_out"] is True
    assert 1 <= time.monotonic() - started < 4
    is_error, refused = mcp_call(
        seeded.url, seeded.key, "decision_wait", {"decision_id": other, "timeout_seconds": 99}
    )
    assert is_error is True and refused.startswith("[invalid_argument] timeout_seconds")


def test_without_notifications_a_waiter_rechecks_on_the_fallback() -> None:
    def unreachable() -> Any:
        raise OSError("database unreachable")

    hub = waits.Hub(connect=unreachable)
    hub._vendor = "postgresql"
    hub._ensure_listener = lambda: None  # type: ignore[method-assign]
    with hub.subscribe("TMEM_X") as subscription:
        started = time.monotonic()
        assert subscription.wait(30) is False
        assert waits.FALLBACK_SECONDS - 0.1 <= time.monotonic() - started < waits.FALLBACK_SECONDS + 1
        hub.dispatch("TMEM_X")
        assert subscription.wait(30) is True


def test_one_listener_wakes_only_the_waiters_of_the_decision_that_changed(seeded: Seeded) -> None:
    hub = waits.hub()
    assert hub.wait_until_listening(10)
    with rest(seeded) as http:
        first, second = pending_decision(http), pending_decision(http)
    with hub.subscribe(first) as one, hub.subscribe(second) as two:
        thread, _ = vote_later(first, "reject", 0.0)
        assert one.wait(10) is True
        thread.join(10)
        assert two.wait(0.5) is False


def test_both_doors_give_the_same_answer_and_the_same_refusals(seeded: Seeded) -> None:
    with rest(seeded) as http:
        decision_id = pending_decision(http)
        http.post(f"/api/v1/decisions/{decision_id}/close", json={"action": "abort"})
    answers = call_both(
        seeded.url, seeded.key, "decision_wait", {"decision_id": decision_id, "timeout_seconds": 5}
    )
    assert answers["mcp"] == answers["rest"]
    assert answers["mcp"][1]["status"] == "aborted" and answers["mcp"][1]["timed_out"] is False
    for arguments, code in (
        ({"decision_id": decision_id, "timeout_seconds": 51}, "invalid_argument"),
        ({"decision_id": "TMEM_01J00000000000000000000000"}, "not_found"),
    ):
        refusals = call_both(seeded.url, seeded.key, "decision_wait", arguments)
        assert {error_code(value) for _, value in refusals.values()} == {code}


def test_a_wait_still_returns_when_the_listening_connection_is_cut(seeded: Seeded) -> None:
    hub = waits.hub()
    assert hub.wait_until_listening(10)
    with rest(seeded) as http:
        decision_id = pending_decision(http)
        cut = superuser_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
            "AND datname = current_database() AND pid <> pg_backend_pid()",
            params=(waits.LISTENER_NAME,),
        )
        assert cut and all(row[0] for row in cut)
        thread, committed = vote_later(decision_id, "approve", 0.5)
        started = time.monotonic()
        waited = http.get(f"/api/v1/decisions/{decision_id}/wait", params={"timeout_seconds": 20}).json()
        returned = time.monotonic()
        thread.join(10)
    assert (waited["timed_out"], waited["approval_status"]) == (False, "approved")
    assert returned - committed[0] < waits.FALLBACK_SECONDS + 1  # the fallback, or the reconnection's wake-up
    assert returned - started < 5
    assert hub.wait_until_listening(10)  # and it listens again


def test_the_servers_cap_ends_a_wait_sooner_than_its_timeout(seeded: Seeded, settings: Any) -> None:
    settings.TRACEMEM_WAIT_CAP_SECONDS = 1
    with rest(seeded) as http:
        decision_id = pending_decision(http)
        started = time.monotonic()
        waited = http.get(f"/api/v1/decisions/{decision_id}/wait", params={"timeout_seconds": 20}).json()
    assert (waited["timed_out"], waited["approval_status"]) == (True, "pending")
    assert 1 <= time.monotonic() - started < 3
