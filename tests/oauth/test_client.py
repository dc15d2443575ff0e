"""The OAuth door end to end, as ChatGPT or Codex would use it: the official MCP Python client's OAuth
support (``mcp.client.auth.OAuthClientProvider``) against ``/oauth/mcp`` on a live server, once
registering itself (DCR) and once identified by a client ID metadata document served over https from
a loopback address; the sign-in and the consent clicked in Chromium (Playwright); then tools/list (every
tool of the key door), capabilities_get and a decision whose trace names the agent bound to that person and client."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trustme
from django.contrib.auth.models import User
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider, TokenStorage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

from agents.models import Agent
from oauth.models import OAuthConnection
from tests.conftest import require_service
from tests.mcp_door.test_official_client import SPEC_TOOLS
from tests.oauth_helpers import point_at

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("TRACEMEM_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run", "--disable-sync"]
PASSWORD = "correct horse battery staple"
CALLBACK = "http://127.0.0.1:47219/callback"


class MemoryStorage(TokenStorage):
    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


@pytest.fixture(autouse=True)
def oauth_site(settings: Any, live_server: Any) -> None:
    require_service("Chromium", shutil.which(CHROMIUM) is not None, "apt-get install -y chromium")
    point_at(settings, live_server.url)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    settings.TRACEMEM_OAUTH_REGISTRATION_RATE = "off"


@pytest.fixture
def alice(transactional_db: Any) -> User:
    return User.objects.create_user("alice", password=PASSWORD)


async def _connect_and_work(
    live_server: Any, *, client_name: str, client_metadata_url: str | None, shots: Path
) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    server_url = f"{live_server.url}/oauth/mcp"
    seen: dict[str, Any] = {}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page()
        page.set_default_timeout(15_000)
        callback: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        async def on_callback(route: Any) -> None:
            if not callback.done():
                callback.set_result(route.request.url)
            await route.fulfill(status=200, content_type="text/plain", body="connected")

        await page.route(f"{CALLBACK}*", on_callback)

        async def redirect_handler(authorization_url: str) -> None:
            seen["authorization_url"] = authorization_url
            await page.goto(authorization_url)
            await page.fill("#id_username", "alice")
            await page.fill("#id_password", PASSWORD)
            await page.click("button:has-text('Sign in')")
            await page.wait_for_selector("#allow")
            seen["consent_text"] = await page.inner_text("main") if await page.query_selector("main") else ""
            seen["client_shown"] = await page.inner_text("#client-name")
            seen["agent_offered"] = await page.inner_text("#agent-choice option[selected]")
            await page.screenshot(path=str(shots / f"oauth-consent-{client_name.split()[0].lower()}.png"))
            await page.click("#allow")

        async def callback_handler() -> tuple[str, str | None]:
            url = await asyncio.wait_for(callback, 20)
            seen["callback_url"] = url
            query = parse_qs(urlsplit(url).query)
            return query["code"][0], query.get("state", [None])[0]

        provider = OAuthClientProvider(
            server_url=server_url,
            client_metadata=OAuthClientMetadata(
                client_name=client_name,
                redirect_uris=[AnyUrl(CALLBACK)],
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=MemoryStorage(),
            redirect_handler=redirect_handler,
            callback_handler=callback_handler,
            client_metadata_url=client_metadata_url,
        )
        async with httpx.AsyncClient(auth=provider, timeout=httpx.Timeout(30.0)) as http:
            async with streamable_http_client(server_url, http_client=http) as (read, write, _):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    seen["tools"] = sorted(t.name for t in (await session.list_tools()).tools)
                    capabilities = await session.call_tool("capabilities_get", {})
                    seen["capabilities"] = capabilities.structuredContent
                    created = await session.call_tool(
                        "decision_create", {"intent": "code.refactor.execute", "automation_mode": "propose"}
                    )
                    assert not created.isError, created.content
                    decision_id = created.structuredContent["decision_id"]
                    trace = await session.call_tool("decision_trace", {"decision_id": decision_id})
                    seen["trace"] = trace.structuredContent
        seen["client_id"] = provider.context.client_info.client_id if provider.context.client_info else None
        await browser.close()
    return seen


@pytest.fixture
def shots(settings: Any) -> Path:
    target = Path(settings.VAR_DIR) / "screenshots"
    target.mkdir(parents=True, exist_ok=True)
    return target


def _assert_bound_and_named(seen: dict[str, Any], alice: User, client_name: str, live_server: Any) -> Agent:
    # Every tool of docs/contract/tools.md (15 in the first release, decision_wait since docs/contract/interfaces.md), as on the key door.
    assert set(seen["tools"]) == SPEC_TOOLS and len(seen["tools"]) == len(SPEC_TOOLS)
    connection = OAuthConnection.objects.select_related("agent", "application").get(user=alice)
    agent = connection.agent
    assert agent.name == f"{client_name} (alice)" and agent.owner == alice
    assert connection.application.client_id == seen["client_id"]
    assert (seen["capabilities"]["agent_id"], seen["capabilities"]["name"]) == (agent.agent_id, agent.name)
    actors = {json.dumps(event["actor"], sort_keys=True) for event in seen["trace"]["events"]}
    assert actors == {json.dumps({"kind": "agent", "id": agent.agent_id, "name": agent.name}, sort_keys=True)}
    assert seen["client_shown"] == client_name
    assert seen["agent_offered"] == f"A new agent: {client_name} (alice)"
    query = parse_qs(urlsplit(seen["callback_url"]).query)
    assert query["iss"] == [f"{live_server.url}/oauth"]
    authorize = parse_qs(urlsplit(seen["authorization_url"]).query)
    assert authorize["code_challenge_method"] == ["S256"]
    assert authorize["resource"] == [f"{live_server.url}/oauth/mcp"]
    return agent


def test_the_official_mcp_client_registers_itself_signs_in_consents_and_works_as_the_bound_agent(
    live_server: Any, alice: User, shots: Path
) -> None:
    seen = asyncio.run(
        _connect_and_work(live_server, client_name="DCR test client", client_metadata_url=None, shots=shots)
    )
    _assert_bound_and_named(seen, alice, "DCR test client", live_server)
    assert OAuthConnection.objects.get(user=alice).application.registration_source == "dcr"


@pytest.fixture
def cimd_server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """An https server on loopback holding a client ID metadata document, trusted through
    SSL_CERT_FILE (how an operator points TraceMem at a private CA)."""
    from pytest_httpserver import HTTPServer

    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("localhost").configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    yield server
    server.clear()
    server.stop()


def test_the_official_mcp_client_identified_by_a_metadata_document_on_loopback(
    live_server: Any, alice: User, shots: Path, cimd_server: Any
) -> None:
    url = f"https://localhost:{cimd_server.port}/oauth/client.json"
    cimd_server.expect_request("/oauth/client.json").respond_with_json(
        {
            "client_id": url,
            "client_name": "CIMD test client",
            "redirect_uris": [CALLBACK],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
    )
    seen = asyncio.run(
        _connect_and_work(live_server, client_name="CIMD test client", client_metadata_url=url, shots=shots)
    )
    assert seen["client_id"] == url
    _assert_bound_and_named(seen, alice, "CIMD test client", live_server)
    application = OAuthConnection.objects.get(user=alice).application
    assert application.registration_source == "cimd" and application.client_type == "public"
    assert any(request.path == "/oauth/client.json" for request, _ in cimd_server.log)
