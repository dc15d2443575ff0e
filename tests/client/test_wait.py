"""The docs/contract/interfaces.md interfaces in the client: decision_wait, trace pages and batch context.

Each is tested against TraceMem and against a local server playing an older TraceMem (the client
falls back: polling, one page, a clear "unsupported").
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from tracemem_client import Client, InvalidArgument, NotFound, TraceMemError, UnsupportedByServer

from tests.client_helpers import AnswerWhenAsked, Seeded

pytest_plugins = ["tests.client_fixtures"]  # fixtures: seeded, agent_client
pytestmark = pytest.mark.django_db(transaction=True)


class Recording(httpx.HTTPTransport):
    """The real transport, remembering each request's path and query."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.url.path, request.url.query.decode()))
        return super().handle_request(request)


@pytest.fixture
def recorded(seeded: Seeded) -> Any:
    transport = Recording()
    with Client(seeded.url, seeded.key, transport=transport) as recording_client:
        yield recording_client, transport


def pending_decision(agent_client: Client) -> str:
    decision_id = agent_client.decision_create("code.refactor.execute", "propose")["decision_id"]
    agent_client.decision_request_approval(decision_id, title="please")
    return decision_id


# --- decision_wait -------------------------------------------------------------------------------


def test_wait_returns_approved_soon_after_the_reviewer_answers(seeded: Seeded, agent_client: Client) -> None:
    decision_id = pending_decision(agent_client)
    with AnswerWhenAsked(seeded, "approve", "ok", delay=1.0):
        started = time.monotonic()
        waited = agent_client.decision_wait(decision_id, timeout_seconds=20)
        elapsed = time.monotonic() - started
    assert (waited["timed_out"], waited["approval_status"], waited["status"]) == (
        False,
        "approved",
        "approved",
    )
    assert 0.9 <= elapsed < 10  # returned on the answer, not at the timeout


def test_wait_with_no_reviewer_returns_at_its_timeout(agent_client: Client) -> None:
    decision_id = pending_decision(agent_client)
    started = time.monotonic()
    waited = agent_client.decision_wait(decision_id, timeout_seconds=1.5)
    elapsed = time.monotonic() - started
    assert (waited["timed_out"], waited["approval_status"], waited["status"]) == (
        True,
        "pending",
        "needs_approval",
    )
    assert 1.5 <= elapsed < 6
    assert waited["decision_id"] == decision_id and set(waited) >= {"pending_approval_id", "trace_head"}


def test_wait_without_a_pending_approval_returns_at_once(agent_client: Client) -> None:
    decision_id = agent_client.decision_create("a.b.c", "autonomous")["decision_id"]
    started = time.monotonic()
    waited = agent_client.decision_wait(decision_id, timeout_seconds=10)
    assert waited["timed_out"] is False and waited["approval_status"] is None
    assert time.monotonic() - started < 5


def test_wait_on_an_unknown_decision_is_not_found_and_on_a_bad_timeout_invalid(agent_client: Client) -> None:
    with pytest.raises(NotFound):
        agent_client.decision_wait("TMEM_01J00000000000000000000000", timeout_seconds=1)
    decision_id = agent_client.decision_create("a.b.c", "autonomous")["decision_id"]
    for bad in (-1, 51, True):
        with pytest.raises(InvalidArgument) as refused:
            agent_client.decision_wait(decision_id, timeout_seconds=bad)
        assert refused.value.field == "timeout_seconds"


def test_on_a_server_without_the_endpoint_the_client_asks_once_then_polls(httpserver: Any) -> None:
    # A server from before issue 16: no /wait route (a 404), decision_get answers.
    decision_id = DECISION["decision_id"]
    no_route = {"error": {"code": "not_found", "message": "no such route", "details": {}}}
    pending = {**DECISION, "status": "needs_approval", "approval_status": "pending"}
    httpserver.expect_request(f"/api/v1/decisions/{decision_id}/wait").respond_with_json(no_route, status=404)
    httpserver.expect_request(f"/api/v1/decisions/{decision_id}").respond_with_json(pending)
    with Client(httpserver.url_for("/"), "tmem_k") as old:
        first = old.decision_wait(decision_id, timeout_seconds=1)
        second = old.decision_wait(decision_id, timeout_seconds=1)
    assert (first["timed_out"], second["timed_out"], old._native_wait) == (True, True, False)
    paths = [request.path for request, _ in httpserver.log]
    assert paths.count(f"/api/v1/decisions/{decision_id}/wait") == 1  # learnt after one 404
    assert paths.count(f"/api/v1/decisions/{decision_id}") >= 4


