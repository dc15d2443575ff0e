"""The receipt log on the server (issue 19): every receipt a leaf, signed checkpoints, inclusion and
consistency proofs through the doors, checked offline by ``python -m tracemem_verify``.

docs/receipts.md, "Receipt log and checkpoints".
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, transaction
from django.test import Client, override_settings

from decisions import receipts
from decisions import services as decision_services
from decisions.models import Decision, Receipt
from receiptlog import tasks
from receiptlog.models import Checkpoint, LogLeaf
from tests.conftest import AgentClient, psql_as_app
from tests.decisions.test_receipt import SEED_A, SEED_B, _seed_b64, run_cli
from tracemem_core.actor import Actor
from tracemem_verify.checkpoint import parse_checkpoint
from tracemem_verify.log import LEAF_FIELDS, open_log_checkpoint, receipt_leaf_hash
from tracemem_verify.merkle import MemoryTree

pytestmark = pytest.mark.django_db
ORIGIN = "tracemem.test/log"


@pytest.fixture(autouse=True)
def log_settings() -> Iterator[None]:
    receipts._load_signing_key.cache_clear()
    with override_settings(
        TRACEMEM_RECEIPT_KEY=_seed_b64(SEED_A),
        TRACEMEM_RECEIPT_KEY_FILE="",
        TRACEMEM_LOG_ORIGIN=ORIGIN,
        TRACEMEM_LOG_WITNESSES=[],
        TRACEMEM_CHECKPOINT_DIR="",
    ):
        yield
    receipts._load_signing_key.cache_clear()


def close_decision(api: AgentClient, action: str = "commit", step: str = "extract") -> str:
    created = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    )
    did = created.json()["decision_id"]
    assert api.post(f"/api/v1/decisions/{did}/context", {"context": {"step": step}}).status_code == 201
    closed = api.post(f"/api/v1/decisions/{did}/close", {"action": action, "reason": "done"})
    assert closed.status_code == 200, closed.content
    return did


def checkpoint_now() -> int | None:
    """What the worker's beat does every few seconds; the size of the checkpoint it signed, if any."""
    return tasks.log_tick()["checkpoint_size"]


def fetch_checkpoint(tree_size: int | None = None) -> str:
    query = "" if tree_size is None else f"?tree_size={tree_size}"
    response = Client().get(f"/.well-known/tracemem/checkpoint{query}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    return response.content.decode("utf-8")


def keys() -> list[dict[str, Any]]:
    return Client().get("/.well-known/tracemem/receipt-keys").json()


def write(tmp_path: Path, name: str, value: Any) -> str:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def test_every_closed_decision_becomes_the_next_leaf_in_close_order(api: AgentClient) -> None:
    first = close_decision(api)
    second = close_decision(api, action="abort")
    record = api.post(
        "/api/v1/records",
        {
            "title": "Use RFC 9162",
            "category": "architecture",
            "context": "c",
            "decision": "d",
            "rationale": "r",
        },
    ).json()["decision_id"]
    leaves = list(LogLeaf.objects.order_by("leaf_index").values_list("leaf_index", "receipt_id", "leaf_hash"))
    assert [(i, d) for i, d, _ in leaves] == [(0, first), (1, second), (2, record)]
    for _, did, stored in leaves:
        receipt = api.get(f"/api/v1/decisions/{did}/receipt").json()
        assert bytes(stored) == receipt_leaf_hash(receipt)
    # An open decision has no leaf.
    api.post("/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"})
    assert LogLeaf.objects.count() == 3


