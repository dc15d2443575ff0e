"""Signed receipts (docs/contract/tools.md decision_receipt) and their offline verification (tracemem_verify)."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.test import Client, override_settings

from agents.models import Agent
from decisions import receipts
from decisions.models import Decision, ReceiptKey
from tests.conftest import AgentClient
from tracemem_verify.receipt import b64url_encode, key_id_for, raw_public_key, sign_receipt_data

pytestmark = pytest.mark.django_db

BASE_DIR = Path(settings.BASE_DIR)


def _seed_b64(seed: bytes) -> str:
    return base64.b64encode(seed).decode()


def _key_id_of_seed(seed: bytes) -> str:
    return key_id_for(raw_public_key(Ed25519PrivateKey.from_private_bytes(seed).public_key()))


SEED_A = bytes(range(32))
SEED_B = bytes(range(100, 132))


@pytest.fixture(autouse=True)
def key_a() -> Iterator[None]:
    """Every test signs with a known key unless it says otherwise (never the developer's var/ key)."""
    receipts._load_signing_key.cache_clear()
    with override_settings(TRACEMEM_RECEIPT_KEY=_seed_b64(SEED_A), TRACEMEM_RECEIPT_KEY_FILE=""):
        yield
    receipts._load_signing_key.cache_clear()


def _closed_decision(api: AgentClient, action: str = "commit") -> str:
    created = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()
    did = created["decision_id"]
    assert api.post(f"/api/v1/decisions/{did}/context", {"context": {"step": "extract"}}).status_code == 201
    closed = api.post(f"/api/v1/decisions/{did}/close", {"action": action, "reason": "done"})
    assert closed.status_code == 200, closed.content
    return did


def _keys() -> Any:
    response = Client().get("/.well-known/tracemem/receipt-keys")
    assert response.status_code == 200
    return response.json()


def _write(tmp_path: Path, name: str, value: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return str(path)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m tracemem_verify`` as an auditor runs it: no Django settings, import times on."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
    env["PYTHONPATH"] = str(BASE_DIR)
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tracemem_verify", *args],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def imported_modules(stderr: str) -> set[str]:
    return {
        line.rsplit("|", 1)[-1].strip() for line in stderr.splitlines() if line.startswith("import time:")
    }


def test_receipt_of_committed_decision_verifies_offline_with_published_key(
    api: AgentClient, tmp_path: Path
) -> None:
    did = _closed_decision(api)
    response = api.get(f"/api/v1/decisions/{did}/receipt")
    assert response.status_code == 200
    receipt = response.json()
    decision = api.get(f"/api/v1/decisions/{did}").json()
    assert set(receipt) == {
        "decision_id",
        "status",
        "receipt_data",
        "signature",
        "key_id",
        "algorithm",
        "signed_at",
        # the receipt log's proof (docs/receipts.md, "Proofs through the doors")
        "inclusion",
        "inclusion_status",
        "inclusion_reason",
    }
    assert receipt["algorithm"] == "ed25519"
    assert receipt["key_id"] == _key_id_of_seed(SEED_A)
    assert receipt["status"] == "committed"
    assert receipt["receipt_data"] == {
        name: decision[name]
        for name in (
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
    } | {"close_action": "commit"}
    assert receipt["receipt_data"]["event_count"] == 3
    trace = api.get(f"/api/v1/decisions/{did}/trace").json()

    result = run_cli(
        _write(tmp_path, "receipt.json", receipt),
        "--trace",
        _write(tmp_path, "trace.json", trace),
        "--keys",
        _write(tmp_path, "keys.json", _keys()),
    )

    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert result.stdout.startswith(f"OK: receipt for decision {did} (committed, 3 events")
    assert "trace of 3 events recomputes to the receipt's trace_head" in result.stdout
    modules = imported_modules(result.stderr)
    assert "tracemem_verify.receipt" in modules
    assert not {m for m in modules if m.split(".")[0] in ("django", "rest_framework", "decisions")}


def test_changing_one_byte_of_receipt_data_fails_with_a_clear_verdict(
    api: AgentClient, tmp_path: Path
) -> None:
    did = _closed_decision(api)
    receipt = api.get(f"/api/v1/decisions/{did}/receipt").json()
    receipt["receipt_data"]["intent"] = "code.refactor.executf"

    result = run_cli(_write(tmp_path, "r.json", receipt), "--keys", _write(tmp_path, "k.json", _keys()))

    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"FAIL: signature does not verify with key {_key_id_of_seed(SEED_A)}: receipt_data was changed or signed "
        "by another key"
    )


def test_changing_one_byte_of_the_trace_fails_with_a_clear_verdict(api: AgentClient, tmp_path: Path) -> None:
    did = _closed_decision(api)
    receipt = api.get(f"/api/v1/decisions/{did}/receipt").json()
    trace = api.get(f"/api/v1/decisions/{did}/trace").json()
    trace["events"][1]["payload"]["context"]["step"] = "extracu"

    result = run_cli(
        _write(tmp_path, "r.json", receipt),
        "--trace",
        _write(tmp_path, "t.json", trace),
        "--keys",
        _write(tmp_path, "k.json", _keys()),
    )

    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"FAIL: trace decision {did}: broken at seq 2: hash does not match the event's content"
    )


def test_a_trace_cut_short_does_not_match_the_receipt(api: AgentClient, tmp_path: Path) -> None:
    did = _closed_decision(api)
    receipt = api.get(f"/api/v1/decisions/{did}/receipt").json()
    trace = api.get(f"/api/v1/decisions/{did}/trace").json()
    trace["events"] = trace["events"][:2]

    result = run_cli(
        _write(tmp_path, "r.json", receipt),
        "--trace",
        _write(tmp_path, "t.json", trace),
        "--keys",
        _write(tmp_path, "k.json", _keys()),
    )

    assert result.returncode == 1
    assert result.stdout.strip() == "FAIL: trace has 2 events but the receipt pins 3"


def test_a_receipt_resigned_with_another_key_under_our_key_id_fails(api: AgentClient, tmp_path: Path) -> None:
    did = _closed_decision(api)
    receipt = api.get(f"/api/v1/decisions/{did}/receipt").json()
    receipt["receipt_data"]["status"] = receipt["status"] = "aborted"
    receipt["signature"] = sign_receipt_data(Ed25519PrivateKey.generate(), receipt["receipt_data"])

    result = run_cli(_write(tmp_path, "r.json", receipt), "--keys", _write(tmp_path, "k.json", _keys()))

    assert result.returncode == 1
    assert result.stdout.startswith(f"FAIL: signature does not verify with key {_key_id_of_seed(SEED_A)}")


def test_a_receipt_verified_against_another_servers_keys_names_the_missing_key(
    api: AgentClient, tmp_path: Path
) -> None:
    did = _closed_decision(api)
    receipt = api.get(f"/api/v1/decisions/{did}/receipt").json()
    other = Ed25519PrivateKey.generate().public_key()
    raw = raw_public_key(other)
    foreign_keys = [{"key_id": key_id_for(raw), "algorithm": "ed25519", "public_key": b64url_encode(raw)}]

    result = run_cli(_write(tmp_path, "r.json", receipt), "--keys", _write(tmp_path, "k.json", foreign_keys))

    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"FAIL: key {receipt['key_id']} is not among the published keys; fetch /.well-known/tracemem/receipt-keys"
    )


