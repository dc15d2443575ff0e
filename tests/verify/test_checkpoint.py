"""C2SP signed notes and tlog-checkpoints (tracemem_verify.checkpoint), and how TraceMem's receipt keys
sign them (tracemem_verify.log).

``tests/vectors/signed_notes.json`` holds data copied verbatim, each source named in its ``_source``:
golang.org/x/mod's ``sumdb/note/note_test.go`` (PeterNeumann / EnochRoot keys, the signed text,
both signature lines, the malformed notes) and the sum.golang.org verifier key of ``gosumcheck``;
the examples of C2SP's ``signed-note.md`` and ``tlog-checkpoint.md``; a real checkpoint of the Go
checksum database signed by sum.golang.org, quoted in sigsum's ``proposals/2023-01-checkpoint-format.md``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tracemem_verify.chain import canonical_json
from tracemem_verify.checkpoint import (
    Checkpoint,
    NoteError,
    NoteSignature,
    NoteSigner,
    NoteVerificationError,
    open_checkpoint,
    open_note,
    parse_checkpoint,
    parse_checkpoint_text,
    parse_note,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verifier_key,
)
from tracemem_verify.log import log_verifier_keys, open_log_checkpoint
from tracemem_verify.receipt import b64url_encode, key_id_for, raw_public_key

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "vectors" / "signed_notes.json").read_text()
)
GO = VECTORS["go_note"]
PETER = parse_verifier_key(GO["peter_vkey"])
ENOCH = parse_verifier_key(GO["enoch_vkey"])
TEXT = GO["text"]
PETER_SIG = GO["peter_signature_line"]
ENOCH_SIG = GO["enoch_signature_line"]

ORIGIN = "tracemem.example.com/log"
ROOT = bytes(range(32))
URLSAFE_ROOT = base64.urlsafe_b64encode(bytes([0xFF]) * 32).decode()


def peter_signer() -> NoteSigner:
    # PRIVATE+KEY+<name>+<hash>+base64(0x01 || 32-byte Ed25519 seed), as golang.org/x/mod/sumdb/note writes it.
    _, _, name, _, encoded = GO["peter_skey"].split("+", 4)
    raw = base64.b64decode(encoded)
    assert raw[0] == 1
    return NoteSigner(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))


# --- verifier keys ---------------------------------------------------------------------------------


def test_published_verifier_keys_parse_and_print_back() -> None:
    for vkey in (
        GO["peter_vkey"],
        GO["enoch_vkey"],
        VECTORS["c2sp_note"]["vkey"],
        VECTORS["sumdb_checkpoint"]["vkey"],
    ):
        parsed = parse_verifier_key(vkey)
        assert str(parsed) == vkey
        assert verifier_key(parsed.name, parsed.public_key) == parsed
    assert PETER.key_id == "PeterNeumann+c74f20a3"


def test_every_mangling_of_a_verifier_key_is_refused() -> None:
    # As sumdb/note's TestNewVerifier: every proper substring, and every single byte changed.
    vkey = GO["peter_vkey"]
    for i in range(len(vkey) + 1):
        for j in range(i + 1, len(vkey) + 1):
            if (i, j) != (0, len(vkey)):
                with pytest.raises(NoteError):
                    parse_verifier_key(vkey[i:j])
    for i, ch in enumerate(vkey):
        with pytest.raises(NoteError):
            parse_verifier_key(vkey[:i] + chr(ord(ch) + 1) + vkey[i + 1 :])


def test_bad_verifier_keys_say_why() -> None:
    wrong_length, unknown_type = GO["bad_vkeys"]
    with pytest.raises(NoteError, match="the key is not canonical standard base64"):
        parse_verifier_key(wrong_length)  # Go refuses it for its length; its base64 is already non-canonical
    long_key = bytes([1]) + PETER.public_key + b"!"
    long_hash = hashlib.sha256(b"PeterNeumann\n" + long_key).hexdigest()[:8]
    with pytest.raises(NoteError, match="an Ed25519 public key has 32 bytes, not 33"):
        parse_verifier_key(f"PeterNeumann+{long_hash}+{base64.b64encode(long_key).decode()}")
    with pytest.raises(NoteError, match=r"signature type 0x65; only Ed25519 \(0x01\) is supported"):
        parse_verifier_key(unknown_type)
    with pytest.raises(NoteError, match="key hash c74f20a4 is not the hash of this name and key"):
        parse_verifier_key(GO["peter_vkey"].replace("c74f20a3", "c74f20a4"))
    with pytest.raises(NoteError, match="8 lowercase hex digits"):
        parse_verifier_key(GO["peter_vkey"].replace("c74f20a3", "C74F20A3"))


# --- signing and opening notes ---------------------------------------------------------------------


def test_signing_reproduces_the_published_signed_note() -> None:
    signer = peter_signer()

    assert signer.verifier_key == PETER
    assert sign_note(TEXT, [signer]) == TEXT + "\n" + PETER_SIG
    stale = NoteSignature("PeterNeumann", PETER.key_hash, b"BADSIGN")
    assert sign_note(TEXT, [signer], keep=[stale]) == TEXT + "\n" + PETER_SIG
    enoch = parse_note(TEXT + "\n" + ENOCH_SIG).signatures[0]
    assert sign_note(TEXT, [signer], keep=[enoch]) == TEXT + "\n" + ENOCH_SIG + PETER_SIG
    with pytest.raises(NoteError, match="must end with a newline"):
        sign_note("abc", [signer])


def test_opening_verifies_known_keys_and_ignores_unknown_ones() -> None:
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG

    only_peter = open_note(note, [PETER])
    both = open_note(note, [PETER, ENOCH])

    assert only_peter.note.text == TEXT
    assert only_peter.verified_by == (PETER,)
    assert both.verified_by == (PETER, ENOCH)
    assert [s.key_id for s in both.note.signatures] == ["PeterNeumann+c74f20a3", "EnochRoot+af0cfe78"]
    with pytest.raises(
        NoteVerificationError,
        match=r"^no signature by a known key: the note is signed by "
        r"PeterNeumann\+c74f20a3, EnochRoot\+af0cfe78; the known keys are none$",
    ):
        open_note(note, [])
    duplicated = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG
    assert open_note(duplicated, [PETER]).verified_by == (PETER,)


def test_a_signature_by_a_known_key_that_fails_rejects_the_note() -> None:
    tampered = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(
        NoteVerificationError, match=r"^invalid signature for key PeterNeumann\+c74f20a3: the note"
    ):
        open_note(tampered, [PETER])
    changed_text = TEXT.replace("problem", "problems", 1) + "\n" + PETER_SIG
    with pytest.raises(NoteVerificationError, match="invalid signature for key PeterNeumann"):
        open_note(changed_text, [PETER, ENOCH])


def test_the_published_malformed_notes_are_refused_with_a_reason() -> None:
    reasons = [
        "no blank line between its text and its signatures",
        "no signature lines after its blank line",
        "last signature line does not end with a newline",
        "control character U+0001 at offset 0",
        "last signature line does not end with a newline",
        "signature line 2 does not start with an em dash and a space",
    ]
    for note, reason in zip(GO["malformed_notes"], reasons, strict=True):
        with pytest.raises(NoteError, match=re.escape(reason)):
            open_note(note, [PETER])


def test_malformed_notes_beyond_the_published_ones() -> None:
    with pytest.raises(NoteError, match="not valid UTF-8"):
        parse_note(b"\xff" + (TEXT + "\n" + PETER_SIG).encode())
    with pytest.raises(NoteError, match="not valid UTF-8"):
        parse_note("\ud800" + TEXT + "\n" + PETER_SIG)
    with pytest.raises(NoteError, match="101 signature lines; at most 100"):
        parse_note(TEXT + "\n" + PETER_SIG * 101)
    with pytest.raises(NoteError, match="not canonical standard base64"):
        parse_note(TEXT + "\n" + "— PeterNeumann AAAAAAB=\n")
    with pytest.raises(NoteError, match="shorter than a key hash and one byte"):
        parse_note(TEXT + "\n" + "— PeterNeumann AAAAAA==\n")
    with pytest.raises(NoteError, match="key name is empty or contains a space or '\\+'"):
        parse_note(
            TEXT
            + "\n"
            + "— a+b x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
        )
    with pytest.raises(NoteError, match="signature line 1: the signature is not standard base64"):
        parse_note(GO["malformed_notes"][4] + "\n")  # "— Bad Name <sig>": the name ends at the first space
    with pytest.raises(NoteError, match="the note is larger than"):
        parse_note(b"x" * (1 << 20) + b"\n\n" + PETER_SIG.encode())


def test_the_c2sp_example_note_verifies() -> None:
    example = VECTORS["c2sp_note"]
    opened = open_note(example["note"], [parse_verifier_key(example["vkey"])])
    assert opened.note.text == "This is an example message.\n"


# --- checkpoints -----------------------------------------------------------------------------------


def test_a_real_sum_golang_org_checkpoint_verifies() -> None:
    vector = VECTORS["sumdb_checkpoint"]

    verified = open_checkpoint(vector["note"], [parse_verifier_key(vector["vkey"])])

    assert verified.checkpoint == Checkpoint(
        vector["origin"], vector["size"], base64.b64decode(vector["root_hash_b64"])
    )
    forged = vector["note"].replace("15368405", "15368406")
    with pytest.raises(NoteVerificationError, match=r"invalid signature for key sum.golang.org\+033de0ae"):
        open_checkpoint(forged, [parse_verifier_key(vector["vkey"])])


def test_the_c2sp_example_checkpoint_parses_but_its_unpublished_key_is_unknown() -> None:
    vector = VECTORS["c2sp_checkpoint"]

    checkpoint, note = parse_checkpoint(vector["note"])

    assert (checkpoint.origin, checkpoint.size) == (vector["origin"], vector["size"])
    assert base64.b64encode(checkpoint.root_hash).decode() == vector["root_hash_b64"]
    assert note.signatures[0].name == vector["origin"]
    with pytest.raises(NoteVerificationError, match="no signature by a known key"):
        open_checkpoint(vector["note"], [PETER])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (f"{ORIGIN}\n12\n", "at least three lines"),
        (f"\n12\n{base64.b64encode(ROOT).decode()}\n", "origin line is empty"),
        (
            f"{ORIGIN}\n012\n{base64.b64encode(ROOT).decode()}\n",
            "'012' is not a decimal number without leading",
        ),
        (f"{ORIGIN}\n-1\n{base64.b64encode(ROOT).decode()}\n", "'-1' is not a decimal"),
        (f"{ORIGIN}\n+1\n{base64.b64encode(ROOT).decode()}\n", "'\\+1' is not a decimal"),
        (f"{ORIGIN}\n1 \n{base64.b64encode(ROOT).decode()}\n", "'1 ' is not a decimal"),
        (f"{ORIGIN}\n18446744073709551616\n{base64.b64encode(ROOT).decode()}\n", "is not a decimal"),
        (f"{ORIGIN}\n1\n{base64.b64encode(ROOT[:31]).decode()}\n", "root hash has 31 bytes"),
        (f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode().rstrip('=')}\n", "root hash is not standard base64"),
        (f"{ORIGIN}\n1\n{URLSAFE_ROOT}\n", "root hash is not standard base64"),
        (f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}\next\n\n", "line 5 of the checkpoint is empty"),
        (f"{ORIGIN}\n1\n{base64.b64encode(ROOT).decode()}", "must end with a newline"),
    ],
)
def test_malformed_checkpoint_bodies_are_refused(text: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        parse_checkpoint_text(text)


def test_a_signed_checkpoint_round_trips_and_any_change_is_caught() -> None:
    signer = NoteSigner(ORIGIN, Ed25519PrivateKey.from_private_bytes(bytes(32)))
    checkpoint = Checkpoint(ORIGIN, 20852163, ROOT, ("extension one",))

    note = sign_checkpoint(checkpoint, signer)

    assert note.startswith(
        f"{ORIGIN}\n20852163\n{base64.b64encode(ROOT).decode()}\nextension one\n\n— {ORIGIN} "
    )
    assert open_checkpoint(note, [signer.verifier_key]).checkpoint == checkpoint
    for original, changed in (
        ("20852163", "20852164"),
        ("extension one", "extension two"),
        (ORIGIN + "\n", "x" + ORIGIN + "\n"),
    ):
        with pytest.raises(NoteVerificationError):
            open_checkpoint(note.replace(original, changed, 1), [signer.verifier_key])
    empty = sign_checkpoint(Checkpoint(ORIGIN, 0, bytes(32)), signer)
    assert open_checkpoint(empty, [signer.verifier_key]).checkpoint.size == 0


# --- the receipt keys sign the log's checkpoints ---------------------------------------------------


def _receipt_key(seed: int) -> tuple[Ed25519PrivateKey, dict[str, Any]]:
    private = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    public = raw_public_key(private.public_key())
    entry = {"key_id": key_id_for(public), "algorithm": "ed25519", "public_key": b64url_encode(public)}
    return private, entry


def test_a_checkpoint_signed_with_a_published_receipt_key_under_the_origin_verifies() -> None:
    old_private, old_entry = _receipt_key(1)
    new_private, new_entry = _receipt_key(2)
    keys = [{**old_entry, "valid_to": "2026-01-01T00:00:00Z"}, new_entry]
    before = sign_checkpoint(Checkpoint(ORIGIN, 3, ROOT), NoteSigner(ORIGIN, old_private))
    after = sign_checkpoint(Checkpoint(ORIGIN, 9, ROOT), NoteSigner(ORIGIN, new_private))

    # Rotation: the old key stays published, so checkpoints it signed keep verifying.
    assert open_log_checkpoint(before, keys).checkpoint.size == 3
    assert open_log_checkpoint(after, keys).verified_by[0].public_key == base64.urlsafe_b64decode(
        new_entry["public_key"] + "="
    )
    with pytest.raises(NoteVerificationError, match="no signature by a known key"):
        open_log_checkpoint(before, [new_entry])  # the old key was withdrawn


def test_the_key_name_must_be_the_origin() -> None:
    private, entry = _receipt_key(3)
    note = sign_note(Checkpoint(ORIGIN, 1, ROOT).text(), [NoteSigner("elsewhere.example/log", private)])

    with pytest.raises(
        NoteVerificationError,
        match=r"signed by elsewhere.example/log\+[0-9a-f]{8}; the known keys "
        r"are tracemem.example.com/log\+",
    ):
        open_log_checkpoint(note, [entry])


def test_a_published_note_verifier_key_pins_the_log_origin() -> None:
    private, entry = _receipt_key(4)
    public = base64.urlsafe_b64decode(entry["public_key"] + "=")
    pinned = {**entry, "note_verifier_key": str(verifier_key(ORIGIN, public))}
    other_origin = "impostor.example/log"
    impostor = sign_note(Checkpoint(other_origin, 1, ROOT).text(), [NoteSigner(ORIGIN, private)])
    genuine = sign_checkpoint(Checkpoint(ORIGIN, 1, ROOT), NoteSigner(ORIGIN, private))

    assert open_log_checkpoint(genuine, [pinned]).checkpoint.origin == ORIGIN
    with pytest.raises(
        NoteVerificationError,
        match="origin 'impostor.example/log' is not the log the published keys sign for",
    ):
        open_log_checkpoint(impostor, [pinned])
    _, other = _receipt_key(5)
    with pytest.raises(ValueError, match="its note_verifier_key is for another public key"):
        log_verifier_keys([{**other, "note_verifier_key": pinned["note_verifier_key"]}], ORIGIN)
    assert [str(k) for k in log_verifier_keys([pinned], "ignored")] == [pinned["note_verifier_key"]]


def test_a_receipt_signature_can_never_pass_for_a_note_signature() -> None:
    # Receipts and checkpoints share the key: a receipt signs canonical JSON, which has no newline
    # (RFC 8785 escapes it), while every note text has at least one; so no message is both.
    message = canonical_json({"intent": "multi\nline", "summary": "a\n\nb"})
    assert b"\n" not in message
    with pytest.raises(NoteError):
        parse_checkpoint_text(message.decode())