def test_a_receipts_inclusion_proof_verifies_offline_against_the_servers_checkpoint(
    api: AgentClient, tmp_path: Path
) -> None:
    ids = [close_decision(api, step=f"s{i}") for i in range(5)]
    assert checkpoint_now() == 5
    checkpoint = fetch_checkpoint()  # what an auditor keeps
    assert checkpoint.startswith(f"{ORIGIN}\n5\n")
    inclusion = api.get(f"/api/v1/decisions/{ids[2]}/inclusion")
    assert inclusion.status_code == 200, inclusion.content
    document = inclusion.json()
    assert document["format"] == "tracemem.inclusion.v1"
    assert (document["decision_id"], document["leaf_index"], document["tree_size"]) == (ids[2], 2, 5)
    assert document["checkpoint"] == checkpoint
    # The receipt as issued (the leaf's fields); decision_receipt adds the same proof to it.
    receipt = api.get(f"/api/v1/decisions/{ids[2]}/receipt").json()
    assert document["receipt"] == {k: v for k, v in receipt.items() if k in LEAF_FIELDS}
    assert receipt["inclusion"] == {k: v for k, v in document.items() if k != "receipt"}
    assert len(document["audit_path"]) == 3

    keys_file = write(tmp_path, "keys.json", keys())
    result = run_cli(
        "inclusion",
        write(tmp_path, "inclusion.json", document),
        "--keys",
        keys_file,
        "--checkpoint",
        write(tmp_path, "checkpoint", checkpoint),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK: receipt for decision {ids[2]}")
    assert f"it is leaf 2 of the log '{ORIGIN}' at tree size 5" in result.stdout

    # The evidence pack carries the same proof under "inclusion" (without the receipt it already has).
    pack = api.get(f"/api/v1/decisions/{ids[2]}/evidence").json()
    assert pack["inclusion"] == {k: v for k, v in document.items() if k != "receipt"}
    result = run_cli("inclusion", write(tmp_path, "pack.json", pack), "--keys", keys_file)
    assert result.returncode == 0, result.stdout + result.stderr

    # A receipt swapped into the proof of another leaf fails offline.
    forged = {**document, "receipt": api.get(f"/api/v1/decisions/{ids[3]}/receipt").json()}
    result = run_cli("inclusion", write(tmp_path, "forged.json", forged), "--keys", keys_file)
    assert result.returncode == 1 and result.stdout.startswith("FAIL:"), result.stdout


def test_inclusion_waits_for_a_checkpoint_that_covers_the_leaf(api: AgentClient) -> None:
    assert Client().get("/.well-known/tracemem/checkpoint").json()["error"]["code"] == "not_found"
    first = close_decision(api)
    checkpoint_now()
    second = close_decision(api)
    response = api.get(f"/api/v1/decisions/{second}/inclusion")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "invalid_state"
    assert "leaf 1 of the receipt log, and the latest checkpoint covers 1 leaves" in error["message"]
    assert api.get(f"/api/v1/decisions/{first}/inclusion").status_code == 200
    # Nothing to sign twice: a tick without new leaves makes no checkpoint.
    assert checkpoint_now() == 2 and checkpoint_now() is None
    assert api.get(f"/api/v1/decisions/{second}/inclusion").json()["tree_size"] == 2
    # Against an older checkpoint: by size.
    older = api.get(f"/api/v1/decisions/{first}/inclusion?tree_size=1").json()
    assert older["tree_size"] == 1 and older["audit_path"] == []
    refused = api.get(f"/api/v1/decisions/{second}/inclusion?tree_size=1")
    assert refused.status_code == 400 and refused.json()["error"]["details"] == {"field": "tree_size"}
    assert api.get(f"/api/v1/decisions/{first}/inclusion?tree_size=7").status_code == 404
    assert api.get(f"/api/v1/decisions/{first}/inclusion?tree_size=x").json()["error"]["details"] == {
        "field": "tree_size"
    }


def test_inclusion_refuses_open_and_other_agents_decisions(api: AgentClient, make_agent: Any) -> None:
    open_id = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    assert api.get(f"/api/v1/decisions/{open_id}/inclusion").json()["error"]["code"] == "invalid_state"
    did = close_decision(api)
    checkpoint_now()
    _, other_key = make_agent("other")
    response = AgentClient(other_key).get(f"/api/v1/decisions/{did}/inclusion")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert Client().get(f"/api/v1/decisions/{did}/inclusion").status_code == 401


def test_consistency_proof_between_two_server_checkpoints_verifies_offline(
    api: AgentClient, tmp_path: Path
) -> None:
    for i in range(3):
        close_decision(api, step=f"a{i}")
    checkpoint_now()
    old = fetch_checkpoint()
    for i in range(4):
        close_decision(api, step=f"b{i}")
    checkpoint_now()
    new = fetch_checkpoint()
    assert fetch_checkpoint(3) == old  # older checkpoints stay served by size
    response = Client().get("/api/v1/log/consistency?from=3&to=7")
    assert response.status_code == 200, response.content
    proof = response.json()
    assert proof["format"] == "tracemem.consistency.v1" and (proof["from"], proof["to"]) == (3, 7)
    assert Client().get("/api/v1/log/consistency?from=3").json() == proof  # "to" defaults to the latest
    result = run_cli(
        "consistency",
        write(tmp_path, "old", old),
        write(tmp_path, "new", new),
        "--proof",
        write(tmp_path, "proof.json", proof),
        "--keys",
        write(tmp_path, "keys.json", keys()),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is an append-only extension of the old checkpoint's tree size 3" in result.stdout


@pytest.mark.parametrize(
    ("query", "field"),
    [("", "from"), ("from=x", "from"), ("from=-1", "from"), ("from=2&to=1", "from"), ("from=1&to=9", "to")],
)
def test_consistency_refuses_sizes_it_cannot_prove(api: AgentClient, query: str, field: str) -> None:
    close_decision(api)
    close_decision(api)
    checkpoint_now()
    response = Client().get(f"/api/v1/log/consistency?{query}")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_argument"
    assert response.json()["error"]["details"] == {"field": field}


def test_published_keys_carry_the_note_verifier_key_the_checkpoints_verify_with(api: AgentClient) -> None:
    close_decision(api)
    checkpoint_now()
    published = keys()
    (entry,) = published
    note_key = entry["note_verifier_key"]
    assert note_key.startswith(f"{ORIGIN}+")
    public = base64.urlsafe_b64decode(entry["public_key"] + "=")
    assert note_key.endswith("+" + base64.b64encode(b"\x01" + public).decode())
    verified = open_log_checkpoint(fetch_checkpoint(), published)
    assert verified.checkpoint.size == 1 and [str(k) for k in verified.verified_by] == [note_key]
    stored = Checkpoint.objects.get()
    assert stored.key_id == entry["key_id"] and bytes(stored.root_hash) == verified.checkpoint.root_hash


def test_checkpoint_roots_are_the_rfc_9162_roots_of_the_receipts(api: AgentClient) -> None:
    ids = []
    tree = MemoryTree()
    for size in range(1, 10):
        ids.append(close_decision(api, step=f"n{size}"))
        tree.append_hash(receipt_leaf_hash(api.get(f"/api/v1/decisions/{ids[-1]}/receipt").json()))
        checkpoint_now()
        parsed, _ = parse_checkpoint(fetch_checkpoint())
        assert (parsed.size, parsed.root_hash) == (size, tree.root())
    for old in range(1, 10):
        proof = Client().get(f"/api/v1/log/consistency?from={old}&to=9").json()["proof"]
        assert proof == [base64.b64encode(h).decode() for h in tree.consistency_proof(old, 9)]
    for index in range(9):
        path = api.get(f"/api/v1/decisions/{ids[index]}/inclusion").json()["audit_path"]
        assert path == [base64.b64encode(h).decode() for h in tree.inclusion_proof(index, 9)]


def test_log_verify_accepts_an_intact_log(api: AgentClient, capsys: Any) -> None:
    for _ in range(3):
        close_decision(api)
    checkpoint_now()
    close_decision(api)
    checkpoint_now()
    call_command("log_verify")
    assert (
        "OK: receipt log of 4 leaves recomputed from the receipts; 2 checkpoint(s)" in capsys.readouterr().out
    )


# --- what the database itself refuses --------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_app_role_cannot_change_remove_or_forge_leaves_and_checkpoints(api: AgentClient) -> None:
    close_decision(api)
    close_decision(api)
    checkpoint_now()
    for sql in (
        "UPDATE receiptlog_logleaf SET leaf_hash = '\\x00' WHERE leaf_index = 0",
        "DELETE FROM receiptlog_logleaf WHERE leaf_index = 1",
        "TRUNCATE receiptlog_logleaf CASCADE",
        "UPDATE receiptlog_checkpoint SET note = 'x'",
        "DELETE FROM receiptlog_checkpoint",
        # A checkpoint whose root is not the root of the stored leaves.
        "INSERT INTO receiptlog_checkpoint (tree_size, root_hash, note, key_id, created_at) "
        "VALUES (1, sha256('x'), 'o\n1\nAAAA\n', 'k', now())",
    ):
        result = psql_as_app(sql)
        assert result.returncode != 0, sql
    assert LogLeaf.objects.count() == 2 and Checkpoint.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_receipt_cannot_commit_without_its_leaf(api: AgentClient, monkeypatch: Any) -> None:
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    monkeypatch.setattr(receipts, "_receipt_listeners", [])  # a bug that forgets the log
    actor = Actor.for_agent(Decision.objects.get(pk=did).agent)
    with pytest.raises(DatabaseError, match="is not in the receipt log"):
        decision_services.decision_close(actor=actor, decision_id=did, action="commit")
    assert Decision.objects.get(pk=did).status == "open"
    assert not Receipt.objects.filter(pk=did).exists()


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda leaf: {"subtree_hashes": b"\x00" * 32}, "carries a wrong subtree hash at level 1"),
        (lambda leaf: {"subtree_hashes": b""}, "carries a wrong subtree hash at level 1"),
        (lambda leaf: {"subtree_hashes": bytes(leaf.subtree_hashes) * 2}, "completes 1 subtrees, not 2"),
        (lambda leaf: {"leaf_index": 5}, "leaf 5 does not continue the receipt log"),
    ],
)
def test_the_database_refuses_a_leaf_that_does_not_continue_the_tree(
    api: AgentClient, monkeypatch: Any, corrupt: Any, message: str
) -> None:
    close_decision(api)
    from receiptlog import services

    def buggy_append(*, receipt: Receipt) -> None:
        with transaction.atomic():
            leaf = services.log_append(receipt=receipt)
            transaction.set_rollback(True)
        fields = {
            "leaf_index": leaf.leaf_index,
            "receipt": receipt,
            "leaf_hash": leaf.leaf_hash,
            "subtree_hashes": leaf.subtree_hashes,
        }
        LogLeaf.objects.create(**{**fields, **corrupt(leaf)})

    monkeypatch.setattr(receipts, "_receipt_listeners", [buggy_append])
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    actor = Actor.for_agent(Decision.objects.get(pk=did).agent)
    with pytest.raises(DatabaseError, match=message), transaction.atomic():
        decision_services.decision_close(actor=actor, decision_id=did, action="commit")
    assert LogLeaf.objects.count() == 1 and Decision.objects.get(pk=did).status == "open"


