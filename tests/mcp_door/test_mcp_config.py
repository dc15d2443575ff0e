"""``manage.py mcp_config`` prints working client configurations."""

from __future__ import annotations

import json
import tomllib
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tracemem_site.client_configs import client_config

URL = "https://tracemem.example.com/mcp"


def _run(*args: str) -> str:
    out = StringIO()
    call_command("mcp_config", *args, stdout=out)
    return out.getvalue()


def _json_after(text: str, marker: str) -> dict:
    start = text.index("{", text.index(marker))
    return json.JSONDecoder().raw_decode(text[start:])[0]


def test_codex_snippet_uses_bearer_token_env_var_never_an_auth_block() -> None:
    text = _run("--client", "codex", "--url", URL)
    toml = text[text.index("[mcp_servers.tracemem]") :]
    assert tomllib.loads(toml) == {
        "mcp_servers": {"tracemem": {"url": URL, "bearer_token_env_var": "TRACEMEM_API_KEY"}}
    }
    assert "export TRACEMEM_API_KEY=" in text
    assert "auth" not in toml.replace("bearer_token_env_var", "")


def test_claude_snippet_has_the_add_command_and_mcp_json() -> None:
    text = _run("--client", "claude", "--url", URL)
    assert (
        f'claude mcp add --transport http tracemem {URL} --header "Authorization: Bearer ${{TRACEMEM_API_KEY}}"'
        in text
    )
    assert _json_after(text, ".mcp.json") == {
        "mcpServers": {
            "tracemem": {
                "type": "http",
                "url": URL,
                "headers": {"Authorization": "Bearer ${TRACEMEM_API_KEY}"},
            }
        }
    }


def test_cursor_snippet_reads_the_key_from_the_environment() -> None:
    text = _run("--client", "cursor", "--url", URL)
    assert _json_after(text, "mcp.json") == {
        "mcpServers": {
            "tracemem": {"url": URL, "headers": {"Authorization": "Bearer ${env:TRACEMEM_API_KEY}"}}
        }
    }


def test_vscode_snippet_prompts_for_the_key_as_a_password() -> None:
    config = _json_after(_run("--client", "vscode", "--url", URL), "mcp.json")
    assert config["inputs"] == [
        {
            "type": "promptString",
            "id": "tracemem-api-key",
            "description": "TraceMem agent API key (tmem_...)",
            "password": True,
        }
    ]
    assert config["servers"]["tracemem"] == {
        "type": "http",
        "url": URL,
        "headers": {"Authorization": "Bearer ${input:tracemem-api-key}"},
    }


def test_default_url_is_the_public_url(settings: object) -> None:
    settings.TRACEMEM_PUBLIC_URL = "https://tm.internal:8443"  # type: ignore[attr-defined]
    assert 'url = "https://tm.internal:8443/mcp"' in _run("--client", "codex")


def test_a_freshly_issued_key_fills_only_the_export_line() -> None:
    key = "tmem_" + "a" * 40
    snippets = client_config("codex", URL, key=key)
    assert snippets[0].content == f"export TRACEMEM_API_KEY={key}"
    assert key not in snippets[1].content


def test_unknown_client_is_refused() -> None:
    with pytest.raises(CommandError):
        _run("--client", "emacs")


# --- the OAuth door (issue 15) ------------------------------------------------------------------


def test_chatgpt_gets_the_oauth_mcp_url_and_the_developer_mode_steps(settings: object) -> None:
    settings.TRACEMEM_PUBLIC_URL = "https://tm.example.com"  # type: ignore[attr-defined]
    text = _run("--client", "chatgpt")
    assert "# ChatGPT (developer mode): MCP server URL\nhttps://tm.example.com/oauth/mcp\n" in text
    assert "Developer mode" in text and "Authentication: OAuth" in text
    assert "TRACEMEM_PUBLIC_URL" in text
    assert "is not https" not in text
    assert "TRACEMEM_API_KEY" not in text


def test_chatgpt_is_told_when_the_public_url_is_not_https(settings: object) -> None:
    settings.TRACEMEM_PUBLIC_URL = "http://127.0.0.1:8000"  # type: ignore[attr-defined]
    assert "http://127.0.0.1:8000/oauth/mcp is not https: ChatGPT will refuse it." in _run(
        "--client", "chatgpt"
    )


def test_codex_oauth_config_has_no_key_and_the_login_command(settings: object) -> None:
    settings.TRACEMEM_PUBLIC_URL = "https://tm.example.com"  # type: ignore[attr-defined]
    text = _run("--client", "codex-oauth")
    toml = text[text.index("[mcp_servers.tracemem]") : text.index("# Codex with OAuth: sign in")]
    assert tomllib.loads(toml) == {"mcp_servers": {"tracemem": {"url": "https://tm.example.com/oauth/mcp"}}}
    assert "codex mcp login tracemem" in text
    assert "TRACEMEM_API_KEY" not in text and "bearer_token_env_var" not in text


def test_the_agents_page_offers_both_oauth_configs(admin_client: Any, settings: object) -> None:
    settings.TRACEMEM_PUBLIC_URL = "https://tm.example.com"  # type: ignore[attr-defined]
    page = admin_client.get("/agents/").content.decode()
    assert "Connect ChatGPT or Codex with OAuth" in page
    assert page.count("https://tm.example.com/oauth/mcp") == 3  # ChatGPT's URL and steps, Codex's TOML
    assert "codex mcp login tracemem" in page