def test_receipt_for_an_open_decision_is_invalid_state_and_changes_nothing(api: AgentClient) -> None:
    did = api.post(
        "/api/v1/decisions", {"intent": "code.refactor.execute", "automation_mode": "autonomous"}
    ).json()["decision_id"]
    before = api.get(f"/api/v1/decisions/{did}").json()

    response = api.get(f"/api/v1/decisions/{did}/receipt")

    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "invalid_state"
    assert error["message"] == (
        f"decision {did} is open: receipts exist only for closed decisions; call decision_close first, "
        "then decision_receipt"
    )
    assert api.get(f"/api/v1/decisions/{did}").json() == before


def test_aborted_decisions_get_receipts_too(api: AgentClient) -> None:
    did = _closed_decision(api, action="abort")
    receipt = api.get(f"/api/v1/decisions/{did}/receipt").json()
    assert receipt["status"] == receipt["receipt_data"]["status"] == "aborted"


def test_receipt_of_another_agents_decision_is_not_found(
    api: AgentClient, make_agent: Callable[..., tuple[Agent, str]]
) -> None:
    did = _closed_decision(api)
    _, other_key = make_agent("intruder")
    response = AgentClient(other_key).get(f"/api/v1/decisions/{did}/receipt")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_receipt_keys_are_public_and_list_the_signing_key(client: Client) -> None:
    response = client.get("/.well-known/tracemem/receipt-keys")
    assert response.status_code == 200
    [key] = response.json()
    public_raw = raw_public_key(Ed25519PrivateKey.from_private_bytes(SEED_A).public_key())
    assert key["key_id"] == key_id_for(public_raw)
    assert key["algorithm"] == "ed25519"
    assert key["public_key"] == b64url_encode(public_raw)
    assert key["valid_from"].endswith("Z") and key["valid_to"] is None


