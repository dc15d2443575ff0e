"""The receipt log as an auditor checks it: what a leaf is, the proof documents, the verdicts.

* A leaf is the RFC 8785 canonical JSON of the receipt object restricted to :data:`LEAF_FIELDS`
  (the receipt exactly as issued at close; fields added to the receipt response later, such as an
  embedded inclusion proof, are not part of it). Its leaf hash is ``SHA-256(0x00 || those bytes)``.
* Checkpoints are C2SP signed notes (``tracemem_verify.checkpoint``) signed with the receipt keys:
  the key name is the log's origin, the key a published receipt key (see :func:`log_verifier_keys`).
* The documents are the JSON the server returns at ``GET /api/v1/decisions/{id}/inclusion``
  (:func:`inclusion_from_document`) and ``GET /api/v1/log/consistency`` (:func:`consistency_from_document`);
  hashes in them are standard base64 of 32 bytes, as in the checkpoint's root line.

``docs/receipts.md`` ("Receipt log and checkpoints") is the prose version of this module.
No Django here.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tracemem_verify import merkle
from tracemem_verify.chain import canonical_json
from tracemem_verify.checkpoint import (
    Checkpoint,
    NoteError,
    NoteVerificationError,
    VerifiedCheckpoint,
    VerifierKey,
    open_checkpoint,
    parse_checkpoint,
    parse_verifier_key,
    verifier_key,
)
from tracemem_verify.receipt import ALGORITHM, Verdict, b64url_decode, key_id_for, verify_receipt

LEAF_FIELDS = ("decision_id", "status", "receipt_data", "signature", "key_id", "algorithm", "signed_at")
INCLUSION_FORMAT = "tracemem.inclusion.v1"
CONSISTENCY_FORMAT = "tracemem.consistency.v1"
KEYS_URL = "/.well-known/tracemem/receipt-keys"


def receipt_leaf(receipt: Mapping[str, Any]) -> bytes:
    """The bytes a receipt contributes to the log: RFC 8785 of its :data:`LEAF_FIELDS`."""
    missing = [name for name in LEAF_FIELDS if name not in receipt]
    if missing:
        raise ValueError(
            f"the receipt lacks {', '.join(missing)}; a log leaf is made of {', '.join(LEAF_FIELDS)}"
        )
    return canonical_json({name: receipt[name] for name in LEAF_FIELDS})


def receipt_leaf_hash(receipt: Mapping[str, Any]) -> bytes:
    return merkle.leaf_hash(receipt_leaf(receipt))


def encode_hash(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


def decode_hash(value: Any, what: str) -> bytes:
    """A 32-byte hash from standard base64 (as in checkpoints and the proof documents)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ValueError(f"{what} is not standard base64") from None
    if len(raw) != merkle.HASH_SIZE:
        raise ValueError(f"{what} is {len(raw)} bytes; a SHA-256 hash has {merkle.HASH_SIZE}")
    return raw


def _size(document: Mapping[str, Any], name: str, what: str) -> int:
    value = document.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} field {name} must be an integer >= 0, got {value!r}")
    return value


def _hash_list(document: Mapping[str, Any], name: str, what: str) -> list[bytes]:
    values = document.get(name)
    if not isinstance(values, list):
        raise ValueError(f"{what} field {name} must be a list of base64 hashes")
    return [decode_hash(v, f"{what} {name}[{i}]") for i, v in enumerate(values)]


def _check_format(document: Mapping[str, Any], expected: str, what: str) -> None:
    if "format" in document and document["format"] != expected:
        raise ValueError(f"{what} has format {document['format']!r}; this verifier reads {expected!r}")


# --- documents -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    audit_path: list[bytes]
    checkpoint: str | None = None
    leaf_hash: bytes | None = None

    def to_document(self) -> dict[str, Any]:
        """The JSON fields the server returns (without ``decision_id`` and ``receipt``)."""
        document: dict[str, Any] = {
            "format": INCLUSION_FORMAT,
            "leaf_index": self.leaf_index,
            "tree_size": self.tree_size,
            "audit_path": [encode_hash(h) for h in self.audit_path],
        }
        if self.leaf_hash is not None:
            document["leaf_hash"] = encode_hash(self.leaf_hash)
        if self.checkpoint is not None:
            document["checkpoint"] = self.checkpoint
        return document


