"""Ready-to-paste MCP client configurations (Codex, Claude Code, Cursor, VS Code; ChatGPT and Codex
through the OAuth door).

Plain functions so ``manage.py mcp_config``, the README and the admin's key-issuing page print
the same snippets. Every snippet reads the key from the ``TRACEMEM_API_KEY`` environment variable
(VS Code prompts for it and stores it as a secret). One exception, said in its title: the
``claude mcp add`` line is expanded by your shell, so Claude Code stores the key in its own user
config; the ``.mcp.json`` variant keeps only ``${TRACEMEM_API_KEY}``, which Claude Code expands
when it starts.
Clients send it as ``Authorization: Bearer <key>``, which TraceMem accepts like ``Agent <key>``.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from django.conf import settings

from oauth.conf import mcp_url as oauth_mcp_url

CLIENTS = ("codex", "claude", "cursor", "vscode")
# Clients that connect to the OAuth door (/oauth/mcp, docs/oauth.md) instead of sending a key.
OAUTH_CLIENTS = ("chatgpt", "codex-oauth")
KEY_ENV = "TRACEMEM_API_KEY"
SERVER = "tracemem"


@dataclass(frozen=True)
class Snippet:
    title: str
    filename: str | None  # where it goes; None for a shell command
    language: str  # toml | json | shell, for syntax highlighting
    content: str


def default_url(client: str | None = None) -> str:
    """The key door ``<public URL>/mcp``, or for an OAuth client the OAuth door ``<public URL>/oauth/mcp``."""
    if client in OAUTH_CLIENTS:
        return oauth_mcp_url()
    return f"{settings.TRACEMEM_PUBLIC_URL}/mcp"


def _chatgpt(url: str) -> list[Snippet]:
    https = url.startswith("https://")
    steps = [
        "ChatGPT on the web connects with OAuth only, from OpenAI's servers: TraceMem must be reachable at a",
        "public https URL (TRACEMEM_PUBLIC_URL)."
        + ("" if https else f" {url} is not https: ChatGPT will refuse it."),
        "1. ChatGPT > Settings > Apps & Connectors > Advanced settings: turn on Developer mode.",
        "2. Apps & Connectors > Create: name it TraceMem and paste the MCP server URL:",
        f"   {url}",
        "3. Authentication: OAuth. ChatGPT registers itself (client ID metadata document or dynamic",
        "   registration); leave client ID and secret empty. Tick 'I trust this application' and Create.",
        "4. Sign in to TraceMem when asked and choose the agent ChatGPT acts as (a new one is made for you).",
        "5. In a chat, pick Developer mode and enable TraceMem; ask it to call capabilities_get.",
    ]
    return [
        Snippet("ChatGPT (developer mode): MCP server URL", None, "text", url),
        Snippet("ChatGPT: steps", None, "text", "\n".join(steps) + "\n"),
    ]


def _codex_oauth(url: str) -> list[Snippet]:
    return [
        Snippet(
            "Codex with OAuth: ~/.codex/config.toml (no key: Codex signs in through the browser)",
            "~/.codex/config.toml",
            "toml",
            f"[mcp_servers.{SERVER}]\nurl = {_toml_string(url)}\n",
        ),
        Snippet(
            "Codex with OAuth: sign in and choose the agent (opens the browser). Codex identifies itself by "
            "its metadata document on chatgpt.com, which TraceMem fetches; if TraceMem cannot reach "
            "chatgpt.com, add --oauth-client-registration dcr",
            None,
            "shell",
            f"codex mcp login {SERVER}",
        ),
    ]


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def _export(key: str | None) -> Snippet:
    value = shlex.quote(key) if key else "tmem_...your agent key..."
    return Snippet("Export the agent key", None, "shell", f"export {KEY_ENV}={value}")


def client_config(client: str, url: str | None = None, *, key: str | None = None) -> list[Snippet]:
    """The snippets that connect ``client`` to TraceMem at ``url`` (default: the public URL + /mcp).

    ``key`` only fills in the ``export`` line (for the page that has just issued a key).
    """
    url = url or default_url(client)
    if client == "chatgpt":
        return _chatgpt(url)
    if client == "codex-oauth":
        return _codex_oauth(url)
    if client == "codex":
        return [
            _export(key),
            Snippet(
                "Codex: ~/.codex/config.toml",
                "~/.codex/config.toml",
                "toml",
                f"[mcp_servers.{SERVER}]\nurl = {_toml_string(url)}\nbearer_token_env_var = {_toml_string(KEY_ENV)}\n",
            ),
        ]
    if client == "claude":
        mcp_json = {
            "mcpServers": {
                SERVER: {"type": "http", "url": url, "headers": {"Authorization": f"Bearer ${{{KEY_ENV}}}"}}
            }
        }
        return [
            _export(key),
            Snippet(
                "Claude Code: add the server (your shell expands the key; Claude stores it in ~/.claude.json)",
                None,
                "shell",
                f'claude mcp add --transport http {SERVER} {shlex.quote(url)} --header "Authorization: Bearer ${{{KEY_ENV}}}"',
            ),
            Snippet("Claude Code: or commit .mcp.json in your project", ".mcp.json", "json", _json(mcp_json)),
        ]
    if client == "cursor":
        cursor_json = {
            "mcpServers": {SERVER: {"url": url, "headers": {"Authorization": f"Bearer ${{env:{KEY_ENV}}}"}}}
        }
        return [
            _export(key),
            Snippet("Cursor: .cursor/mcp.json", ".cursor/mcp.json", "json", _json(cursor_json)),
        ]
    if client == "vscode":
        vscode_json = {
            "inputs": [
                {
                    "type": "promptString",
                    "id": "tracemem-api-key",
                    "description": "TraceMem agent API key (tmem_...)",
                    "password": True,
                }
            ],
            "servers": {
                SERVER: {
                    "type": "http",
                    "url": url,
                    "headers": {"Authorization": "Bearer ${input:tracemem-api-key}"},
                }
            },
        }
        return [Snippet("VS Code: .vscode/mcp.json", ".vscode/mcp.json", "json", _json(vscode_json))]
    raise ValueError(f"unknown client {client!r}; choose one of {', '.join(CLIENTS + OAUTH_CLIENTS)}")


def all_client_configs(url: str | None = None, *, key: str | None = None) -> dict[str, list[Snippet]]:
    return {client: client_config(client, url, key=key) for client in CLIENTS}


def render_text(snippets: list[Snippet]) -> str:
    """Snippets as plain text for a terminal."""
    parts = []
    for snippet in snippets:
        parts.append(f"# {snippet.title}\n{snippet.content.rstrip()}\n")
    return "\n".join(parts)


def _json(value: object) -> str:
    return json.dumps(value, indent=2) + "\n"
