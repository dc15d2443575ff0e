"""Real MCP clients people run: the MCP Inspector CLI and the Codex CLI (both need Node/npx)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_service
from tests.mcp_helpers import mcp_url
from tracemem_site.client_configs import client_config

INSPECTOR = "@modelcontextprotocol/inspector@2.12.0"
CODEX = "@openai/codex@0.169.0"
CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.197"

pytestmark = pytest.mark.node

# One npm cache for every npx run, whatever HOME a test gives the CLI (Claude Code reads its config
# from HOME): the packages are downloaded once per machine, not once per test.
NPM_CACHE = os.environ.get("npm_config_cache") or str(Path.home() / ".npm")


def _npx(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    require_service("node/npx", shutil.which("npx") is not None, "apt-get install nodejs npm")
    # The first run downloads the package into the npx cache, hence the generous timeout.
    return subprocess.run(
        ["npx", "-y", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "npm_config_cache": NPM_CACHE, **(env or {})},
        cwd=cwd,
    )


def _inspector(live_server: Any, key: str, *args: str) -> tuple[int, Any]:
    done = _npx(
        INSPECTOR, "--cli", mcp_url(live_server), "--transport", "http",
        "--header", f"Authorization: Agent {key}", *args,
    )  # fmt: skip
    out = done.stdout.strip()
    start = out.find("{")
    assert start >= 0, f"no JSON from the inspector: {done.stdout}\n{done.stderr}"
    return done.returncode, json.JSONDecoder().raw_decode(out[start:])[0]


def test_inspector_cli_lists_and_calls_tools(live_server: Any, make_agent: Any) -> None:
    agent, key = make_agent("inspector")
    rc, listed = _inspector(live_server, key, "--method", "tools/list")
    assert rc == 0
    names = {t["name"] for t in listed["tools"]}
    assert {"capabilities_get", "decision_create", "decision_close"} <= names
    create = next(t for t in listed["tools"] if t["name"] == "decision_create")
    assert create["inputSchema"]["properties"]["automation_mode"]["enum"] == [
        "propose",
        "approve",
        "override",
        "autonomous",
    ]

    rc, called = _inspector(live_server, key, "--method", "tools/call", "--tool-name", "capabilities_get")
    assert rc == 0
    assert called["isError"] is False
    assert called["structuredContent"]["agent_id"] == agent.agent_id
    assert json.loads(called["content"][0]["text"]) == called["structuredContent"]

    rc, created = _inspector(
        live_server, key, "--method", "tools/call", "--tool-name", "decision_create",
        "--tool-arg", "intent=code.refactor.execute", "--tool-arg", "automation_mode=autonomous",
    )  # fmt: skip
    assert rc == 0 and created["structuredContent"]["status"] == "open"

    rc, refused = _inspector(live_server, key, "--method", "tools/call", "--tool-name", "decision_get")
    assert rc != 0
    assert refused["content"][0]["text"] == "[invalid_argument] decision_id is required"


def test_codex_cli_accepts_the_generated_config(tmp_path: Path) -> None:
    url = "http://127.0.0.1:8000/mcp"
    toml = next(s for s in client_config("codex", url) if s.language == "toml").content
    (tmp_path / "config.toml").write_text(toml)
    assert tomllib.loads(toml) == {
        "mcp_servers": {"tracemem": {"url": url, "bearer_token_env_var": "TRACEMEM_API_KEY"}}
    }
    done = _npx(CODEX, "mcp", "list", "--json", env={"CODEX_HOME": str(tmp_path)}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    servers = json.loads(done.stdout)
    assert len(servers) == 1
    server = servers[0]
    assert (server["name"], server["enabled"]) == ("tracemem", True)
    assert server["transport"]["type"] == "streamable_http"
    assert server["transport"]["url"] == url
    assert server["transport"]["bearer_token_env_var"] == "TRACEMEM_API_KEY"
    assert server["auth_status"] == "bearer_token"


def _claude(home: Path, command: str, key: str) -> subprocess.CompletedProcess[str]:
    """Run a ``claude ...`` shell line the way a user pastes it (the shell expands the key)."""
    require_service("node/npx", shutil.which("npx") is not None, "apt-get install nodejs npm")
    assert command.startswith("claude ")
    line = f"npx -y {CLAUDE_CODE} " + command.removeprefix("claude ")
    return subprocess.run(
        ["bash", "-c", line],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HOME": str(home), "npm_config_cache": NPM_CACHE, "TRACEMEM_API_KEY": key},
        cwd=home,
    )


@pytest.mark.parametrize("valid_key", [True, False])
def test_claude_code_connects_with_the_printed_add_command(
    live_server: Any, make_agent: Any, tmp_path: Path, valid_key: bool
) -> None:
    _, key = make_agent()
    add = next(
        s
        for s in client_config("claude", mcp_url(live_server))
        if s.language == "shell" and "mcp add" in s.content
    )
    done = _claude(tmp_path, add.content, key if valid_key else "tmem_" + "x" * 40)
    assert done.returncode == 0, done.stderr
    listed = _claude(tmp_path, "claude mcp list", key)
    line = next(x for x in listed.stdout.splitlines() if x.startswith("tracemem: "))
    assert line.startswith(f"tracemem: {mcp_url(live_server)} (HTTP) - ")
    assert ("Connected" in line) is valid_key, line
