"""Decision receipts (docs/contract/tools.md ``decision_receipt``): Ed25519 over RFC 8785 canonical JSON.

One implementation, used by the server to sign and by anyone to verify offline:

* the signed message is ``canonical_json(receipt_data)`` — exactly those bytes, no prefix;
* ``signature`` is base64url without padding of the 64-byte Ed25519 signature;
* a public key is published as base64url without padding of its 32 raw bytes;
* ``key_id`` is the first 16 lowercase hex characters of SHA-256 of those 32 raw bytes.

No Django here: this module must run from a copy of the package next to an exported receipt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tracemem_verify.chain import canonical_json, verify_chain

ALGORITHM = "ed25519"
RECEIPT_FIELDS = (
    "decision_id",
    "intent",
    "status",
    "automation_mode",
    "agent_id",
    "created_at",
    "closed_at",
    "event_count",
    "trace_head",
)
# Receipts issued since they are stored at close also sign "close_action" (commit, abort, record);
# older receipts lack it and still verify.


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url (or standard base64), with or without padding."""
    cleaned = text.strip().replace("+", "-").replace("/", "_").rstrip("=")
    return base64.urlsafe_b64decode(cleaned + "=" * (-len(cleaned) % 4))


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id_for(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def receipt_message(receipt_data: Mapping[str, Any]) -> bytes:
    return canonical_json(dict(receipt_data))


def sign_receipt_data(private_key: Ed25519PrivateKey, receipt_data: Mapping[str, Any]) -> str:
    return b64url_encode(private_key.sign(receipt_message(receipt_data)))


@dataclass(frozen=True)
class Verdict:
    ok: bool
    message: str
    # Nothing failed, but nothing proves who signed either (only keys shipped with the document).
    unverified: bool = False

    def __str__(self) -> str:
        label = "OK" if self.ok else "UNVERIFIED" if self.unverified else "FAIL"
        return f"{label}: {self.message}"


def _fail(message: str) -> Verdict:
    return Verdict(False, message)


def keys_from_document(document: Any) -> list[Mapping[str, Any]]:
    """The key list of a well-known document: a bare list, or an object with ``keys``."""
    if isinstance(document, Mapping):
        document = document.get("keys")
    if not isinstance(document, list):
        raise ValueError(
            "a keys document is a JSON list of {key_id, algorithm, public_key} (or {keys: [...]})"
        )
    return [k for k in document if isinstance(k, Mapping)]


def verify_receipt(receipt: Mapping[str, Any], keys: Iterable[Mapping[str, Any]]) -> Verdict:
    """Check a receipt's signature against published keys (nothing else)."""
    data = receipt.get("receipt_data")
    if not isinstance(data, Mapping):
        return _fail("the document has no receipt_data object; is this a decision_receipt result?")
    missing = [name for name in RECEIPT_FIELDS if name not in data]
    if missing:
        return _fail(f"receipt_data lacks {', '.join(missing)}")
    algorithm = receipt.get("algorithm")
    if algorithm != ALGORITHM:
        return _fail(f"algorithm is {algorithm!r}; only {ALGORITHM!r} receipts can be verified")
    key_id = receipt.get("key_id")
    # The envelope repeats decision_id and status for convenience; they are not signed, so they
    # must agree with the signed copy or a reader could be shown something the key never signed.
    for name in ("decision_id", "status"):
        if name in receipt and receipt[name] != data.get(name):
            return _fail(
                f"{name} {receipt[name]!r} differs from the signed receipt_data {name} {data.get(name)!r}"
            )
    matching = [k for k in keys if k.get("key_id") == key_id]
    if not matching:
        return _fail(
            f"key {key_id} is not among the published keys; fetch /.well-known/tracemem/receipt-keys"
        )
    key = matching[0]
    if key.get("algorithm", ALGORITHM) != ALGORITHM:
        return _fail(f"key {key_id} is a {key.get('algorithm')!r} key, not {ALGORITHM}")
    try:
        public_raw = b64url_decode(str(key.get("public_key", "")))
        public_key = Ed25519PublicKey.from_public_bytes(public_raw)
    except (ValueError, binascii.Error):
        return _fail(f"published key {key_id} is not a 32-byte Ed25519 public key")
    if key_id_for(public_raw) != key_id:
        return _fail(f"published key {key_id} does not hash to its key_id")
    try:
        signature = b64url_decode(str(receipt.get("signature", "")))
    except (ValueError, binascii.Error):
        return _fail("signature is not base64url")
    try:
        message = receipt_message(data)
    except Exception as exc:  # rfc8785 refuses values it cannot canonicalise
        return _fail(f"receipt_data cannot be canonicalised: {exc}")
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return _fail(
            f"signature does not verify with key {key_id}: receipt_data was changed or signed by another key"
        )
    return Verdict(
        True,
        f"receipt for decision {data['decision_id']} ({data['status']}, {data['event_count']} events, "
        f"trace_head {str(data['trace_head'])[:12]}…) is signed by key {key_id}",
    )


def events_from_document(document: Any) -> list[Mapping[str, Any]]:
    """Events of a ``decision_trace`` result, an evidence pack's ``trace``, or a bare list."""
    if isinstance(document, Mapping):
        if isinstance(document.get("trace"), Mapping | list):
            return events_from_document(document["trace"])
        document = document.get("events")
    if not isinstance(document, list):
        raise ValueError("a trace is a decision_trace result ({events: [...]}) or a list of events")
    return [e for e in document if isinstance(e, Mapping)]


def closing_of(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """(status, action) a closing event gives its decision: a ``close`` event's own, or
    (committed, record) for the ``record`` event of a decision record; None for any other event."""
    payload = event.get("payload")
    payload = payload if isinstance(payload, Mapping) else {}
    if event.get("type") == "close":
        return str(payload.get("status")), str(payload.get("action"))
    if event.get("type") == "record":
        return "committed", "record"
    return None


def verify_trace_against(receipt_data: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> Verdict:
    """Recompute the hash chain, check that it ends where the signed receipt says, and that its
    last event closed the decision the way the receipt says (status, and ``close_action`` when the
    receipt carries it)."""
    decision_id = str(receipt_data.get("decision_id"))
    broken = verify_chain(decision_id, events)
    if broken is not None:
        return _fail(f"trace {broken}")
    return verify_trace_end(receipt_data, len(events), events[-1] if events else None)


def verify_trace_end(receipt_data: Mapping[str, Any], count: int, last: Mapping[str, Any] | None) -> Verdict:
    """The checks of :func:`verify_trace_against` once the chain has recomputed: the trace has
    ``count`` events and ends with ``last``, which is where the receipt must pin it."""
    if count != receipt_data.get("event_count"):
        return _fail(f"trace has {count} events but the receipt pins {receipt_data.get('event_count')}")
    head = last.get("hash") if last is not None else None
    if head != receipt_data.get("trace_head"):
        return _fail(
            f"trace ends at hash {head} but the receipt pins trace_head {receipt_data.get('trace_head')}"
        )
    closing = closing_of(last) if last is not None else None
    if closing is None or last is None:
        return _fail("the trace does not end with a close event, yet the receipt is for a closed decision")
    status, action = closing
    seq = last.get("seq")
    if status != receipt_data.get("status"):
        return _fail(
            f"the receipt says status {receipt_data.get('status')} but the trace's close event (seq {seq}) "
            f"says {status} (action {action})"
        )
    if "close_action" in receipt_data and receipt_data["close_action"] != action:
        return _fail(
            f"the receipt says close_action {receipt_data['close_action']} but the trace's close event "
            f"(seq {seq}) says action {action}"
        )
    return Verdict(True, f"trace of {count} events recomputes to the receipt's trace_head")
