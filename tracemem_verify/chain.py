"""The trace hash chain of docs/contract/states.md, shared by the server and offline verification.

``hash`` = lowercase hex SHA-256 of the RFC 8785 canonical JSON of the object holding exactly
``decision_id, event_id, seq, type, timestamp, actor, payload, prev_hash``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785

from tracemem_verify.canonical import canonical_json

GENESIS_HASH = "0" * 64
HASHED_FIELDS = ("decision_id", "event_id", "seq", "type", "timestamp", "actor", "payload", "prev_hash")


__all__ = ["GENESIS_HASH", "HASHED_FIELDS", "ChainBreak", "ChainVerifier", "canonical_json", "event_hash"]


def event_hash(event: Mapping[str, Any]) -> str:
    material = {name: event[name] for name in HASHED_FIELDS}
    return hashlib.sha256(canonical_json(material)).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    decision_id: str
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"decision {self.decision_id}: broken at seq {self.seq}: {self.reason}"


class ChainVerifier:
    """Recomputes one decision's chain incrementally, so a long trace can be checked page by page
    (``decision_trace`` with ``after_seq``) without holding it all: feed pages in order."""

    def __init__(self, decision_id: str) -> None:
        self.decision_id = decision_id
        self.head = GENESIS_HASH  # the hash of the last event checked
        self.count = 0  # events checked so far

    def feed(self, events: Iterable[Mapping[str, Any]]) -> ChainBreak | None:
        """Check the next events; the first broken link, or None while intact."""
        for event in events:
            expected_seq = self.count + 1
            seq = event.get("seq")
            if seq != expected_seq:
                return ChainBreak(self.decision_id, expected_seq, f"expected seq {expected_seq}, found {seq}")
            if event.get("decision_id") != self.decision_id:
                return ChainBreak(self.decision_id, expected_seq, "event belongs to another decision")
            if event.get("prev_hash") != self.head:
                return ChainBreak(
                    self.decision_id, expected_seq, "prev_hash does not match the previous event's hash"
                )
            try:
                recomputed = event_hash(event)
            except (KeyError, rfc8785.CanonicalizationError) as exc:
                return ChainBreak(self.decision_id, expected_seq, f"event cannot be hashed: {exc}")
            if recomputed != event.get("hash"):
                return ChainBreak(self.decision_id, expected_seq, "hash does not match the event's content")
            self.head = recomputed
            self.count = expected_seq
        return None


def verify_chain(decision_id: str, events: Iterable[Mapping[str, Any]]) -> ChainBreak | None:
    """Return the first broken link of one decision's events (in order), or None if intact."""
    return ChainVerifier(decision_id).feed(events)