def test_log_verify_exit_code_is_non_zero_from_the_command_line_on_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CommandError):
        call_command("log_verify", "--checkpoint", str(tmp_path / "missing"))


def test_checkpoints_signed_before_a_key_rotation_keep_verifying_and_prove_consistency(
    api: AgentClient, tmp_path: Path
) -> None:
    close_decision(api)
    checkpoint_now()
    old = write(tmp_path, "old", fetch_checkpoint())
    receipts._load_signing_key.cache_clear()
    with override_settings(TRACEMEM_RECEIPT_KEY=_seed_b64(SEED_B)):  # the operator rotates the key
        close_decision(api)
        checkpoint_now()
        new = write(tmp_path, "new", fetch_checkpoint())
        published = keys()
    assert [k["valid_to"] is None for k in published] == [False, True]
    assert all(k["note_verifier_key"].startswith(f"{ORIGIN}+") for k in published)
    result = run_cli(
        "consistency",
        old,
        new,
        "--proof",
        write(tmp_path, "proof.json", Client().get("/api/v1/log/consistency?from=1&to=2").json()),
        "--keys",
        write(tmp_path, "keys.json", published),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    old_id, new_id = (k["key_id"] for k in published)
    assert f"checkpoints signed by key {old_id}" in result.stdout and f"and {new_id}" in result.stdout
    call_command("log_verify")


@pytest.mark.django_db(transaction=True)
def test_concurrent_closes_append_gapless_leaves_in_commit_order(make_agent: Any, capsys: Any) -> None:
    import threading

    from django.db import connections

    agent, _ = make_agent("busy-agent")
    actor = Actor.for_agent(agent)
    ids = [
        decision_services.decision_create(
            actor=actor, intent="load.test.close", automation_mode="autonomous"
        ).decision_id
        for _ in range(12)
    ]
    errors: list[BaseException] = []
    start = threading.Barrier(len(ids))

    def close(decision_id: str) -> None:
        try:
            start.wait()
            decision_services.decision_close(actor=actor, decision_id=decision_id, action="commit")
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=close, args=(did,)) for did in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    leaves = list(LogLeaf.objects.order_by("leaf_index").values_list("leaf_index", "receipt_id"))
    assert [i for i, _ in leaves] == list(range(12)) and {d for _, d in leaves} == set(ids)
    assert checkpoint_now() == 12
    call_command("log_verify")
    assert "OK: receipt log of 12 leaves" in capsys.readouterr().out


def test_a_log_origin_that_cannot_be_a_note_key_name_stops_the_server_at_start_up() -> None:
    import os
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tracemem_site.settings",
            "TRACEMEM_LOG_ORIGIN": "a+b/log",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "TRACEMEM_LOG_ORIGIN 'a+b/log' must be non-empty, without spaces or '+'" in result.stderr
