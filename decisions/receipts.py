"""Signed decision receipts (docs/contract/tools.md ``decision_receipt``) and the published receipt keys.

The signing and verification maths live in :mod:`tracemem_verify.receipt` (no Django), so the
server and an offline auditor run the same code. This module owns where the key comes from, which
public keys are published, and who may get a receipt. Design notes: ``docs/receipts.md``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from decisions.models import TERMINAL_STATUSES, Decision, EventType, Receipt, ReceiptKey, TraceEvent
from decisions.selectors import decision_for
from tracemem_core import validation as v
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidState
from tracemem_core.timefmt import iso_z
from tracemem_verify.checkpoint import verifier_key
from tracemem_verify.receipt import (
    ALGORITHM,
    b64url_decode,
    b64url_encode,
    key_id_for,
    raw_public_key,
    sign_receipt_data,
)

DEFAULT_KEY_FILENAME = "receipt_signing_key.pem"


@dataclass(frozen=True)
class SigningKey:
    private_key: Ed25519PrivateKey
    key_id: str
    public_key: str  # base64url of the raw 32 bytes


def _parse_key_material(material: bytes, source: str) -> Ed25519PrivateKey:
    """A PEM (PKCS#8) private key, 32 raw seed bytes, or base64 text of either."""
    stripped = material.strip()
    if stripped.startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(stripped, password=None)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(f"{source} is not an unencrypted PEM private key") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise ImproperlyConfigured(f"{source} is not an Ed25519 key")
        return key
    if len(material) == 32:
        return Ed25519PrivateKey.from_private_bytes(material)
    try:
        text = stripped.decode("ascii")
        decoded = base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4))
    except (UnicodeDecodeError, binascii.Error, ValueError):
        decoded = b""
    if decoded and decoded != material:
        return _parse_key_material(decoded, source)
    # Never echo the material: it is a secret.
    raise ImproperlyConfigured(
        f"{source} is neither a PEM Ed25519 private key nor a 32-byte seed (raw or base64)"
    )


def write_file_once(path: Path, data: bytes) -> bool:
    """Create ``path`` holding exactly ``data`` with mode 0600, unless it already exists.

    Returns True when this call created it. The content is written and fsynced under a temporary
    name in the same directory and then hard-linked into place, which fails if the name exists:
    a reader never sees an empty or partial file, and two processes racing never replace each
    other's file. Without hard links (some filesystems) it falls back to ``O_EXCL`` create + write
    + fsync; :func:`_read_key_file` then waits out the short window in which the file is empty.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return False
        except OSError:
            return _write_exclusive(path, data)
        _fsync_dir(path.parent)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def _write_exclusive(path: Path, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _generate_default_key(path: Path) -> None:
    """Create the embedded default's key once, readable only by the server's user."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Two processes starting together must end up signing with the same, complete key.
    write_file_once(path, pem)


