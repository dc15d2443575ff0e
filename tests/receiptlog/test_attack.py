"""Issue 19, "Must show": someone holding the PostgreSQL superuser rewrites a closed decision's
history and recomputes every hash — the trace chain, the decision row, the receipt, the receipt log's
leaves and subtree hashes — and re-signs nothing. The server's own worker then signs the rewritten
tree. An auditor holding a checkpoint from before detects it offline with ``python -m
tracemem_verify consistency``, and ``manage.py log_verify`` reports it.

The second test goes further: the attacker also holds the receipt signing key (the same host), so
the rewritten receipt verifies and ``verify_traces`` passes, and hides the stored checkpoints. The
checkpoints that left the server (an auditor's file, ``TRACEMEM_CHECKPOINT_DIR``) still catch it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client, override_settings

from decisions import receipts
from receiptlog.models import Checkpoint
from tests.conftest import AgentClient, superuser_sql
from tests.decisions.test_receipt import run_cli
from tests.receiptlog.test_server import (
    checkpoint_now,
    close_decision,
    fetch_checkpoint,
    keys,
    log_settings,  # noqa: F401 - autouse fixture
    write,
)
from tracemem_verify.chain import event_hash
from tracemem_verify.log import receipt_leaf_hash
from tracemem_verify.merkle import MemoryTree
from tracemem_verify.receipt import sign_receipt_data

pytestmark = pytest.mark.django_db(transaction=True)


def rewrite_history(
    api: AgentClient, decision_id: str, *, stolen_key: Any = None, key_id: str | None = None
) -> None:
    """What the attacker does, as the PostgreSQL superuser with TraceMem's triggers switched off
    (``key_id``: the receipt now names that key, one the attacker published in the database)."""
    events = api.get(f"/api/v1/decisions/{decision_id}/trace").json()["events"]
    receipt = api.get(f"/api/v1/decisions/{decision_id}/receipt").json()
    context = next(e for e in events if e["type"] == "context")
    context["payload"] = {"context": {"step": "nothing to see here"}}
    statements = []
    prev = events[0]["prev_hash"]
    for event in events:  # recompute the whole chain from the forged event on
        event["prev_hash"] = prev
        event["hash"] = prev = event_hash(event)
        statements.append(
            "UPDATE decisions_traceevent SET payload = '{}'::jsonb, prev_hash = '{}', hash = '{}' "
            "WHERE event_id = '{}'".format(
                json.dumps(event["payload"]).replace("'", "''"),
                event["prev_hash"],
                event["hash"],
                event["event_id"],
            )
        )
    statements.append(
        f"UPDATE decisions_decision SET trace_head = '{prev}' WHERE decision_id = '{decision_id}'"
    )
    data = {**receipt["receipt_data"], "trace_head": prev}
    signature = receipt["signature"] if stolen_key is None else sign_receipt_data(stolen_key, data)
    key_id = key_id or receipt["key_id"]
    statements.append(
        f"UPDATE decisions_receipt SET receipt_data = '{json.dumps(data)}'::jsonb, signature = '{signature}', "
        f"key_id = '{key_id}' WHERE decision_id = '{decision_id}'"
    )
    # The receipt log: the leaf of the rewritten receipt, and every subtree hash, recomputed.
    rewritten = {**receipt, "receipt_data": data, "signature": signature, "key_id": key_id}
    rows = superuser_sql(
        "SELECT leaf_index, decision_id, leaf_hash FROM receiptlog_logleaf ORDER BY leaf_index"
    )
    tree = MemoryTree()
    for index, did, stored in rows:
        value = receipt_leaf_hash(rewritten) if did == decision_id else bytes(stored)
        tree.append_hash(value)
        completes = (~index & (index + 1)).bit_length() - 1
        subtrees = b"".join(tree.node(h, index >> h) for h in range(1, completes + 1))
        statements.append(
            f"UPDATE receiptlog_logleaf SET leaf_hash = '\\x{value.hex()}', subtree_hashes = '\\x{subtrees.hex()}' "
            f"WHERE leaf_index = {index}"
        )
    superuser_sql(*statements)


def test_a_superuser_rewrite_is_caught_by_an_auditors_checkpoint_and_by_log_verify(
    api: AgentClient, tmp_path: Path, capsys: Any
) -> None:
    ids = [close_decision(api, step=f"step {i}") for i in range(3)]
    checkpoint_now()
    kept = write(tmp_path, "checkpoint-kept", fetch_checkpoint())  # the auditor keeps this one
    keys_file = write(tmp_path, "keys.json", keys())
    call_command("log_verify")

    rewrite_history(api, ids[1])
    trace = api.get(f"/api/v1/decisions/{ids[1]}/trace").json()
    assert trace["events"][1]["payload"] == {"context": {"step": "nothing to see here"}}
    close_decision(api)  # the log goes on, and the worker signs the rewritten tree
    assert checkpoint_now() == 4
    new = write(tmp_path, "checkpoint-new", fetch_checkpoint())
    proof = write(tmp_path, "proof.json", Client().get("/api/v1/log/consistency?from=3&to=4").json())

    result = run_cli("consistency", kept, new, "--proof", proof, "--keys", keys_file)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(
        f"FAIL: history rewritten or forked: the log at tree size 4 (root {_short(new)}) does not extend "
        f"the old checkpoint's tree size 3 (root {_short(kept)})"
    ), result.stdout

    capsys.readouterr()
    with pytest.raises(CommandError, match=r"problem\(s\) in the receipt log"):
        call_command("log_verify")
    err = capsys.readouterr().err
    assert f"BROKEN receipt log: leaf 1 (decision {ids[1]}): its receipt does not verify" in err
    assert "BROKEN receipt log: stored checkpoint of tree size 3: history rewritten: it signs root" in err
    assert "but the receipts in the database rebuild root" in err
    assert "stored checkpoint of tree size 4" not in err  # signed after the rewrite, over the rewritten tree


def test_with_the_signing_key_too_only_checkpoints_kept_elsewhere_catch_the_rewrite(
    api: AgentClient, tmp_path: Path, capsys: Any
) -> None:
    shipped = tmp_path / "shipped"  # TRACEMEM_CHECKPOINT_DIR, copied off the server by the operator
    with override_settings(TRACEMEM_CHECKPOINT_DIR=str(shipped)):
        ids = [close_decision(api, step=f"step {i}") for i in range(5)]
        checkpoint_now()
        assert (shipped / "checkpoint-5").read_text() == fetch_checkpoint()
        kept = write(tmp_path, "checkpoint-kept", fetch_checkpoint())
        keys_file = write(tmp_path, "keys.json", keys())

        rewrite_history(api, ids[0], stolen_key=receipts.current_signing_key().private_key)
        # ... and hides every checkpoint that commits to the old history.
        superuser_sql("DELETE FROM receiptlog_checkpoint")
        call_command("verify_traces")  # every chain and every receipt verifies: nothing to see here
        close_decision(api)
        assert checkpoint_now() == 6 and Checkpoint.objects.count() == 1

        new = write(tmp_path, "checkpoint-new", fetch_checkpoint())
        proof = write(tmp_path, "proof.json", Client().get("/api/v1/log/consistency?from=5&to=6").json())
        result = run_cli("consistency", kept, new, "--proof", proof, "--keys", keys_file)
        assert result.returncode == 1 and result.stdout.startswith("FAIL: history rewritten or forked:"), (
            result.stdout
        )
        assert "tree size 6" in result.stdout and "tree size 5" in result.stdout

        capsys.readouterr()
        with pytest.raises(CommandError):
            call_command("log_verify")
        err = capsys.readouterr().err
        assert f"checkpoint file {shipped / 'checkpoint-5'}: history rewritten" in err
        assert "stored checkpoint" not in err
        # The auditor's own file, given to log_verify, says the same.
        with pytest.raises(CommandError):
            call_command("log_verify", "--checkpoint-dir", str(tmp_path / "none"), "--checkpoint", kept)
        assert f"checkpoint file {kept}: history rewritten: it signs root" in capsys.readouterr().err


def _short(path: str) -> str:
    from tracemem_verify.checkpoint import parse_checkpoint
    from tracemem_verify.merkle import short

    return short(parse_checkpoint(Path(path).read_text())[0].root_hash)


def test_a_key_the_superuser_published_fools_the_database_but_not_the_keys_an_auditor_kept(
    api: AgentClient, tmp_path: Path, capsys: Any
) -> None:
    """No stolen key: the attacker publishes a key of their own (a row of decisions_receiptkey),
    re-signs the rewritten receipt with it and deletes the stored checkpoints; the server's worker
    then signs the rewritten tree. ``log_verify`` against the database alone has nothing left to
    catch it (docs/receipts.md says so); with ``--keys`` (the keys document an auditor kept) it fails."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from tracemem_verify.receipt import b64url_encode, key_id_for

    ids = [close_decision(api, step=f"step {i}") for i in range(3)]
    checkpoint_now()
    kept_keys = write(tmp_path, "keys.json", keys())
    call_command("log_verify", "--keys", kept_keys)

    mine = Ed25519PrivateKey.generate()
    raw = mine.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    superuser_sql(
        "INSERT INTO decisions_receiptkey (key_id, algorithm, public_key, valid_from) "
        f"VALUES ('{key_id_for(raw)}', 'ed25519', '{b64url_encode(raw)}', '2000-01-01Z')"
    )
    rewrite_history(api, ids[1], stolen_key=mine, key_id=key_id_for(raw))
    superuser_sql("DELETE FROM receiptlog_checkpoint")
    close_decision(api)
    assert checkpoint_now() == 4
    capsys.readouterr()
    call_command("log_verify")  # the database vouches for the attacker's key: the documented limit
    assert capsys.readouterr().out.startswith("OK:")

    with pytest.raises(CommandError):
        call_command("log_verify", "--keys", kept_keys)
    err = capsys.readouterr().err
    assert (
        f"leaf 1 (decision {ids[1]}): its receipt does not verify: key {key_id_for(raw)} is not among" in err
    )


def test_log_verify_names_every_stored_checkpoint_the_rewrite_contradicts_and_only_those(
    api: AgentClient, capsys: Any
) -> None:
    ids = []
    for i in range(4):  # checkpoints of sizes 1, 2, 3 and 4
        ids.append(close_decision(api, step=f"step {i}"))
        assert checkpoint_now() == i + 1
    rewrite_history(api, ids[2])  # leaf 2: the checkpoints of sizes 3 and 4 contain it, 1 and 2 do not
    with pytest.raises(CommandError, match=r"problem\(s\) in the receipt log"):
        call_command("log_verify")
    err = capsys.readouterr().err
    broken = sorted(
        int(line.split("stored checkpoint of tree size ")[1].split(":")[0])
        for line in err.splitlines()
        if "stored checkpoint of tree size" in line
    )
    assert broken == [3, 4], err
