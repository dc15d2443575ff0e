"""``bench hotpath``'s integrity check (issue 17): every event the server acknowledged is stored exactly
once, and nothing is stored that no answer acknowledged beyond what the writes whose answer was lost
could have stored; a write whose connection broke is counted, never sent again."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bench.bench_hotpath import Agent, Ledger, RequestLost, ledger_verdict

D1, D2 = "TMEM_A", "TMEM_B"


def acknowledged() -> Ledger:
    """Two created decisions; D1 got a single append (no seq in its answer) and a batch of two."""
    ledger = Ledger()
    ledger.acknowledge("/api/v1/decisions", {}, {"decision_id": D1})
    ledger.acknowledge("/api/v1/decisions", {}, {"decision_id": D2})
    ledger.acknowledge(f"/api/v1/decisions/{D1}/context", {"context": {}}, {"event_id": "evt_2"})
    batch = {"events": [{"event_id": "evt_3", "seq": 3}, {"event_id": "evt_4", "seq": 4}]}
    ledger.acknowledge(f"/api/v1/decisions/{D1}/context", {"contexts": [{}, {}]}, batch)
    return ledger


STORED = [(D1, "evt_1", 1), (D1, "evt_2", 2), (D1, "evt_3", 3), (D1, "evt_4", 4), (D2, "evt_b1", 1)]


def test_what_was_acknowledged_and_stored_once_is_ok() -> None:
    ok, counted = ledger_verdict(acknowledged(), STORED, [D1, D2])
    assert ok, counted
    assert counted.startswith("5 acknowledged events: 0 missing, 0 duplicated"), counted


def test_an_acknowledged_event_missing_fails() -> None:
    ok, counted = ledger_verdict(acknowledged(), [e for e in STORED if e[1] != "evt_3"], [D1, D2])
    assert not ok
    assert "1 missing" in counted


def test_a_created_decision_without_its_created_event_fails() -> None:
    ok, counted = ledger_verdict(acknowledged(), [e for e in STORED if e[1] != "evt_b1"], [D1, D2])
    assert not ok
    assert "1 missing" in counted


def test_an_event_stored_twice_fails() -> None:
    """A retried write: the same context stored again under a new event id, which no answer named."""
    ok, counted = ledger_verdict(acknowledged(), [*STORED, (D1, "evt_2_again", 5)], [D1, D2])
    assert not ok
    assert "1 stored unacknowledged, 1 beyond what 0 lost writes" in counted


def test_an_event_acknowledged_twice_fails() -> None:
    ledger = acknowledged()
    ledger.acknowledge(f"/api/v1/decisions/{D1}/context", {"context": {}}, {"event_id": "evt_2"})
    ok, counted = ledger_verdict(ledger, STORED, [D1, D2])
    assert not ok
    assert "1 duplicated" in counted


def test_an_event_at_another_seq_than_its_answer_said_fails() -> None:
    stored = [(D1, "evt_1", 1), (D1, "evt_2", 2), (D1, "evt_4", 3), (D1, "evt_3", 4), (D2, "evt_b1", 1)]
    ok, counted = ledger_verdict(acknowledged(), stored, [D1, D2])
    assert not ok
    assert "2 misplaced" in counted


def test_a_lost_write_explains_as_many_events_as_it_carried_and_no_more() -> None:
    ledger = acknowledged()
    ledger.lose(*Ledger.events_at_most(f"/api/v1/decisions/{D1}/context", {"contexts": [{}, {}]}))
    two_more = [*STORED, (D1, "evt_5", 5), (D1, "evt_6", 6)]
    ok, counted = ledger_verdict(ledger, two_more, [D1, D2])
    assert ok, counted
    assert "2 stored unacknowledged, 0 beyond what 1 lost writes (at most 2 events)" in counted
    ok, counted = ledger_verdict(ledger, [*two_more, (D1, "evt_7", 7)], [D1, D2])
    assert not ok
    # ... and only in its own decision
    ok, counted = ledger_verdict(ledger, [*STORED, (D2, "evt_b2", 2)], [D1, D2])
    assert not ok


def test_a_decision_no_answer_named_needs_a_lost_create() -> None:
    stray = [*STORED, ("TMEM_C", "evt_c1", 1)]
    ok, counted = ledger_verdict(acknowledged(), stray, [D1, D2, "TMEM_C"])
    assert not ok
    ledger = acknowledged()
    ledger.lose(*Ledger.events_at_most("/api/v1/decisions", {"intent": "x"}))
    ok, counted = ledger_verdict(ledger, stray, [D1, D2, "TMEM_C"])
    assert ok, counted


class _Hangs(BaseHTTPRequestHandler):
    """Reads each request and closes the connection without answering; counts the requests."""

    requests: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["Content-Length"]))
        _Hangs.requests.append(self.path)
        self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def hanging_server() -> Iterator[int]:
    _Hangs.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hangs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_a_write_whose_answer_is_lost_is_counted_and_not_sent_again(hanging_server: int) -> None:
    ledger = Ledger()
    agent = Agent("tmem_key", port=hanging_server, ledger=ledger)
    path = f"/api/v1/decisions/{D1}/context"
    with pytest.raises(RequestLost):
        agent.call("POST", path, {"contexts": [{"n": 1}, {"n": 2}, {"n": 3}]}, 201)
    assert _Hangs.requests == [path]
    assert ledger.errors == 1
    assert ledger.lost == {D1: 3}