def _read_key_file(path: Path, *, wait_seconds: float = 0.0) -> bytes:
    """Read a key file; an empty one is re-read for up to ``wait_seconds`` (a writer may be mid-way)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            material = path.read_bytes()
        except OSError as exc:
            raise ImproperlyConfigured(
                f"cannot read the receipt signing key file {path}: {exc.strerror}"
            ) from None
        if material.strip() or time.monotonic() >= deadline:
            return material
        time.sleep(0.05)


@lru_cache(maxsize=8)
def _load_signing_key(env_key: str, key_file: str, var_dir: str) -> SigningKey:
    if env_key:
        private = _parse_key_material(env_key.encode("ascii", "replace"), "TRACEMEM_RECEIPT_KEY")
    else:
        path = Path(key_file) if key_file else Path(var_dir) / DEFAULT_KEY_FILENAME
        if not key_file and not path.exists():
            _generate_default_key(path)
        material = _read_key_file(path, wait_seconds=0 if key_file else 5)
        private = _parse_key_material(material, f"receipt signing key file {path}")
    public_raw = raw_public_key(private.public_key())
    return SigningKey(
        private_key=private, key_id=key_id_for(public_raw), public_key=b64url_encode(public_raw)
    )


def current_signing_key() -> SigningKey:
    """The key new receipts are signed with, from settings (see ``docs/receipts.md``)."""
    return _load_signing_key(
        settings.TRACEMEM_RECEIPT_KEY or "", settings.TRACEMEM_RECEIPT_KEY_FILE or "", str(settings.VAR_DIR)
    )


def _publish_current_key() -> SigningKey:
    """Make sure the current key is published and every other key is marked as retired.

    Idempotent; runs before signing and when the key list is read, so a rotation shows up the
    first time the new key is used or the list is fetched.
    """
    key = current_signing_key()
    row = ReceiptKey.objects.filter(pk=key.key_id, valid_to__isnull=True).first()
    if row is None:
        with transaction.atomic():
            now = timezone.now()
            row, created = ReceiptKey.objects.select_for_update().get_or_create(
                pk=key.key_id,
                defaults={"algorithm": ALGORITHM, "public_key": key.public_key, "valid_from": now},
            )
            if not created and row.valid_to is not None:
                # A key brought back after a rotation is valid again from now on.
                ReceiptKey.objects.filter(pk=key.key_id).update(valid_to=None)
            ReceiptKey.objects.filter(valid_to__isnull=True).exclude(pk=key.key_id).update(valid_to=now)
    return key


def receipt_signing_key() -> SigningKey:
    """The current signing key, published first: what signs receipts and the receipt log's checkpoints."""
    return _publish_current_key()


def receipt_key_out(row: ReceiptKey) -> dict[str, Any]:
    out = {
        "key_id": row.key_id,
        "algorithm": row.algorithm,
        "public_key": row.public_key,
        "valid_from": iso_z(row.valid_from),
        "valid_to": iso_z(row.valid_to),
    }
    if row.algorithm == ALGORITHM:
        # The same key signs the receipt log's checkpoints, under the log's origin as note key name.
        out["note_verifier_key"] = str(
            verifier_key(settings.TRACEMEM_LOG_ORIGIN, b64url_decode(row.public_key))
        )
    return out


def receipt_keys_published() -> list[dict[str, Any]]:
    """Every receipt key ever used (current and retired), oldest first, for the well-known list."""
    _publish_current_key()
    return [receipt_key_out(row) for row in ReceiptKey.objects.order_by("valid_from", "key_id")]


def close_action_of(close_event: TraceEvent) -> str:
    """What closed the decision: the close event's ``action`` (commit, abort), or ``record`` for a
    decision record, which its one ``record`` event commits."""
    if close_event.type == EventType.RECORD:
        return "record"
    return str(close_event.payload["action"])


def receipt_data_of(decision: Decision, close_action: str) -> dict[str, Any]:
    return {
        "decision_id": decision.decision_id,
        "intent": decision.intent,
        "status": decision.status,
        "automation_mode": decision.automation_mode,
        "agent_id": decision.agent_id,
        "created_at": iso_z(decision.created_at),
        "closed_at": iso_z(decision.closed_at),
        "event_count": decision.event_count,
        "trace_head": decision.trace_head,
        "close_action": close_action,
    }


# Called with the receipt just stored, inside the close transaction: the receipt log appends it as
# its next leaf (receiptlog, which imports this app, registers itself; the database refuses to
# commit a receipt without its leaf).
ReceiptListener = Callable[..., Any]
_receipt_listeners: list[ReceiptListener] = []


def register_receipt_listener(listener: ReceiptListener) -> None:
    """Call ``listener(receipt=)`` with every receipt :func:`receipt_issue` stores."""
    if listener not in _receipt_listeners:
        _receipt_listeners.append(listener)


def receipt_issue(*, decision: Decision, close_event: TraceEvent) -> Receipt:
    """Sign and store the receipt of a decision its ``close_event`` has just closed.

    Called inside the close transaction (the database refuses to commit a closed decision without
    its receipt); the stored receipt is the one every later ``decision_receipt`` returns.
    """
    key = _publish_current_key()
    data = receipt_data_of(decision, close_action_of(close_event))
    receipt = Receipt.objects.create(
        decision=decision,
        receipt_data=data,
        signature=sign_receipt_data(key.private_key, data),
        key_id=key.key_id,
        algorithm=ALGORITHM,
        signed_at=timezone.now(),
    )
    for listener in _receipt_listeners:
        listener(receipt=receipt)
    return receipt


