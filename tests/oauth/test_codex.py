"""Codex CLI's own OAuth login (`codex mcp login`) against the OAuth door, with the config that
``manage.py mcp_config --client codex-oauth`` prints: Codex discovers the metadata, registers itself,
the person signs in and consents in Chromium, and Codex stores a token that works on /oauth/mcp."""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User

from oauth.models import OAuthConnection
from tests.conftest import require_service
from tests.mcp_door.test_node_clients import CODEX
from tests.oauth_helpers import point_at
from tracemem_site.client_configs import client_config

# Playwright's sync API runs an event loop in this thread; the ORM calls of the test body are plain.
os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

pytestmark = [pytest.mark.node, pytest.mark.browser]

CHROMIUM = os.environ.get("TRACEMEM_CHROMIUM", "/usr/bin/chromium")
PASSWORD = "correct horse battery staple"


def _lines(stream: Any, into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)
    into.put("")


def test_codex_mcp_login_connects_through_the_oauth_door(
    live_server: Any, settings: Any, transactional_db: Any, tmp_path: Path
) -> None:
    require_service("node/npx", shutil.which("npx") is not None, "apt-get install nodejs npm")
    require_service("Chromium", shutil.which(CHROMIUM) is not None, "apt-get install -y chromium")
    point_at(settings, live_server.url)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    alice = User.objects.create_user("alice", password=PASSWORD)
    url = f"{live_server.url}/oauth/mcp"
    toml = next(s for s in client_config("codex-oauth") if s.language == "toml").content
    assert url in toml
    (tmp_path / "config.toml").write_text(toml)
    env = {**os.environ, "CODEX_HOME": str(tmp_path)}
    # Codex prefers a client ID metadata document (its own, on chatgpt.com, which this machine
    # cannot reach); dynamic registration is the same login offline.
    login = subprocess.Popen(
        [
            "npx",
            "-y",
            CODEX,
            "mcp",
            "login",
            "tracemem",
            "--no-browser",
            "--oauth-client-registration",
            "dcr",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    output: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(login.stdout, output), daemon=True).start()
    said: list[str] = []
    try:
        authorize = ""
        while not authorize:
            line = output.get(timeout=300)
            assert line, "codex exited before printing the authorization URL:\n" + "".join(said)
            said.append(line)
            if line.startswith(f"{live_server.url}/oauth/authorize/"):
                authorize = line.strip()

        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
            page = browser.new_page()
            page.set_default_timeout(15_000)
            page.goto(authorize)
            page.fill("#id_username", "alice")
            page.fill("#id_password", PASSWORD)
            page.click("button:has-text('Sign in')")
            page.click("#allow")
            # The consent redirects to Codex's loopback listener, which takes the code itself.
            page.wait_for_url(re.compile(r"^http://127\.0\.0\.1:\d+/callback\?code="))
            callback = page.url
            browser.close()
        try:
            login.wait(timeout=30)
        except subprocess.TimeoutExpired:  # no listener answered: paste the URL, as Codex offers
            assert login.stdin is not None
            login.stdin.write(callback + "\n")
            login.stdin.flush()
        assert login.wait(timeout=120) == 0, "".join(said) + "".join(iter(lambda: output.get(timeout=5), ""))
    finally:
        if login.poll() is None:
            login.kill()

    connection = OAuthConnection.objects.select_related("agent", "application").get(user=alice)
    assert connection.agent.owner == alice
    assert (
        connection.agent.name
        == f"{connection.application.name or connection.application.client_id}"[:60] + " (alice)"
    )
    listed = subprocess.run(
        ["npx", "-y", CODEX, "mcp", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    [server] = json.loads(listed.stdout)
    assert server["transport"]["url"] == url
    assert server["auth_status"] == "o_auth", server
    # The token Codex stored (CODEX_HOME/.credentials.json without a keyring) works on the OAuth door
    # as the bound agent.
    [stored] = json.loads((tmp_path / ".credentials.json").read_text()).values()
    assert stored["server_url"] == url and stored["client_id"] == connection.application.client_id
    answer = httpx.post(
        url,
        json={
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "capabilities_get", "arguments": {}},
        },
        headers={
            "Authorization": f"Bearer {stored['access_token']}",
            "Accept": "application/json, text/event-stream",
        },
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.json()["result"]["structuredContent"]["agent_id"] == connection.agent.agent_id
