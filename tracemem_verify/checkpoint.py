"""C2SP signed notes with Ed25519 signatures, and the C2SP tlog-checkpoint body they carry.

Specifications: https://c2sp.org/signed-note and https://c2sp.org/tlog-checkpoint (compatible
with ``golang.org/x/mod/sumdb/note``). No Django here, as in the rest of ``tracemem_verify``.

A signed note is its text (ending in a newline), a blank line, then one or more signature lines
``— <key name> <base64(4-byte key hash || Ed25519 signature of the text)>``. The key hash is the
first 4 bytes of ``SHA-256(key name || 0x0A || 0x01 || 32-byte public key)``, and a verifier key
is written ``<key name>+<hex key hash>+<base64(0x01 || public key)>``.

A checkpoint's text is the log's origin line, its tree size in decimal (no leading zeroes), the
base64 of the RFC 9162 root hash, then optional non-empty extension lines.

Parsing is strict: anything the specifications do not allow raises :class:`NoteError` saying what
is wrong; signatures that do not check out raise :class:`NoteVerificationError`. Signatures by
unknown keys are ignored (the specification requires it, for rotation and witness cosignatures),
a signature by a known key that fails rejects the whole note, and a note with no verified
signature is rejected.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ED25519 = 0x01  # signature type byte of signed-note Ed25519 keys
MAX_SIGNATURES = 100  # the specification requires accepting at least 16; Go's note package stops at 100
MAX_NOTE_BYTES = 1 << 20
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_HEX8 = re.compile(r"[0-9a-f]{8}")


class NoteError(ValueError):
    """A note, checkpoint or verifier key that does not follow the specification."""


class NoteVerificationError(ValueError):
    """A well-formed note whose signatures do not prove it was signed by a known key."""


def _b64decode(text: str, what: str) -> bytes:
    """Standard base64 with padding, canonical only (re-encoding must give the same text)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise NoteError(f"{what} is not standard base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise NoteError(f"{what} is not canonical standard base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def is_valid_key_name(name: str) -> bool:
    """Non-empty, no Unicode space, no ``+``."""
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def _check_text(text: str, what: str) -> None:
    for offset, ch in enumerate(text):
        if ord(ch) < 0x20 and ch != "\n":
            raise NoteError(f"{what} contains the control character U+{ord(ch):04X} at offset {offset}")


# --- keys ------------------------------------------------------------------------------------------


def note_key_hash(name: str, public_key: bytes) -> bytes:
    """The 4-byte key hash of an Ed25519 note key: SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519]) + public_key).digest()[:4]


@dataclass(frozen=True)
class VerifierKey:
    """A known Ed25519 note key: its name, key hash and 32-byte public key."""

    name: str
    key_hash: bytes
    public_key: bytes

    @property
    def key_id(self) -> str:
        """``<name>+<hex key hash>``, how messages name a note key."""
        return f"{self.name}+{self.key_hash.hex()}"

    def __str__(self) -> str:
        return f"{self.key_id}+{_b64encode(bytes([ED25519]) + self.public_key)}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def verifier_key(name: str, public_key: bytes) -> VerifierKey:
    """The verifier key of an Ed25519 public key (32 raw bytes) under a key name."""
    if not is_valid_key_name(name):
        raise NoteError(f"key name {name!r} is empty or contains a space or '+'")
    if len(public_key) != 32:
        raise NoteError(f"an Ed25519 public key has 32 bytes, not {len(public_key)}")
    return VerifierKey(name, note_key_hash(name, public_key), public_key)


def parse_verifier_key(vkey: str) -> VerifierKey:
    """Parse ``<name>+<hex key hash>+<base64(0x01 || public key)>``, strictly."""
    name, _, rest = vkey.partition("+")
    hash_hex, _, key_b64 = rest.partition("+")
    if not is_valid_key_name(name):
        raise NoteError(f"verifier key {vkey!r}: the key name is empty or contains a space or '+'")
    if not _HEX8.fullmatch(hash_hex):
        raise NoteError(f"verifier key {vkey!r}: the key hash must be 8 lowercase hex digits")
    key = _b64decode(key_b64, f"verifier key {vkey!r}: the key")
    if not key or key[0] != ED25519:
        kind = f"0x{key[0]:02x}" if key else "missing"
        raise NoteError(f"verifier key {vkey!r}: signature type {kind}; only Ed25519 (0x01) is supported")
    if len(key) != 33:
        raise NoteError(f"verifier key {vkey!r}: an Ed25519 public key has 32 bytes, not {len(key) - 1}")
    parsed = verifier_key(name, key[1:])
    if parsed.key_hash.hex() != hash_hex:
        raise NoteError(
            f"verifier key {vkey!r}: the key hash {hash_hex} is not the hash of this name and key"
        )
    return parsed


class NoteSigner:
    """Signs notes with an Ed25519 private key under a key name (the log's origin, for TraceMem)."""

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.verifier_key = verifier_key(name, public)
        self._private_key = private_key

    @property
    def name(self) -> str:
        return self.verifier_key.name

    def sign(self, text: str) -> NoteSignature:
        signature = self._private_key.sign(text.encode("utf-8"))
        return NoteSignature(self.name, self.verifier_key.key_hash, signature)


# --- notes -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NoteSignature:
    name: str
    key_hash: bytes
    signature: bytes

    @property
    def key_id(self) -> str:
        return f"{self.name}+{self.key_hash.hex()}"

    def line(self) -> str:
        return f"{SIGNATURE_PREFIX}{self.name} {_b64encode(self.key_hash + self.signature)}\n"


@dataclass(frozen=True)
class Note:
    text: str
    signatures: tuple[NoteSignature, ...]

    def __str__(self) -> str:
        return self.text + "\n" + "".join(s.line() for s in self.signatures)


def parse_note(data: str | bytes) -> Note:
    """Split a signed note into its text and signature lines, refusing anything malformed.

    Nothing is verified here: never act on the text of a note that :func:`open_note` did not open.
    """
    if isinstance(data, str):
        try:
            data = data.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise NoteError(f"the note is not valid UTF-8 (character {exc.start})") from None
    if len(data) > MAX_NOTE_BYTES:
        raise NoteError(f"the note is larger than {MAX_NOTE_BYTES} bytes")
    try:
        text_all = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NoteError(f"the note is not valid UTF-8 (byte {exc.start})") from None
    _check_text(text_all, "the note")
    split = text_all.rfind("\n\n")
    if split < 0:
        raise NoteError("the note has no blank line between its text and its signatures")
    text, block = text_all[: split + 1], text_all[split + 2 :]
    if not block:
        raise NoteError("the note has no signature lines after its blank line")
    if not block.endswith("\n"):
        raise NoteError("the note's last signature line does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"the note has {len(lines)} signature lines; at most {MAX_SIGNATURES} are accepted")
    signatures = []
    for number, line in enumerate(lines, start=1):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"signature line {number} does not start with an em dash and a space")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        if not is_valid_key_name(name):
            raise NoteError(f"signature line {number}: the key name is empty or contains a space or '+'")
        raw = _b64decode(encoded, f"signature line {number}: the signature")
        if len(raw) < 5:
            raise NoteError(f"signature line {number}: the signature is shorter than a key hash and one byte")
        signatures.append(NoteSignature(name, raw[:4], raw[4:]))
    return Note(text, tuple(signatures))


def sign_note(text: str, signers: Sequence[NoteSigner], keep: Sequence[NoteSignature] = ()) -> str:
    """A signed note: ``text`` (ending in a newline), signed by each signer.

    ``keep`` are signatures already on the note (e.g. a witness's cosignature) to carry over;
    one by the same key as a signer is replaced by the signer's new signature.
    """
    if not text.endswith("\n"):
        raise NoteError("a note's text must end with a newline")
    _check_text(text, "the note text")
    if not signers and not keep:
        raise NoteError("a signed note needs at least one signature")
    fresh = [signer.sign(text) for signer in signers]
    replaced = {(s.name, s.key_hash) for s in fresh}
    kept = [s for s in keep if (s.name, s.key_hash) not in replaced]
    return str(Note(text, (*kept, *fresh)))


@dataclass(frozen=True)
class OpenedNote:
    note: Note
    verified_by: tuple[VerifierKey, ...]


def open_note(data: str | bytes, known: Iterable[VerifierKey]) -> OpenedNote:
    """Parse a note and verify it against known keys (C2SP signed-note verification rules)."""
    note = parse_note(data)
    by_id: dict[tuple[str, bytes], set[VerifierKey]] = {}
    for key in known:
        by_id.setdefault((key.name, key.key_hash), set()).add(key)
    message = note.text.encode("utf-8")
    verified: list[VerifierKey] = []
    for signature in note.signatures:
        candidates = by_id.get((signature.name, signature.key_hash))
        if not candidates:
            continue  # an unknown key (another key of the log, a witness): ignored
        if len(candidates) > 1:
            raise NoteVerificationError(
                f"ambiguous key {signature.key_id}: two known keys share that name and hash"
            )
        (key,) = candidates
        if key in verified:
            continue
        if not key.verify(message, signature.signature):
            raise NoteVerificationError(
                f"invalid signature for key {signature.key_id}: the note text was changed or signed by another key"
            )
        verified.append(key)
    if not verified:
        signed_by = ", ".join(s.key_id for s in note.signatures)
        known_ids = ", ".join(sorted({key.key_id for keys in by_id.values() for key in keys}))
        raise NoteVerificationError(
            f"no signature by a known key: the note is signed by {signed_by}; "
            f"the known keys are {known_ids or 'none'}"
        )
    return OpenedNote(note, tuple(verified))


# --- checkpoints -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        lines = [self.origin, str(self.size), _b64encode(self.root_hash), *self.extensions]
        return "\n".join(lines) + "\n"


def parse_checkpoint_text(text: str) -> Checkpoint:
    """Parse a checkpoint's note text (origin, size, root hash, extension lines), strictly."""
    if not text.endswith("\n"):
        raise NoteError("a checkpoint's text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError(
            f"a checkpoint has at least three lines (origin, tree size, root hash); this one has {len(lines)}"
        )
    origin, size_line, root_line, *extensions = lines
    if not origin:
        raise NoteError("the checkpoint's origin line is empty")
    if not _DECIMAL.fullmatch(size_line) or int(size_line) >= 1 << 64:
        raise NoteError(
            f"the checkpoint's tree size {size_line!r} is not a decimal number without leading zeroes"
        )
    root = _b64decode(root_line, "the checkpoint's root hash")
    if len(root) != 32:
        raise NoteError(f"the checkpoint's root hash has {len(root)} bytes; a SHA-256 hash has 32")
    for number, line in enumerate(extensions, start=4):
        if not line:
            raise NoteError(f"line {number} of the checkpoint is empty; extension lines must not be")
    return Checkpoint(origin, int(size_line), root, tuple(extensions))


def parse_checkpoint(data: str | bytes) -> tuple[Checkpoint, Note]:
    """Parse a signed checkpoint WITHOUT verifying it (to read its origin before choosing keys)."""
    note = parse_note(data)
    return parse_checkpoint_text(note.text), note


def sign_checkpoint(checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """The signed note of a checkpoint (the key name should be the origin, and is for TraceMem)."""
    if (
        checkpoint.size < 0
        or len(checkpoint.root_hash) != 32
        or not checkpoint.origin
        or "\n" in checkpoint.origin
    ):
        raise NoteError("a checkpoint needs an origin line, a size >= 0 and a 32-byte root hash")
    if any(not line or "\n" in line for line in checkpoint.extensions):
        raise NoteError("extension lines must be non-empty single lines")
    return sign_note(checkpoint.text(), [signer])


@dataclass(frozen=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    note: Note
    verified_by: tuple[VerifierKey, ...]


def open_checkpoint(data: str | bytes, known: Iterable[VerifierKey]) -> VerifiedCheckpoint:
    """Parse and verify a signed checkpoint against known keys."""
    checkpoint, _ = parse_checkpoint(data)
    opened = open_note(data, known)
    return VerifiedCheckpoint(checkpoint, opened.note, opened.verified_by)