def test_key_rotation_keeps_old_receipts_verifiable(api: AgentClient, tmp_path: Path) -> None:
    did = _closed_decision(api)
    old_receipt = api.get(f"/api/v1/decisions/{did}/receipt").json()

    receipts._load_signing_key.cache_clear()
    with override_settings(TRACEMEM_RECEIPT_KEY=_seed_b64(SEED_B)):
        # A receipt is issued once: the old decision keeps the receipt signed when it closed.
        assert api.get(f"/api/v1/decisions/{did}/receipt").json() == old_receipt
        new_receipt = api.get(f"/api/v1/decisions/{_closed_decision(api)}/receipt").json()
        keys = _keys()

    assert old_receipt["key_id"] == _key_id_of_seed(SEED_A)
    assert new_receipt["key_id"] == _key_id_of_seed(SEED_B)
    assert [k["key_id"] for k in keys] == [_key_id_of_seed(SEED_A), _key_id_of_seed(SEED_B)]
    assert keys[0]["valid_to"] is not None and keys[1]["valid_to"] is None
    keys_path = _write(tmp_path, "k.json", keys)
    for name, receipt in (("old", old_receipt), ("new", new_receipt)):
        result = run_cli(_write(tmp_path, f"{name}.json", receipt), "--keys", keys_path)
        assert result.returncode == 0, (name, result.stdout)
        assert result.stdout.startswith("OK: ")


def test_signing_key_may_be_a_base64_pem_or_a_key_file(api: AgentClient, tmp_path: Path) -> None:
    private = Ed25519PrivateKey.from_private_bytes(SEED_B)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key_file = tmp_path / "receipt.pem"
    key_file.write_bytes(pem)
    for env_key, env_file in ((base64.b64encode(pem).decode(), ""), ("", str(key_file))):
        receipts._load_signing_key.cache_clear()
        with override_settings(TRACEMEM_RECEIPT_KEY=env_key, TRACEMEM_RECEIPT_KEY_FILE=env_file):
            did = _closed_decision(api)
            assert api.get(f"/api/v1/decisions/{did}/receipt").json()["key_id"] == _key_id_of_seed(SEED_B)


def test_embedded_default_generates_one_private_key_file_under_var_dir(
    api: AgentClient, tmp_path: Path
) -> None:
    receipts._load_signing_key.cache_clear()
    with override_settings(TRACEMEM_RECEIPT_KEY="", TRACEMEM_RECEIPT_KEY_FILE="", VAR_DIR=tmp_path):
        first = api.get(f"/api/v1/decisions/{_closed_decision(api)}/receipt").json()
        receipts._load_signing_key.cache_clear()
        second = api.get(f"/api/v1/decisions/{_closed_decision(api)}/receipt").json()
    key_file = tmp_path / receipts.DEFAULT_KEY_FILENAME
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert first["key_id"] == second["key_id"] != _key_id_of_seed(SEED_A)


def test_receipt_signing_writes_nothing_to_the_trace(api: AgentClient) -> None:
    did = _closed_decision(api)
    before = Decision.objects.get(pk=did)
    api.get(f"/api/v1/decisions/{did}/receipt")
    after = Decision.objects.get(pk=did)
    assert (after.event_count, after.trace_head) == (before.event_count, before.trace_head)
    assert ReceiptKey.objects.count() == 1