def receipt_out(receipt: Receipt) -> dict[str, Any]:
    """A stored receipt as ``decision_receipt`` returns it: the same bytes on every fetch."""
    data = receipt.receipt_data
    return {
        "decision_id": receipt.decision_id,
        "status": data["status"],
        "receipt_data": data,
        "signature": receipt.signature,
        "key_id": receipt.key_id,
        "algorithm": receipt.algorithm,
        "signed_at": iso_z(receipt.signed_at),
    }


def receipt_stored(decision: Decision) -> dict[str, Any] | None:
    """The receipt issued when the decision closed, or None (open, or closed without one)."""
    receipt = Receipt.objects.filter(decision=decision).first()
    return receipt_out(receipt) if receipt is not None else None


def receipt_of(*, actor: Actor, decision_id: Any) -> dict[str, Any]:
    """The stored receipt of one of the actor's closed decisions (``invalid_state`` while open),
    exactly as issued: what the receipt log's leaf is made of.

    The receipt was signed and stored in the decision's close transaction; this returns that stored
    receipt, byte for byte, on every call, and writes nothing.
    """
    clean_id = v.string(decision_id, "decision_id", max_length=40)
    decision = decision_for(actor, clean_id)
    if decision.status not in TERMINAL_STATUSES:
        raise InvalidState(
            f"decision {decision.decision_id} is {decision.status}: receipts exist only for closed decisions; "
            "call decision_close first, then decision_receipt"
        )
    receipt = receipt_stored(decision)
    if receipt is None:
        raise InvalidState(
            f"decision {decision.decision_id} is closed but has no stored receipt: its row disagrees with its trace; "
            "an operator should run manage.py verify_traces"
        )
    return receipt


# The receipt log's proof of a receipt: ``inclusion(receipt=) -> {inclusion, inclusion_status,
# inclusion_reason}`` (receiptlog, which imports this app, registers itself).
ReceiptInclusion = Callable[..., dict[str, Any]]
_receipt_inclusion: list[ReceiptInclusion] = []


def register_receipt_inclusion(inclusion: ReceiptInclusion) -> None:
    """Let ``decision_receipt`` and the evidence pack carry ``inclusion(receipt=)``'s fields."""
    _receipt_inclusion[:] = [inclusion]


NO_RECEIPT = "no_receipt"


def receipt_inclusion_fields(receipt: dict[str, Any] | None) -> dict[str, Any]:
    """``inclusion``, ``inclusion_status`` and ``inclusion_reason`` of a receipt (docs/receipts.md,
    "Proofs through the doors"); for no receipt (an open decision's pack), ``no_receipt``."""
    if receipt is None:
        return {
            "inclusion": None,
            "inclusion_status": NO_RECEIPT,
            "inclusion_reason": "the decision is not closed yet: it has no receipt, so nothing is in the receipt log",
        }
    if not _receipt_inclusion:
        raise RuntimeError("the receipt log (receiptlog) is not installed: receipts cannot be proven")
    return _receipt_inclusion[0](receipt=receipt)


def decision_receipt(*, actor: Actor, decision_id: Any) -> dict[str, Any]:
    """``decision_receipt``: the stored receipt of one of the actor's closed decisions
    (:func:`receipt_of`), plus its inclusion proof in the receipt log (``inclusion``, against the
    latest checkpoint, or null with ``inclusion_status`` and ``inclusion_reason`` saying why).

    The MCP tool and ``GET /api/v1/decisions/{id}/receipt`` both return this. The receipt fields
    never change; ``inclusion`` follows the latest checkpoint. Writes nothing.
    """
    receipt = receipt_of(actor=actor, decision_id=decision_id)
    return {**receipt, **receipt_inclusion_fields(receipt)}