def inclusion_from_document(document: Any) -> InclusionProof:
    what = "the inclusion proof"
    if not isinstance(document, Mapping):
        raise ValueError(f"{what} is not a JSON object")
    _check_format(document, INCLUSION_FORMAT, what)
    checkpoint = document.get("checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise ValueError(f"{what} field checkpoint must be the checkpoint's text")
    leaf = document.get("leaf_hash")
    return InclusionProof(
        leaf_index=_size(document, "leaf_index", what),
        tree_size=_size(document, "tree_size", what),
        audit_path=_hash_list(document, "audit_path", what),
        checkpoint=checkpoint,
        leaf_hash=None if leaf is None else decode_hash(leaf, f"{what} leaf_hash"),
    )


@dataclass(frozen=True)
class ConsistencyProof:
    from_size: int
    to_size: int
    proof: list[bytes]

    def to_document(self) -> dict[str, Any]:
        return {
            "format": CONSISTENCY_FORMAT,
            "from": self.from_size,
            "to": self.to_size,
            "proof": [encode_hash(h) for h in self.proof],
        }


def consistency_from_document(document: Any) -> ConsistencyProof:
    what = "the consistency proof"
    if not isinstance(document, Mapping):
        raise ValueError(f"{what} is not a JSON object")
    _check_format(document, CONSISTENCY_FORMAT, what)
    return ConsistencyProof(
        from_size=_size(document, "from", what),
        to_size=_size(document, "to", what),
        proof=_hash_list(document, "proof", what),
    )


# --- checkpoints signed with the receipt keys ------------------------------------------------------


def log_verifier_keys(keys: Iterable[Mapping[str, Any]], origin: str) -> list[VerifierKey]:
    """The note keys of the published receipt keys, for checkpoints of the log ``origin``.

    Every published Ed25519 receipt key may sign checkpoints, under the key name = the log's
    origin. An entry that publishes its ``note_verifier_key`` (``<origin>+<hash>+<key>``) pins the
    name; that string must be for the entry's own ``public_key``.
    """
    found = []
    for entry in keys:
        if entry.get("algorithm", ALGORITHM) != ALGORITHM:
            continue
        key_id = entry.get("key_id")
        try:
            public = b64url_decode(str(entry.get("public_key", "")))
        except (ValueError, binascii.Error):
            raise ValueError(f"published key {key_id} is not a 32-byte Ed25519 public key") from None
        if len(public) != 32:
            raise ValueError(f"published key {key_id} is not a 32-byte Ed25519 public key")
        published = entry.get("note_verifier_key")
        if published is None:
            try:
                found.append(verifier_key(origin, public))
            except NoteError as exc:
                raise NoteVerificationError(f"the checkpoint's origin cannot be a key name: {exc}") from None
            continue
        vkey = parse_verifier_key(str(published))
        if vkey.public_key != public:
            raise ValueError(f"published key {key_id}: its note_verifier_key is for another public key")
        found.append(vkey)
    return found


def open_log_checkpoint(text: str | bytes, keys: Sequence[Mapping[str, Any]]) -> VerifiedCheckpoint:
    """Verify a TraceMem checkpoint against the published receipt keys.

    Raises NoteError (malformed) or NoteVerificationError (not signed by a published key, or
    signed under a name other than its origin).
    """
    checkpoint, _ = parse_checkpoint(text)
    verified = open_checkpoint(text, log_verifier_keys(keys, checkpoint.origin))
    names = {key.name for key in verified.verified_by}
    if checkpoint.origin not in names:
        raise NoteVerificationError(
            f"the checkpoint's origin {checkpoint.origin!r} is not the log the published keys sign for "
            f"({', '.join(sorted(names))})"
        )
    return verified


def _signed_by(verified: VerifiedCheckpoint) -> str:
    return ", ".join(f"{key_id_for(k.public_key)} (note key {k.key_id})" for k in verified.verified_by)


def _describe(checkpoint: Checkpoint) -> str:
    return f"tree size {checkpoint.size} (root {merkle.short(checkpoint.root_hash)})"


# --- verdicts --------------------------------------------------------------------------------------


def _open(text: str | bytes, keys: Sequence[Mapping[str, Any]], what: str) -> VerifiedCheckpoint:
    try:
        return open_log_checkpoint(text, keys)
    except (NoteError, NoteVerificationError, ValueError) as exc:
        raise _Fail(f"{what}: {exc}") from None


class _Fail(Exception):
    pass


def verify_inclusion_verdict(
    receipt: Mapping[str, Any],
    proof: InclusionProof,
    keys: Sequence[Mapping[str, Any]],
    checkpoint_text: str | bytes | None = None,
) -> Verdict:
    """Receipt signature, checkpoint signature, then the receipt's leaf in the checkpoint's tree.

    ``checkpoint_text`` is a checkpoint the auditor holds (``--checkpoint``); without it the
    checkpoint inside the proof document is used. Both are checked against the published keys.
    """
    receipt_verdict = verify_receipt(receipt, keys)
    if not receipt_verdict.ok:
        return receipt_verdict
    decision_id = receipt["receipt_data"]["decision_id"]
    try:
        embedded = (
            None if proof.checkpoint is None else _open(proof.checkpoint, keys, "the proof's checkpoint")
        )
        given = None if checkpoint_text is None else _open(checkpoint_text, keys, "checkpoint")
        verified = given or embedded
        if verified is None:
            raise _Fail("no checkpoint: the inclusion proof carries none; pass --checkpoint")
        checkpoint = verified.checkpoint
        if embedded is not None and given is not None:
            theirs, ours = embedded.checkpoint, given.checkpoint
            if theirs.origin != ours.origin:
                raise _Fail(f"the proof's checkpoint is of log {theirs.origin!r}, yours of {ours.origin!r}")
            if theirs.size == ours.size and theirs.root_hash != ours.root_hash:
                raise _Fail(
                    f"history rewritten or forked: two checkpoints of tree size {ours.size} with different roots "
                    f"({merkle.short(ours.root_hash)} in yours, {merkle.short(theirs.root_hash)} in the proof's), "
                    "both signed by published keys"
                )
        if proof.tree_size != checkpoint.size:
            raise _Fail(
                f"the inclusion proof is for tree size {proof.tree_size} but the checkpoint is for tree size "
                f"{checkpoint.size}; fetch /api/v1/decisions/{decision_id}/inclusion?tree_size={checkpoint.size}"
            )
        try:
            leaf = receipt_leaf_hash(receipt)
        except (ValueError, TypeError) as exc:
            raise _Fail(str(exc)) from None
        if proof.leaf_hash is not None and proof.leaf_hash != leaf:
            raise _Fail(
                f"the proof's leaf_hash {merkle.short(proof.leaf_hash)} is not the leaf hash of this receipt "
                f"({merkle.short(leaf)}): it proves another receipt"
            )
        try:
            merkle.verify_inclusion(
                proof.leaf_index, proof.tree_size, leaf, proof.audit_path, checkpoint.root_hash
            )
        except merkle.InvalidProof as exc:
            raise _Fail(
                f"the receipt is not proven to be leaf {proof.leaf_index} of the log at {_describe(checkpoint)}: {exc}"
            ) from None
    except _Fail as exc:
        return Verdict(False, str(exc))
    return Verdict(
        True,
        f"{receipt_verdict.message}; it is leaf {proof.leaf_index} of the log {checkpoint.origin!r} at "
        f"{_describe(checkpoint)}, in a checkpoint signed by key {_signed_by(verified)}",
    )


def verify_consistency_verdict(
    old_text: str | bytes,
    new_text: str | bytes,
    proof: ConsistencyProof | None,
    keys: Sequence[Mapping[str, Any]],
) -> Verdict:
    """Is the log of the new checkpoint an append-only extension of the old checkpoint's?"""
    try:
        old_verified = _open(old_text, keys, "old checkpoint")
        new_verified = _open(new_text, keys, "new checkpoint")
        old, new = old_verified.checkpoint, new_verified.checkpoint
        if old.origin != new.origin:
            raise _Fail(f"the checkpoints are of two different logs: {old.origin!r} and {new.origin!r}")
        signed = f"checkpoints signed by key {_signed_by(old_verified)} and {_signed_by(new_verified)}"
        if new.size < old.size:
            raise _Fail(
                f"history rewritten: the new checkpoint has tree size {new.size}, smaller than the old "
                f"checkpoint's {old.size} (a log only grows; or the two files are swapped); {signed}"
            )
        if new.size == old.size:
            if new.root_hash != old.root_hash:
                raise _Fail(
                    f"history rewritten or forked: two checkpoints of tree size {old.size} with different roots "
                    f"({merkle.short(old.root_hash)} and {merkle.short(new.root_hash)}); {signed}"
                )
            return Verdict(True, f"both checkpoints are the same tree: {_describe(new)}; {signed}")
        if old.size == 0:
            if old.root_hash != merkle.EMPTY_ROOT:
                raise _Fail("the old checkpoint has tree size 0 but not the empty tree's root hash")
            return Verdict(True, f"the old checkpoint is the empty log, which every log extends; {signed}")
        if proof is None:
            raise _Fail(
                f"no consistency proof: pass --proof with GET /api/v1/log/consistency?from={old.size}&to={new.size}"
            )
        if (proof.from_size, proof.to_size) != (old.size, new.size):
            raise _Fail(
                f"the consistency proof is from tree size {proof.from_size} to {proof.to_size}, but the "
                f"checkpoints have tree sizes {old.size} and {new.size}; fetch "
                f"/api/v1/log/consistency?from={old.size}&to={new.size}"
            )
        try:
            merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, proof.proof)
        except merkle.RootMismatch as exc:
            raise _Fail(
                f"history rewritten or forked: the log at {_describe(new)} does not extend the old checkpoint's "
                f"{_describe(old)}: {exc}"
            ) from None
        except merkle.MalformedProof as exc:
            raise _Fail(
                f"the consistency proof from tree size {old.size} to {new.size} is malformed: {exc}"
            ) from None
    except _Fail as exc:
        return Verdict(False, str(exc))
    return Verdict(
        True,
        f"the log {new.origin!r} at {_describe(new)} is an append-only extension of the old checkpoint's "
        f"{_describe(old)} (consistency proof of {len(proof.proof)} hashes); {signed}",
    )
