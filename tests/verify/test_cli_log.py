"""``python -m tracemem_verify inclusion|consistency``: the receipt log as an auditor checks it offline.

The server side of the log is not built yet, so each test builds a log here exactly as the docs
say the server will (docs/receipts.md, "Receipt log and checkpoints"): leaves are receipts, the
checkpoint is signed with a published receipt key under the log's origin, and the proof documents
have the documented JSON shapes. The CLI runs as a subprocess, as an auditor runs it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.decisions.test_receipt import imported_modules, run_cli
from tracemem_verify.checkpoint import Checkpoint, NoteSigner, sign_checkpoint, verifier_key
from tracemem_verify.log import (
    CONSISTENCY_FORMAT,
    INCLUSION_FORMAT,
    ConsistencyProof,
    InclusionProof,
    receipt_leaf,
    receipt_leaf_hash,
)
from tracemem_verify.merkle import MemoryTree, leaf_hash
from tracemem_verify.receipt import b64url_encode, key_id_for, raw_public_key, sign_receipt_data

ORIGIN = "tracemem.example.com/log"
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OLD_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
FORGER = Ed25519PrivateKey.from_private_bytes(bytes(range(200, 232)))


def _entry(private: Ed25519PrivateKey, valid_to: str | None = None) -> dict[str, Any]:
    public = raw_public_key(private.public_key())
    return {
        "key_id": key_id_for(public),
        "algorithm": "ed25519",
        "public_key": b64url_encode(public),
        "valid_from": "2026-01-01T00:00:00Z",
        "valid_to": valid_to,
    }


KEY_ID = _entry(KEY)["key_id"]
PUBLISHED = [_entry(OLD_KEY, "2026-02-01T00:00:00Z"), _entry(KEY)]


def _receipt(n: int, status: str = "committed", private: Ed25519PrivateKey = KEY) -> dict[str, Any]:
    data = {
        "decision_id": f"TMEM_{n:026d}",
        "intent": "code.refactor.execute",
        "status": status,
        "automation_mode": "autonomous",
        "agent_id": "agent_1",
        "created_at": f"2026-03-01T10:{n % 60:02d}:00Z",
        "closed_at": f"2026-03-01T11:{n % 60:02d}:00Z",
        "event_count": 3,
        "trace_head": f"{n:064x}",
    }
    return {
        "decision_id": data["decision_id"],
        "status": status,
        "receipt_data": data,
        "signature": sign_receipt_data(private, data),
        "key_id": key_id_for(raw_public_key(private.public_key())),
        "algorithm": "ed25519",
        "signed_at": data["closed_at"],
    }


class Log:
    """The log as the server will keep it: receipts in close order, perfect nodes, signed checkpoints."""

    def __init__(self, receipts: list[dict[str, Any]]) -> None:
        self.receipts = receipts
        self.tree = MemoryTree(receipt_leaf_hash(r) for r in receipts)

    def checkpoint(
        self, size: int | None = None, private: Ed25519PrivateKey = KEY, name: str = ORIGIN
    ) -> str:
        size = self.tree.size if size is None else size
        return sign_checkpoint(Checkpoint(ORIGIN, size, self.tree.root(size)), NoteSigner(name, private))

    def inclusion(self, index: int, size: int | None = None) -> dict[str, Any]:
        """``GET /api/v1/decisions/{id}/inclusion[?tree_size=N]`` exactly as documented."""
        size = self.tree.size if size is None else size
        receipt = self.receipts[index]
        return {
            "format": "tracemem.inclusion.v1",
            "decision_id": receipt["decision_id"],
            "leaf_index": index,
            "tree_size": size,
            "leaf_hash": base64.b64encode(receipt_leaf_hash(receipt)).decode(),
            "audit_path": [base64.b64encode(h).decode() for h in self.tree.inclusion_proof(index, size)],
            "checkpoint": self.checkpoint(size),
            "receipt": receipt,
        }

    def consistency(self, old: int, new: int) -> dict[str, Any]:
        """``GET /api/v1/log/consistency?from=OLD&to=NEW`` exactly as documented."""
        proof = self.tree.consistency_proof(old, new)
        return {
            "format": "tracemem.consistency.v1",
            "from": old,
            "to": new,
            "proof": [base64.b64encode(h).decode() for h in proof],
        }


def _genuine(n: int = 7) -> Log:
    return Log([_receipt(i) for i in range(n)])


def _file(tmp_path: Path, name: str, value: Any) -> str:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def _verdict(result: Any) -> str:
    return result.stdout.strip()


# --- the leaf and the documents ---------------------------------------------------------------------


def test_the_leaf_is_rfc8785_of_the_receipt_as_issued_and_nothing_else() -> None:
    receipt = _receipt(1)
    expected = (
        '{"algorithm":"ed25519","decision_id":"TMEM_00000000000000000000000001","key_id":"'
        + receipt["key_id"]
        + '","receipt_data":{"agent_id":"agent_1","automation_mode":"autonomous",'
        '"closed_at":"2026-03-01T11:01:00Z","created_at":"2026-03-01T10:01:00Z",'
        '"decision_id":"TMEM_00000000000000000000000001","event_count":3,"intent":"code.refactor.execute",'
        '"status":"committed","trace_head":"' + f"{1:064x}" + '"},"signature":"' + receipt["signature"] + '",'
        '"signed_at":"2026-03-01T11:01:00Z","status":"committed"}'
    ).encode()

    assert receipt_leaf(receipt) == expected
    assert receipt_leaf_hash(receipt) == leaf_hash(expected)
    # A field added to the receipt response later (an embedded proof, say) is not part of the leaf.
    assert receipt_leaf({**receipt, "inclusion": {"leaf_index": 3}}) == expected
    with pytest.raises(
        ValueError, match="the receipt lacks signed_at; a log leaf is made of decision_id, status"
    ):
        receipt_leaf({k: v for k, v in receipt.items() if k != "signed_at"})


def test_the_library_writes_the_documented_shapes() -> None:
    log = _genuine(5)
    documented = log.inclusion(2)
    proof = InclusionProof(
        2, 5, log.tree.inclusion_proof(2), documented["checkpoint"], receipt_leaf_hash(log.receipts[2])
    )

    assert proof.to_document() == {k: v for k, v in documented.items() if k not in ("decision_id", "receipt")}
    assert proof.to_document()["format"] == INCLUSION_FORMAT
    assert ConsistencyProof(2, 5, log.tree.consistency_proof(2, 5)).to_document() == log.consistency(2, 5)
    assert log.consistency(2, 5)["format"] == CONSISTENCY_FORMAT


# --- inclusion --------------------------------------------------------------------------------------


def test_a_receipts_inclusion_verifies_offline_against_a_signed_checkpoint(tmp_path: Path) -> None:
    log = _genuine(7)
    keys = _file(tmp_path, "keys.json", PUBLISHED)

    result = run_cli("inclusion", _file(tmp_path, "inclusion.json", log.inclusion(5)), "--keys", keys)

    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert _verdict(result) == (
        f"OK: receipt for decision TMEM_{5:026d} (committed, 3 events, trace_head {'0' * 12}…) is signed by key "
        f"{KEY_ID}; it is leaf 5 of the log '{ORIGIN}' at tree size 7 (root {_short(log.tree.root())}), in a "
        f"checkpoint signed by key {KEY_ID} (note key {ORIGIN}+{_note_hash()})"
    )
    modules = imported_modules(result.stderr)
    assert "tracemem_verify.merkle" in modules and "tracemem_verify.checkpoint" in modules
    assert not {m for m in modules if m.split(".")[0] in ("django", "rest_framework", "decisions")}


def _note_hash() -> str:
    return verifier_key(ORIGIN, raw_public_key(KEY.public_key())).key_hash.hex()


@pytest.mark.parametrize("index", [0, 1, 2, 3, 4, 5, 6])
def test_every_leaf_of_a_seven_leaf_log_verifies_with_the_auditors_own_checkpoint(
    tmp_path: Path, index: int
) -> None:
    log = _genuine(7)
    checkpoint = _file(tmp_path, "checkpoint", log.checkpoint())

    result = run_cli(
        "inclusion",
        _file(tmp_path, "inclusion.json", log.inclusion(index)),
        "--checkpoint",
        checkpoint,
        "--keys",
        _file(tmp_path, "keys.json", PUBLISHED),
    )

    assert result.returncode == 0, result.stdout
    assert f"it is leaf {index} of the log '{ORIGIN}' at tree size 7" in result.stdout


def test_a_receipt_or_an_evidence_pack_with_the_proof_beside_or_inside_verifies(tmp_path: Path) -> None:
    log = _genuine(4)
    document = log.inclusion(1)
    receipt = document.pop("receipt")
    keys = _file(tmp_path, "keys.json", {"keys": PUBLISHED})
    pack = {"format": "tracemem.evidence.v1", "receipt": receipt, "inclusion": document}

    beside = run_cli(
        "inclusion",
        _file(tmp_path, "r.json", receipt),
        "--proof",
        _file(tmp_path, "p.json", document),
        "--keys",
        keys,
    )
    inside = run_cli("inclusion", _file(tmp_path, "pack.json", pack), "--keys", keys)
    field = run_cli(
        "inclusion", _file(tmp_path, "rf.json", {**receipt, "inclusion": document}), "--keys", keys
    )
    missing = run_cli("inclusion", _file(tmp_path, "alone.json", receipt), "--keys", keys)

    assert (beside.returncode, inside.returncode, field.returncode) == (0, 0, 0), (
        beside.stdout + inside.stdout
    )
    assert missing.returncode == 1
    assert _verdict(missing) == (
        f"FAIL: {tmp_path}/alone.json carries no inclusion proof; pass --proof with the JSON of "
        "GET /api/v1/decisions/{id}/inclusion"
    )


def test_a_receipt_changed_after_it_entered_the_log_fails(tmp_path: Path) -> None:
    log = _genuine(6)
    keys = _file(tmp_path, "keys.json", PUBLISHED)
    document = log.inclusion(3)
    document["receipt"]["signed_at"] = "2026-03-02T00:00:00Z"  # unsigned by the receipt, pinned by the log
    without_hint = {k: v for k, v in document.items() if k != "leaf_hash"}

    with_hint = run_cli("inclusion", _file(tmp_path, "a.json", document), "--keys", keys)
    recomputed = run_cli("inclusion", _file(tmp_path, "b.json", without_hint), "--keys", keys)

    assert with_hint.returncode == recomputed.returncode == 1
    assert _verdict(with_hint).startswith("FAIL: the proof's leaf_hash ")
    assert _verdict(with_hint).endswith(
        "is not the leaf hash of this receipt ("
        + _short(receipt_leaf_hash(document["receipt"]))
        + "): it proves another receipt"
    )
    assert _verdict(recomputed).startswith(
        "FAIL: the receipt is not proven to be leaf 3 of the log at tree size 6 (root "
    )
    assert "the audit path of leaf 3 leads to root " in _verdict(recomputed)


def _short(value: bytes) -> str:
    return base64.b64encode(value).decode()[:12] + "…"


def test_a_proof_for_another_leaf_index_or_a_mangled_path_fails(tmp_path: Path) -> None:
    log = _genuine(6)
    keys = _file(tmp_path, "keys.json", PUBLISHED)
    moved = {**log.inclusion(3), "leaf_index": 2}
    short_path = log.inclusion(3)
    short_path["audit_path"] = short_path["audit_path"][:-1]
    garbage = log.inclusion(3)
    garbage["audit_path"][1] = "not base64!"

    results = [
        run_cli("inclusion", _file(tmp_path, f"{i}.json", d), "--keys", keys)
        for i, d in enumerate((moved, short_path, garbage))
    ]

    assert [r.returncode for r in results] == [1, 1, 1]
    assert "the receipt is not proven to be leaf 2 of the log at tree size 6" in results[0].stdout
    assert (
        results[1].stdout.strip().endswith("the audit path has 2 hashes; leaf 3 of a tree of size 6 needs 3")
    )
    assert _verdict(results[2]) == "FAIL: the inclusion proof audit_path[1] is not standard base64"


def test_a_checkpoint_of_another_size_or_a_forked_one_is_reported(tmp_path: Path) -> None:
    log = _genuine(7)
    keys = _file(tmp_path, "keys.json", PUBLISHED)
    document = _file(tmp_path, "inclusion.json", log.inclusion(2))
    older = _file(tmp_path, "older", log.checkpoint(5))
    fork = Log([*log.receipts[:6], _receipt(99)])  # same size, another last leaf
    forked = _file(tmp_path, "forked", fork.checkpoint())

    other_size = run_cli("inclusion", document, "--checkpoint", older, "--keys", keys)
    forked_result = run_cli("inclusion", document, "--checkpoint", forked, "--keys", keys)

    assert other_size.returncode == forked_result.returncode == 1
    assert _verdict(other_size) == (
        "FAIL: the inclusion proof is for tree size 7 but the checkpoint is for tree size 5; fetch "
        f"/api/v1/decisions/TMEM_{2:026d}/inclusion?tree_size=5"
    )
    assert _verdict(forked_result) == (
        f"FAIL: history rewritten or forked: two checkpoints of tree size 7 with different roots "
        f"({_short(fork.tree.root())} in yours, {_short(log.tree.root())} in the proof's), both signed by published keys"
    )


def test_a_checkpoint_not_signed_by_a_published_key_or_malformed_fails(tmp_path: Path) -> None:
    log = _genuine(3)
    keys = _file(tmp_path, "keys.json", PUBLISHED)
    forged = log.inclusion(1)
    forged["checkpoint"] = log.checkpoint(private=FORGER)
    renamed = log.inclusion(1)
    renamed["checkpoint"] = log.checkpoint(name="other.example/log")
    malformed = log.inclusion(1)
    malformed["checkpoint"] = malformed["checkpoint"].replace("\n3\n", "\n03\n", 1)

    results = [
        run_cli("inclusion", _file(tmp_path, f"{i}.json", d), "--keys", keys)
        for i, d in enumerate((forged, renamed, malformed))
    ]

    assert [r.returncode for r in results] == [1, 1, 1]
    assert _verdict(results[0]).startswith(
        f"FAIL: the proof's checkpoint: no signature by a known key: the note is signed by {ORIGIN}+"
    )
    assert "other.example/log+" in _verdict(results[1])
    assert _verdict(results[2]) == (
        "FAIL: the proof's checkpoint: the checkpoint's tree size '03' is not a decimal number without leading zeroes"
    )


def test_a_receipt_signed_by_a_forger_fails_before_the_log_is_looked_at(tmp_path: Path) -> None:
    log = Log([_receipt(0), _receipt(1, private=FORGER)])
    result = run_cli(
        "inclusion",
        _file(tmp_path, "i.json", log.inclusion(1)),
        "--keys",
        _file(tmp_path, "k.json", PUBLISHED),
    )

    assert result.returncode == 1
    assert _verdict(result) == (
        f"FAIL: key {_entry(FORGER)['key_id']} is not among the published keys; fetch /.well-known/tracemem/receipt-keys"
    )


# --- consistency ------------------------------------------------------------------------------------


def test_a_newer_checkpoint_that_extends_the_kept_one_is_ok(tmp_path: Path) -> None:
    log = _genuine(13)
    keys = _file(tmp_path, "keys.json", PUBLISHED)
    kept = _file(tmp_path, "kept", log.checkpoint(5, private=OLD_KEY))  # signed before the key rotated
    latest = _file(tmp_path, "latest", log.checkpoint())

    result = run_cli(
        "consistency",
        kept,
        latest,
        "--proof",
        _file(tmp_path, "p.json", log.consistency(5, 13)),
        "--keys",
        keys,
    )

    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    old_note = verifier_key(ORIGIN, raw_public_key(OLD_KEY.public_key())).key_id
    assert _verdict(result) == (
        f"OK: the log '{ORIGIN}' at tree size 13 (root {_short(log.tree.root())}) is an append-only extension "
        f"of the old checkpoint's tree size 5 (root {_short(log.tree.root(5))}) (consistency proof of 5 hashes); "
        f"checkpoints signed by key {_entry(OLD_KEY)['key_id']} (note key {old_note}) and {KEY_ID} "
        f"(note key {ORIGIN}+{_note_hash()})"
    )


def test_a_rewritten_history_is_caught_by_an_auditor_holding_an_earlier_checkpoint(tmp_path: Path) -> None:
    # The attacker rewrites decision 2 (aborted -> committed) and recomputes everything the database
    # holds. They cannot re-sign receipts, but the server's worker signs checkpoints of whatever tree
    # the database now has; the auditor kept the checkpoint of size 5.
    genuine = Log([_receipt(i, "aborted" if i == 2 else "committed") for i in range(5)])
    kept = _file(tmp_path, "kept", genuine.checkpoint())
    rewritten = Log([_receipt(i) for i in range(9)])
    latest = _file(tmp_path, "latest", rewritten.checkpoint())
    proof = _file(tmp_path, "proof.json", rewritten.consistency(5, 9))

    result = run_cli(
        "consistency", kept, latest, "--proof", proof, "--keys", _file(tmp_path, "k.json", PUBLISHED)
    )

    assert result.returncode == 1
    assert _verdict(result).startswith(
        f"FAIL: history rewritten or forked: the log at tree size 9 (root {_short(rewritten.tree.root())}) does "
        f"not extend the old checkpoint's tree size 5 (root {_short(genuine.tree.root())}): the proof does not "
        f"contain the old tree: it leads to root {_short(rewritten.tree.root(5))} for size 5"
    )


def test_a_fork_a_rollback_and_mismatched_sizes_are_named(tmp_path: Path) -> None:
    log = _genuine(8)
    fork = Log([*log.receipts[:7], _receipt(42)])
    keys = _file(tmp_path, "keys.json", PUBLISHED)
    at8 = _file(tmp_path, "at8", log.checkpoint())
    fork8 = _file(tmp_path, "fork8", fork.checkpoint())
    at6 = _file(tmp_path, "at6", log.checkpoint(6))

    forked = run_cli("consistency", at8, fork8, "--keys", keys)
    rolled_back = run_cli("consistency", at8, at6, "--keys", keys)
    wrong_sizes = run_cli(
        "consistency", at6, at8, "--proof", _file(tmp_path, "p.json", log.consistency(5, 8)), "--keys", keys
    )
    no_proof = run_cli("consistency", at6, at8, "--keys", keys)
    same = run_cli("consistency", at8, at8, "--keys", keys)

    assert [r.returncode for r in (forked, rolled_back, wrong_sizes, no_proof, same)] == [1, 1, 1, 1, 0]
    assert _verdict(forked).startswith(
        f"FAIL: history rewritten or forked: two checkpoints of tree size 8 with different roots "
        f"({_short(log.tree.root())} and {_short(fork.tree.root())}); checkpoints signed by key {KEY_ID}"
    )
    assert _verdict(rolled_back).startswith(
        "FAIL: history rewritten: the new checkpoint has tree size 6, smaller than the old checkpoint's 8"
    )
    assert _verdict(wrong_sizes) == (
        "FAIL: the consistency proof is from tree size 5 to 8, but the checkpoints have tree sizes 6 and 8; "
        "fetch /api/v1/log/consistency?from=6&to=8"
    )
    assert (
        _verdict(no_proof)
        == "FAIL: no consistency proof: pass --proof with GET /api/v1/log/consistency?from=6&to=8"
    )
    assert _verdict(same).startswith("OK: both checkpoints are the same tree: tree size 8")


def test_checkpoints_of_another_log_or_key_and_a_mangled_proof_fail(tmp_path: Path) -> None:
    log = _genuine(8)
    keys = _file(tmp_path, "keys.json", PUBLISHED)
    at4 = _file(tmp_path, "at4", log.checkpoint(4))
    at8 = _file(tmp_path, "at8", log.checkpoint())
    forged = _file(tmp_path, "forged", log.checkpoint(private=FORGER))
    other_log = Checkpoint("other.example/log", 8, log.tree.root())
    other = _file(tmp_path, "other", sign_checkpoint(other_log, NoteSigner("other.example/log", KEY)))
    padded = log.consistency(3, 8)
    padded["proof"].append(padded["proof"][0])

    results = [
        run_cli("consistency", at4, forged, "--keys", keys),
        run_cli("consistency", at4, other, "--keys", keys),
        run_cli(
            "consistency",
            _file(tmp_path, "at3", log.checkpoint(3)),
            at8,
            "--proof",
            _file(tmp_path, "p.json", padded),
            "--keys",
            keys,
        ),
    ]

    assert [r.returncode for r in results] == [1, 1, 1]
    assert _verdict(results[0]).startswith(
        "FAIL: new checkpoint: no signature by a known key: the note is signed by"
    )
    assert (
        _verdict(results[1])
        == "FAIL: the checkpoints are of two different logs: 'tracemem.example.com/log' and 'other.example/log'"
    )
    assert _verdict(results[2]) == (
        "FAIL: the consistency proof from tree size 3 to 8 is malformed: the consistency proof has 5 hashes; "
        "from tree size 3 to 8 it needs 4"
    )


def test_the_empty_log_is_extended_by_every_log(tmp_path: Path) -> None:
    log = _genuine(3)
    empty = _file(tmp_path, "empty", log.checkpoint(0))

    result = run_cli(
        "consistency",
        empty,
        _file(tmp_path, "at3", log.checkpoint()),
        "--keys",
        _file(tmp_path, "k.json", PUBLISHED),
    )

    assert result.returncode == 0
    assert "the old checkpoint is the empty log, which every log extends" in result.stdout


def test_a_checkpoint_file_may_be_the_inclusion_json_that_carries_it(tmp_path: Path) -> None:
    log = _genuine(6)
    keys = _file(tmp_path, "keys.json", PUBLISHED)
    kept = _file(tmp_path, "kept.json", log.inclusion(1, 4))  # the auditor kept an inclusion document

    result = run_cli(
        "consistency",
        kept,
        _file(tmp_path, "new", log.checkpoint()),
        "--proof",
        _file(tmp_path, "p.json", log.consistency(4, 6)),
        "--keys",
        keys,
    )

    assert result.returncode == 0, result.stdout


# --- usage --------------------------------------------------------------------------------------------


def test_usage_errors_exit_2_and_the_receipt_invocation_is_unchanged(tmp_path: Path) -> None:
    log = _genuine(2)
    keys = _file(tmp_path, "keys.json", PUBLISHED)
    document = _file(tmp_path, "i.json", log.inclusion(0))

    no_keys = run_cli("inclusion", document)
    no_new = run_cli("consistency", _file(tmp_path, "c", log.checkpoint()), "--keys", keys)
    legacy = run_cli(_file(tmp_path, "receipt.json", log.receipts[0]), "--keys", keys)

    assert no_keys.returncode == no_new.returncode == 2
    assert "the following arguments are required: --keys" in no_keys.stderr
    assert legacy.returncode == 0, legacy.stdout
    assert _verdict(legacy).startswith(f"OK: receipt for decision TMEM_{0:026d} (committed, 3 events")
    assert _verdict(legacy).endswith("trace not checked (pass --trace)")