def test_wait_for_approval_keeps_waiting_across_calls(seeded: Seeded, agent_client: Client) -> None:
    decision_id = pending_decision(agent_client)
    with AnswerWhenAsked(seeded, "reject", "no", delay=1.0):
        waited = agent_client.wait_for_approval(decision_id, timeout=30)
    assert (waited["timed_out"], waited["approval_status"], waited["status"]) == (
        False,
        "rejected",
        "rejected",
    )


def test_native_wait_uses_the_endpoint_and_never_polls(seeded: Seeded, recorded: Any) -> None:
    client_, transport = recorded
    decision_id = pending_decision(client_)
    with AnswerWhenAsked(seeded, "approve", "ok", delay=1.0):
        waited = client_.decision_wait(decision_id, timeout_seconds=20)
    assert (waited["timed_out"], waited["approval_status"]) == (False, "approved")
    assert transport.requests[-1] == (f"/api/v1/decisions/{decision_id}/wait", "timeout_seconds=20")
    assert client_._native_wait is True
    other = pending_decision(client_)
    transport.requests.clear()
    timed_out = client_.decision_wait(other, timeout_seconds=1)
    assert timed_out["timed_out"] is True
    assert transport.requests == [(f"/api/v1/decisions/{other}/wait", "timeout_seconds=1")]  # no polling


# --- trace pages ---------------------------------------------------------------------------------


def test_trace_iterator_walks_a_server_that_returns_one_page(recorded: Any) -> None:
    client_, transport = recorded
    decision_id = client_.decision_create("a.b.c", "autonomous")["decision_id"]
    for step in range(5):
        client_.decision_add_context(decision_id, {"step": step})
    transport.requests.clear()
    assert [e["seq"] for e in client_.iter_trace_events(decision_id, page_size=2)] == [1, 2, 3, 4, 5, 6]
    # An older server ignores after_seq: the iterator still yields only what follows it.
    assert [e["seq"] for e in client_.iter_trace_events(decision_id, after_seq=4)] == [5, 6]
    trace = client_.decision_trace_all(decision_id)
    assert trace["event_count"] == 6 and len(trace["events"]) == 6


def test_trace_pages_follow_next_after_seq(recorded: Any) -> None:
    client_, transport = recorded
    decision_id = client_.decision_create("a.b.c", "autonomous")["decision_id"]
    for step in range(4):
        client_.decision_add_context(decision_id, {"step": step})
    page = client_.decision_trace(decision_id, after_seq=2, limit=2)
    assert ([e["seq"] for e in page["events"]], page["next_after_seq"]) == ([3, 4], 4)
    last = client_.decision_trace(decision_id, after_seq=4, limit=2)
    assert ([e["seq"] for e in last["events"]], last["next_after_seq"]) == ([5], None)
    transport.requests.clear()
    assert [e["seq"] for e in client_.iter_trace_events(decision_id, page_size=2)] == [1, 2, 3, 4, 5]
    assert [q for _, q in transport.requests] == ["limit=2", "after_seq=2&limit=2", "after_seq=4&limit=2"]


# --- batch context -------------------------------------------------------------------------------


def test_batch_context_adds_every_object_in_order(agent_client: Client) -> None:
    decision = agent_client.open_decision("a.b.c", "autonomous")
    added = decision.add_contexts([{"step": n} for n in range(3)])
    assert [e["seq"] for e in added["events"]] == [2, 3, 4]
    trace = decision.trace()
    assert [e["payload"]["context"] for e in trace["events"][1:]] == [{"step": 0}, {"step": 1}, {"step": 2}]
    assert [e["event_id"] for e in trace["events"][1:]] == [e["event_id"] for e in added["events"]]
    with pytest.raises(InvalidArgument) as too_many:
        decision.add_contexts([{"step": n} for n in range(101)])
    assert too_many.value.field == "contexts"
    assert decision.get()["event_count"] == 4


# --- the contract's side of the client, against a local server that already speaks it -------------
# (pytest-httpserver plays a server with the docs/contract/interfaces.md endpoints, so the client's
# native paths are exercised too.)

DECISION = {
    "decision_id": "TMEM_01J00000000000000000000000",
    "intent": "a.b.c",
    "status": "approved",
    "approval_status": "approved",
}


