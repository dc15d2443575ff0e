"""MCP 2026-07-28 spoken natively (issue 16): the official ``mcp`` 2.x client, in its modern mode
(no ``initialize``), in ``auto`` mode (``server/discover`` first) and in its legacy mode, runs the
seed workflow; the pinned 1.x client (tests/mcp_door/test_official_client.py and the rest) still works; the
revision's header rules are enforced.

The 2.x client cannot share a virtualenv with the server's ``mcp`` 1.x, so it runs from its own,
``var/venv-mcp2``, which the first test creates from the package registry (``MCP2_VERSION``).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.client_helpers import AnswerWhenAsked, Seeded
from tests.conftest import require_service
from tests.mcp_helpers import run_mcp

pytest_plugins = ["tests.client_fixtures"]  # fixtures: seeded
pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
MCP2_VERSION = "2.3.0"
# The OpenAI Agents SDK of this version runs on the same mcp 2.x, so it shares the virtualenv.
AGENTS_SDK_VERSION = "0.24.0"
VENV = ROOT / "var" / "venv-mcp2"
AGENT = Path(__file__).parents[1] / "mcp2" / "seed_agent.py"
AGENTS_SDK = Path(__file__).parents[1] / "mcp2" / "agents_sdk.py"
MODERN = "2026-07-28"


def mcp2_python() -> Path:
    """The 2.x client's interpreter, creating its virtualenv once (under a lock: xdist workers)."""
    python = VENV / "bin" / "python"
    VENV.parent.mkdir(parents=True, exist_ok=True)
    with open(VENV.parent / "venv-mcp2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        check = [
            str(python),
            "-c",
            "import importlib.metadata as m; assert (m.version('mcp'), m.version('openai-agents')) == "
            f"('{MCP2_VERSION}', '{AGENTS_SDK_VERSION}')",
        ]
        if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
            return python
        made = subprocess.run(
            [sys.executable, "-m", "venv", "--clear", str(VENV)], capture_output=True, text=True
        )
        if made.returncode == 0:
            made = subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    f"mcp=={MCP2_VERSION}",
                    f"openai-agents=={AGENTS_SDK_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=600,
            )
        require_service(
            f"the mcp {MCP2_VERSION} client's virtualenv ({made.stderr[-500:]})",
            made.returncode == 0,
            f"{sys.executable} -m venv {VENV} && "
            f"{python} -m pip install mcp=={MCP2_VERSION} openai-agents=={AGENTS_SDK_VERSION}",
        )
        return python


@pytest.fixture(scope="module")
def python2() -> Path:
    return mcp2_python()


def run_seed_agent(python2: Path, seeded: Seeded, mode: str) -> dict[str, Any]:
    with AnswerWhenAsked(seeded, "approve", "refactor reviewed", delay=0.5):
        done = subprocess.run(
            [str(python2), str(AGENT), f"{seeded.url}/mcp", seeded.key, mode],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": ""},
        )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout))


def assert_seed_workflow(out: dict[str, Any]) -> None:
    assert {"capabilities_get", "decision_create", "decision_wait", "decision_close"} <= set(out["tools"])
    assert 'decision_create(intent="code.refactor.execute", automation_mode="propose"' in out["prompt"]
    assert "decision_wait(decision_id)" in out["prompt"]
    assert out["capabilities"]["server"]["protocol_versions"][0] == MODERN
    assert "decision_wait" in [step["tool"] for step in out["capabilities"]["workflow"]]
    assert out["created"]["status"] == "open"
    assert set(out["context"]) == {"event_id", "timestamp"}
    assert out["evaluated"]["outcome"] == "requires_exception"
    assert out["requested"]["status"] == "pending"
    waited = out["waited"]
    assert (waited["timed_out"], waited["approval_status"], waited["status"]) == (
        False,
        "approved",
        "approved",
    )
    assert out["closed"]["status"] == "committed"
    assert [e["type"] for e in out["trace"]["events"] if e["type"] != "delivery"] == [
        "created",
        "context",
        "evaluate",
        "approval_requested",
        "approval_vote",
        "approval_resolved",
        "close",
    ]
    assert out["refused"]["error"].startswith("[not_found] ")


def test_mcp2_client_in_modern_mode_runs_the_seed_workflow_without_initialize(
    python2: Path, seeded: Seeded
) -> None:
    out = run_seed_agent(python2, seeded, MODERN)
    assert out["protocol_version"] == MODERN
    methods = [s["method"] for s in out["sent"]]
    assert "initialize" not in methods and "server/discover" not in methods  # the version is pinned
    assert methods[:3] == ["tools/list", "prompts/get", "tools/call"]
    assert {(s["version_header"], s["method_header"]) for s in out["sent"]} == {
        (MODERN, method) for method in methods
    }
    assert_seed_workflow(out)


def test_mcp2_client_in_auto_mode_discovers_the_server_and_learns_the_protocol(
    python2: Path, seeded: Seeded
) -> None:
    out = run_seed_agent(python2, seeded, "auto")
    assert out["protocol_version"] == MODERN
    assert [s["method"] for s in out["sent"]][:2] == ["server/discover", "tools/list"]
    assert "initialize" not in [s["method"] for s in out["sent"]]
    assert "decision_wait" in out["instructions"] and "[policy_denied]" in out["instructions"]
    assert_seed_workflow(out)


