"""Helpers for the Python client's tests (fixtures are in ``tests/client_fixtures.py``): a reviewer
who answers approvals through the REST approvals API with a personal token, and the trace's steps."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from tracemem_client import Client, ReviewerClient


@dataclass
class Seeded:
    url: str
    key: str
    token: str


# A governed call that needed an approval, step by step.
APPROVED_CALL = [
    "created",
    "evaluate",
    "approval_requested",
    "approval_vote",
    "approval_resolved",
    "context",
    "close",
]


class AnswerWhenAsked(threading.Thread):
    """A reviewer in another thread: waits for the first pending approval, then
    approves or rejects it over the REST approvals API, like a person in the review queue."""

    def __init__(self, seeded: Seeded, vote: str, rationale: str, *, delay: float = 0.3) -> None:
        super().__init__(daemon=True)
        self.seeded, self.vote, self.rationale, self.delay = seeded, vote, rationale, delay
        self.answered: dict[str, Any] | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with ReviewerClient(self.seeded.url, self.seeded.token) as reviewer_client:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    pending = reviewer_client.approvals_list("pending")["approvals"]
                    if pending:
                        time.sleep(self.delay)
                        answer = (
                            reviewer_client.approval_approve
                            if self.vote == "approve"
                            else reviewer_client.approval_reject
                        )
                        self.answered = dict(answer(pending[0]["approval_id"], self.rationale))
                        return
                    time.sleep(0.1)
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc

    def __enter__(self) -> AnswerWhenAsked:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.join(timeout=30)
        if self.error is not None:
            raise self.error


def event_types(client: Client, decision_id: str) -> list[str]:
    """The trace's event types in order. ``delivery`` events (written by the notification worker,
    whenever it runs) are left out so that the steps of the agent and the reviewer can be compared."""
    return [e["type"] for e in client.iter_trace_events(decision_id) if e["type"] != "delivery"]
