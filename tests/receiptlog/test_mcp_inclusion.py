"""Issue 19 through the MCP door: ``decision_receipt`` carries the receipt's inclusion proof (leaf
index, the checkpoint it is proven against, the audit path), and an auditor verifies it offline with
``python -m tracemem_verify`` against a checkpoint fetched from ``/.well-known/tracemem/checkpoint``.

The official MCP client over real HTTP; docs/receipts.md, "Proofs through the doors".
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession

from tests.decisions.test_receipt import imported_modules, run_cli
from tests.mcp_helpers import run_mcp, tool_result_value
from tests.receiptlog.test_server import (
    ORIGIN,
    checkpoint_now,
    log_settings,  # noqa: F401 - autouse fixture
    write,
)

pytestmark = pytest.mark.django_db(transaction=True)


def close_over_mcp(live_server: Any, key: str, count: int) -> list[str]:
    async def work(session: ClientSession) -> list[str]:
        ids = []
        for i in range(count):
            _, created = tool_result_value(
                await session.call_tool(
                    "decision_create", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
                )
            )
            did = created["decision_id"]
            await session.call_tool("decision_add_context", {"decision_id": did, "context": {"step": i}})
            failed, closed = tool_result_value(
                await session.call_tool("decision_close", {"decision_id": did, "action": "commit"})
            )
            assert not failed and closed["status"] == "committed", closed
            ids.append(did)
        return ids

    return run_mcp(live_server, key, work)


def receipt_over_mcp(live_server: Any, key: str, decision_id: str) -> dict[str, Any]:
    async def work(session: ClientSession) -> Any:
        return await session.call_tool("decision_receipt", {"decision_id": decision_id})

    failed, receipt = tool_result_value(run_mcp(live_server, key, work))
    assert failed is False, receipt
    return receipt


def test_a_receipt_taken_over_mcp_proves_its_inclusion_offline_against_the_served_checkpoint(
    live_server: Any, make_agent: Any, tmp_path: Path, request: Any
) -> None:
    _, key = make_agent("mcp-auditor")
    ids = close_over_mcp(live_server, key, 3)
    http = httpx.Client(base_url=live_server.url, timeout=30)
    request.addfinalizer(http.close)  # a kept-alive connection holds the server thread's database session
    keys_file = write(tmp_path, "keys.json", http.get("/.well-known/tracemem/receipt-keys").json())

    # Closed after the latest checkpoint (there is none yet): no proof, and the receipt says why.
    pending = receipt_over_mcp(live_server, key, ids[1])
    assert pending["inclusion"] is None
    assert pending["inclusion_status"] == "pending"
    assert pending["inclusion_reason"] == (
        f"decision {ids[1]} is leaf 1 of the receipt log, and the latest checkpoint covers 0 leaves: "
        "the worker signs a newer one within seconds; ask again then"
    )
    result = run_cli("inclusion", write(tmp_path, "pending.json", pending), "--keys", keys_file)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("FAIL: ") and "inclusion_status pending: decision" in result.stdout

    assert checkpoint_now() == 3  # the worker's beat
    receipt = receipt_over_mcp(live_server, key, ids[1])
    checkpoint = http.get("/.well-known/tracemem/checkpoint")  # what the auditor fetches and keeps
    assert checkpoint.status_code == 200 and checkpoint.text.startswith(f"{ORIGIN}\n3\n")
    assert receipt["inclusion_status"] == "included" and receipt["inclusion_reason"] is None
    inclusion = receipt["inclusion"]
    assert (
        inclusion["format"],
        inclusion["decision_id"],
        inclusion["leaf_index"],
        inclusion["tree_size"],
    ) == (
        "tracemem.inclusion.v1",
        ids[1],
        1,
        3,
    )
    assert inclusion["checkpoint"] == checkpoint.text
    assert len(inclusion["audit_path"]) == 2
    # The same answer as the REST door's receipt, and the same proof as its /inclusion endpoint.
    headers = {"Authorization": f"Agent {key}"}
    assert http.get(f"/api/v1/decisions/{ids[1]}/receipt", headers=headers).json() == receipt
    rest_inclusion = http.get(f"/api/v1/decisions/{ids[1]}/inclusion", headers=headers).json()
    assert {k: v for k, v in rest_inclusion.items() if k != "receipt"} == inclusion
    assert rest_inclusion["receipt"] == {
        k: v for k, v in receipt.items() if k not in ("inclusion", "inclusion_status", "inclusion_reason")
    }

    checkpoint_file = write(tmp_path, "checkpoint", checkpoint.text)
    result = run_cli(
        "inclusion",
        write(tmp_path, "receipt.json", receipt),
        "--keys",
        keys_file,
        "--checkpoint",
        checkpoint_file,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK: receipt for decision {ids[1]}")
    assert f"it is leaf 1 of the log '{ORIGIN}' at tree size 3" in result.stdout
    loaded = imported_modules(result.stderr)  # the auditor's side: the verifier alone, no server code
    assert "tracemem_verify.log" in loaded and not {m.split(".")[0] for m in loaded} & {"django", "decisions"}

    # One hash of the audit path changed: the proof no longer leads to the checkpoint's root.
    forged_hash = base64.b64encode(hashlib.sha256(b"not the sibling").digest()).decode()
    tampered = {
        **receipt,
        "inclusion": {**inclusion, "audit_path": [forged_hash, inclusion["audit_path"][1]]},
    }
    result = run_cli(
        "inclusion",
        write(tmp_path, "tampered.json", tampered),
        "--keys",
        keys_file,
        "--checkpoint",
        checkpoint_file,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith(
        "FAIL: the receipt is not proven to be leaf 1 of the log at tree size 3 (root "
    ), result.stdout
    # The path of another leaf (its siblings) does not prove this receipt either.
    moved = {**receipt, "inclusion": {**inclusion, "leaf_index": 2}}
    result = run_cli(
        "inclusion",
        write(tmp_path, "moved.json", moved),
        "--keys",
        keys_file,
        "--checkpoint",
        checkpoint_file,
    )
    assert result.returncode == 1 and result.stdout.startswith("FAIL: the receipt is not proven"), (
        result.stdout
    )