def test_mcp2_client_in_legacy_mode_still_uses_the_handshake(python2: Path, seeded: Seeded) -> None:
    out = run_seed_agent(python2, seeded, "legacy")
    assert [s["method"] for s in out["sent"]][0] == "initialize"
    assert out["protocol_version"] == "2025-11-25"
    assert "decision_wait" in out["instructions"]
    assert_seed_workflow(out)


def test_openai_agents_sdk_streamable_http_with_the_header_lists_and_calls_tools(
    python2: Path, seeded: Seeded
) -> None:
    done = subprocess.run(
        [str(python2), str(AGENTS_SDK), f"{seeded.url}/mcp", seeded.key],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": ""},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout)
    assert {"capabilities_get", "decision_wait"} <= set(out["tools"])
    assert out["capabilities"]["name"] == "demo-agent"
    assert (out["waited"]["timed_out"], out["waited"]["status"]) == (False, "open")
    assert out["closed"]["status"] == "committed"
    assert out["refused"]["error"].startswith("[not_found] ")


# --- the revision's rules, on the wire ----------------------------------------------------------


def modern_post(
    seeded: Seeded,
    method: str,
    params: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    version: str = MODERN,
    request_id: int | None = 1,
) -> httpx.Response:
    envelope = {
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    }
    message: dict[str, Any] = {
        "jsonrpc": "2.0",
        "method": method,
        "params": {**(params or {}), "_meta": envelope},
    }
    if request_id is not None:
        message["id"] = request_id
    sent_headers = {
        "Authorization": f"Agent {seeded.key}",
        "MCP-Protocol-Version": version,
        "Mcp-Method": method,
        **({"Mcp-Name": str((params or {}).get("name"))} if method in ("tools/call", "prompts/get") else {}),
        **(headers or {}),
    }
    return httpx.post(f"{seeded.url}/mcp", json=message, headers=sent_headers, timeout=30)


def test_discover_answers_versions_capabilities_and_instructions(seeded: Seeded) -> None:
    answer = modern_post(seeded, "server/discover")
    assert answer.status_code == 200
    result = answer.json()["result"]
    assert result["supportedVersions"] == [MODERN] and result["resultType"] == "complete"
    assert {"tools", "prompts"} <= set(result["capabilities"])
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "tracemem"
    assert "decision_wait" in result["instructions"]


def test_header_rules_of_the_revision_are_enforced(seeded: Seeded) -> None:
    mismatched = modern_post(seeded, "tools/list", headers={"Mcp-Method": "tools/call"})
    assert mismatched.status_code == 400 and mismatched.json()["error"]["code"] == -32020
    wrong_name = modern_post(
        seeded,
        "tools/call",
        {"name": "capabilities_get", "arguments": {}},
        headers={"Mcp-Name": "decision_get"},
    )
    assert wrong_name.status_code == 400 and wrong_name.json()["error"]["code"] == -32020
    newer = modern_post(seeded, "tools/list", version="2099-01-01")
    assert newer.status_code == 400
    assert newer.json()["error"]["code"] == -32022
    assert newer.json()["error"]["data"]["supported"][0] == MODERN
    no_envelope = httpx.post(
        f"{seeded.url}/mcp",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
        headers={
            "Authorization": f"Agent {seeded.key}",
            "MCP-Protocol-Version": MODERN,
            "Mcp-Method": "tools/list",
        },
    )
    assert no_envelope.status_code == 400 and no_envelope.json()["error"]["code"] == -32602
    removed = modern_post(seeded, "ping")
    assert removed.status_code == 404 and removed.json()["error"]["code"] == -32601
    notified = modern_post(seeded, "notifications/initialized", request_id=None)
    assert notified.status_code == 202


def test_a_business_refusal_is_a_tool_result_and_authentication_still_applies(seeded: Seeded) -> None:
    refused = modern_post(
        seeded, "tools/call", {"name": "decision_get", "arguments": {"decision_id": "TMEM_X"}}
    )
    assert refused.status_code == 200
    result = refused.json()["result"]
    assert result["isError"] is True and result["content"][0]["text"].startswith("[not_found]")
    assert result["resultType"] == "complete"
    anonymous = modern_post(seeded, "tools/list", headers={"Authorization": "Agent tmem_nope"})
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "unauthenticated"


def test_pinned_1x_client_gets_the_prompt_and_instructions_that_teach_decision_wait(seeded: Seeded) -> None:
    async def work(session: Any) -> Any:
        prompts = await session.list_prompts()
        prompt = await session.get_prompt("governed_change", {"component": "billing", "change_type": "docs"})
        return prompts, prompt

    prompts, prompt = run_mcp(seeded.url, seeded.key, work)
    assert [p.name for p in prompts.prompts] == ["governed_change"]
    assert {a.name for a in prompts.prompts[0].arguments} >= {"component", "change_type", "policy_id"}
    text = prompt.messages[0].content.text
    assert 'metadata={"component": "billing", "change_type": "docs"}' in text
    assert "decision_wait(decision_id)" in text and 'policy_id="code_change_policy_v1"' in text
