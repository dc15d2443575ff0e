"""The admin audit log's hash chain, shared by the server and offline verification.

Each entry's ``hash`` = lowercase hex SHA-256 of the RFC 8785 canonical JSON of the object holding
exactly ``seq, at, actor, action, object_type, object_id, before, after, prev_hash`` as
``GET /api/v1/admin/audit-log`` returns them; the first entry's ``prev_hash`` is 64 zeros. The
same canonicaliser as the decision trace (:mod:`tracemem_verify.chain`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import rfc8785

from tracemem_verify.chain import GENESIS_HASH, canonical_json

AUDIT_HASHED_FIELDS = (
    "seq",
    "at",
    "actor",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
    "prev_hash",
)


def audit_entry_hash(entry: Mapping[str, Any]) -> str:
    material = {name: entry[name] for name in AUDIT_HASHED_FIELDS}
    return hashlib.sha256(canonical_json(material)).hexdigest()


@dataclass(frozen=True)
class AuditBreak:
    seq: int
    reason: str

    def __str__(self) -> str:
        return f"audit log broken at seq {self.seq}: {self.reason}"


def verify_audit_chain(entries: Iterable[Mapping[str, Any]], *, first_seq: int = 1) -> AuditBreak | None:
    """The first broken link of audit entries in ``seq`` order, or None when the chain is intact.

    ``first_seq`` > 1 verifies a tail of the log; its first entry's ``prev_hash`` is then taken on
    trust (it is the hash of the entry before, which the caller did not pass).
    """
    expected_prev: str | None = GENESIS_HASH if first_seq == 1 else None
    expected_seq = first_seq
    for entry in entries:
        seq = entry.get("seq")
        if seq != expected_seq:
            return AuditBreak(expected_seq, f"expected seq {expected_seq}, found {seq}")
        if expected_prev is not None and entry.get("prev_hash") != expected_prev:
            return AuditBreak(expected_seq, "prev_hash does not match the previous entry's hash")
        try:
            recomputed = audit_entry_hash(entry)
        except (KeyError, rfc8785.CanonicalizationError) as exc:
            return AuditBreak(expected_seq, f"entry cannot be hashed: {exc}")
        if recomputed != entry.get("hash"):
            return AuditBreak(expected_seq, "hash does not match the entry's content")
        expected_prev = recomputed
        expected_seq += 1
    return None
