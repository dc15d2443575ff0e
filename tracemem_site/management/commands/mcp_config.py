"""``manage.py mcp_config --client codex|claude|cursor|vscode|chatgpt|codex-oauth [--url URL] [--key KEY]``.

``chatgpt`` and ``codex-oauth`` connect to the OAuth door (``<public URL>/oauth/mcp``, docs/oauth.md)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from tracemem_site.client_configs import CLIENTS, OAUTH_CLIENTS, client_config, default_url, render_text


class Command(BaseCommand):
    help = "Print a ready-to-paste MCP client configuration for TraceMem."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--client", required=True, choices=CLIENTS + OAUTH_CLIENTS)
        parser.add_argument(
            "--url",
            default=None,
            help=f"the MCP endpoint (default {default_url()}; for chatgpt and codex-oauth {default_url('chatgpt')})",
        )
        parser.add_argument("--key", default=None, help="fill the export line with this agent key")

    def handle(self, *args: Any, **options: Any) -> None:
        snippets = client_config(options["client"], options["url"], key=options["key"])
        self.stdout.write(render_text(snippets), ending="")
