"""Offline verification of evidence packs (tracemem_verify): what the CLI may and may not call OK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.test import Client

from agents.models import Agent
from tests.conftest import AgentClient
from tests.decisions.test_evidence_pack import _story, signing_key  # noqa: F401 - autouse fixture
from tests.decisions.test_receipt import run_cli
from tracemem_verify.receipt import b64url_encode, key_id_for, raw_public_key, sign_receipt_data

pytestmark = pytest.mark.django_db

FORGER_SEED = bytes(range(200, 232))


def _pack(api: AgentClient, agent: Agent) -> dict[str, Any]:
    story = _story(api, agent)
    response = api.get(f"/api/v1/decisions/{story['decision_id']}/evidence")
    assert response.status_code == 200, response.content
    return response.json()


def _write(tmp_path: Path, name: str, value: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(value))
    return str(path)


def _published_keys(tmp_path: Path) -> str:
    return _write(tmp_path, "keys.json", Client().get("/.well-known/tracemem/receipt-keys").json())


def test_a_pack_without_keys_is_unverified_not_ok(
    api: AgentClient, agent_and_key: tuple[Agent, str], tmp_path: Path
) -> None:
    pack = _pack(api, agent_and_key[0])

    result = run_cli(_write(tmp_path, "pack.json", pack))

    assert result.returncode == 3, result.stdout
    assert result.stdout.startswith("UNVERIFIED: the pack is self-consistent (receipt for decision ")
    assert result.stdout.rstrip().endswith(
        "pass --keys with the server's published keys (/.well-known/tracemem/receipt-keys) to know who signed it"
    )
    assert "OK:" not in result.stdout


def test_a_pack_signed_by_a_forger_with_their_own_embedded_key_never_verifies(
    api: AgentClient, agent_and_key: tuple[Agent, str], tmp_path: Path
) -> None:
    pack = _pack(api, agent_and_key[0])
    forger = Ed25519PrivateKey.from_private_bytes(FORGER_SEED)
    public_raw = raw_public_key(forger.public_key())
    forged_key_id = key_id_for(public_raw)
    pack["receipt"]["signature"] = sign_receipt_data(forger, pack["receipt"]["receipt_data"])
    pack["receipt"]["key_id"] = forged_key_id
    pack["keys"] = [
        {"key_id": forged_key_id, "algorithm": "ed25519", "public_key": b64url_encode(public_raw)}
    ]
    path = _write(tmp_path, "forged.json", pack)

    without_keys = run_cli(path)
    with_keys = run_cli(path, "--keys", _published_keys(tmp_path))

    assert without_keys.returncode == 3
    assert without_keys.stdout.startswith("UNVERIFIED: ")
    assert with_keys.returncode == 1
    assert with_keys.stdout.strip() == (
        f"FAIL: key {forged_key_id} is not among the published keys; fetch /.well-known/tracemem/receipt-keys"
    )


def test_a_tampered_pack_without_keys_still_fails(
    api: AgentClient, agent_and_key: tuple[Agent, str], tmp_path: Path
) -> None:
    pack = _pack(api, agent_and_key[0])
    pack["receipt"]["receipt_data"]["status"] = "aborted"
    pack["receipt"]["status"] = "aborted"

    result = run_cli(_write(tmp_path, "pack.json", pack))

    assert result.returncode == 1
    assert result.stdout.startswith("FAIL: signature does not verify with key ")


def test_a_pack_with_the_published_keys_is_ok(
    api: AgentClient, agent_and_key: tuple[Agent, str], tmp_path: Path
) -> None:
    pack = _pack(api, agent_and_key[0])

    result = run_cli(_write(tmp_path, "pack.json", pack), "--keys", _published_keys(tmp_path))

    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith(
        f"OK: receipt for decision {pack['decision']['decision_id']} (committed, "
    )


def _verify(tmp_path: Path, pack: dict[str, Any]) -> Any:
    return run_cli(_write(tmp_path, "pack.json", pack), "--keys", _published_keys(tmp_path))


def test_an_intact_pack_says_its_sections_match(
    api: AgentClient, agent_and_key: tuple[Agent, str], tmp_path: Path
) -> None:
    result = _verify(tmp_path, _pack(api, agent_and_key[0]))

    assert result.returncode == 0, result.stdout
    assert result.stdout.rstrip().endswith(
        "; the pack's decision, approvals and policies match the signed receipt and trace"
    )


def test_a_pack_whose_decision_section_was_edited_fails_naming_the_section(
    api: AgentClient, agent_and_key: tuple[Agent, str], tmp_path: Path
) -> None:
    pack = _pack(api, agent_and_key[0])
    pack["decision"]["intent"] = "code.refactor.review"

    result = _verify(tmp_path, pack)

    assert result.returncode == 1
    assert result.stdout.strip() == (
        "FAIL: pack section decision: intent 'code.refactor.review' differs from the signed receipt_data "
        "intent 'code.refactor.execute'"
    )


def test_a_pack_with_an_invented_vote_fails_naming_the_section(
    api: AgentClient, agent_and_key: tuple[Agent, str], tmp_path: Path
) -> None:
    pack = _pack(api, agent_and_key[0])
    [approval] = pack["approvals"]
    invented = {
        **approval["votes"][0],
        "event_id": "evt_01JINVENTEDVOTE0000000000",
        "voter": {"id": "user_99"},
    }
    approval["votes"].append(invented)

    result = _verify(tmp_path, pack)

    assert result.returncode == 1
    assert result.stdout.strip() == (
        f"FAIL: pack section approvals: votes of approval {approval['approval_id']} names event "
        "'evt_01JINVENTEDVOTE0000000000', which is not in the signed trace"
    )


def test_a_pack_with_a_rewritten_or_hidden_vote_fails(
    api: AgentClient, agent_and_key: tuple[Agent, str], tmp_path: Path
) -> None:
    pack = _pack(api, agent_and_key[0])
    [approval] = pack["approvals"]
    [vote] = approval["votes"]
    vote["rationale"] = "I never looked"

    rewritten = _verify(tmp_path, pack)

    assert rewritten.returncode == 1
    assert rewritten.stdout.strip() == (
        f"FAIL: pack section approvals: votes of approval {approval['approval_id']} (event #{vote['seq']}) "
        "differs from the signed approval_vote event"
    )
    approval["votes"] = []
    hidden = _verify(tmp_path, pack)
    assert hidden.returncode == 1
    assert hidden.stdout.strip() == (
        f"FAIL: pack section approvals: leaves out the signed approval_vote event #{vote['seq']}"
    )


def test_a_pack_with_another_policy_version_or_definition_fails(
    api: AgentClient, agent_and_key: tuple[Agent, str], tmp_path: Path
) -> None:
    pack = _pack(api, agent_and_key[0])
    [policy] = pack["policies"]
    evaluation_seq = policy["evaluations"][0]["seq"]
    original_hash = policy["policy_hash"]
    policy["policy_hash"] = "0" * 64

    other_hash = _verify(tmp_path, pack)

    assert other_hash.returncode == 1
    assert other_hash.stdout.strip() == (
        "FAIL: pack section policies: policy code_change_policy_v1 v1 (hash 000000000000…) is not what the "
        f"signed evaluate event #{evaluation_seq} recorded"
    )
    policy["policy_hash"] = original_hash
    policy["definition"]["content"]["default_outcome"] = "deny"
    other_definition = _verify(tmp_path, pack)
    assert other_definition.returncode == 1
    assert other_definition.stdout.strip() == (
        "FAIL: pack section policies: the definition of policy code_change_policy_v1 v1 does not hash to the "
        "policy_hash the signed trace recorded"
    )