def test_native_wait_is_used_and_remembered_when_the_server_has_it(httpserver: Any) -> None:
    path = f"/api/v1/decisions/{DECISION['decision_id']}/wait"
    httpserver.expect_request(path, query_string="timeout_seconds=3").respond_with_json(
        {**DECISION, "timed_out": False}
    )
    with Client(httpserver.url_for("/"), "tmem_k") as native:
        assert native.decision_wait(DECISION["decision_id"], timeout_seconds=2.5)["timed_out"] is False
        assert native.decision_wait(DECISION["decision_id"], timeout_seconds=3)["status"] == "approved"
    assert [request.path for request, _ in httpserver.log] == [path, path]


def test_a_404_from_the_wait_endpoint_of_an_unknown_decision_is_not_found(httpserver: Any) -> None:
    not_found = {"error": {"code": "not_found", "message": "no such decision", "details": {}}}
    decision_id = DECISION["decision_id"]
    httpserver.expect_request(f"/api/v1/decisions/{decision_id}/wait").respond_with_json(
        not_found, status=404
    )
    httpserver.expect_request(f"/api/v1/decisions/{decision_id}").respond_with_json(not_found, status=404)
    with Client(httpserver.url_for("/"), "tmem_k") as native, pytest.raises(NotFound):
        native.decision_wait(decision_id, timeout_seconds=1)


def test_trace_pages_are_walked_and_a_stuck_cursor_is_an_error(httpserver: Any) -> None:
    decision_id = DECISION["decision_id"]
    path = f"/api/v1/decisions/{decision_id}/trace"

    def page(seqs: list[int], next_after_seq: int | None) -> dict[str, Any]:
        return {**DECISION, "events": [{"seq": s} for s in seqs], "next_after_seq": next_after_seq}

    httpserver.expect_ordered_request(path, query_string="limit=2").respond_with_json(page([1, 2], 2))
    httpserver.expect_ordered_request(path, query_string="after_seq=2&limit=2").respond_with_json(
        page([3, 4], 4)
    )
    httpserver.expect_ordered_request(path, query_string="after_seq=4&limit=2").respond_with_json(
        page([5], None)
    )
    with Client(httpserver.url_for("/"), "tmem_k") as paged:
        whole = paged.decision_trace_all(decision_id, page_size=2)
    assert [e["seq"] for e in whole["events"]] == [1, 2, 3, 4, 5] and "next_after_seq" not in whole

    httpserver.clear()
    httpserver.expect_request(path).respond_with_json(page([1], 0))
    with Client(httpserver.url_for("/"), "tmem_k") as stuck, pytest.raises(TraceMemError) as error:
        list(stuck.iter_trace_events(decision_id))
    assert error.value.code == "bad_response" and "cursor did not advance" in str(error.value)


def test_batch_context_sends_contexts_and_returns_the_events(httpserver: Any) -> None:
    decision_id = DECISION["decision_id"]
    events = [
        {"event_id": "evt_1", "seq": 2, "timestamp": "t"},
        {"event_id": "evt_2", "seq": 3, "timestamp": "t"},
    ]
    httpserver.expect_request(
        f"/api/v1/decisions/{decision_id}/context", method="POST", json={"contexts": [{"a": 1}, {"b": 2}]}
    ).respond_with_json({"events": events}, status=201)
    with Client(httpserver.url_for("/"), "tmem_k") as batch:
        assert batch.decision_add_contexts(decision_id, [{"a": 1}, {"b": 2}]) == {"events": events}


def test_batch_context_on_a_server_without_it_says_so(httpserver: Any) -> None:
    decision_id = DECISION["decision_id"]
    allowed = ["context", "payload", "summary"]
    refusal = {
        "error": {
            "code": "invalid_argument",
            "message": "this operation does not take the field 'contexts'; allowed: context, payload, summary",
            "details": {"field": "contexts", "allowed": allowed},
        }
    }
    httpserver.expect_request(f"/api/v1/decisions/{decision_id}/context", method="POST").respond_with_json(
        refusal, status=400
    )
    with Client(httpserver.url_for("/"), "tmem_k") as old, pytest.raises(UnsupportedByServer) as unsupported:
        old.decision_add_contexts(decision_id, [{"step": 1}, {"step": 2}])
    assert "call decision_add_context once per object" in str(unsupported.value)
