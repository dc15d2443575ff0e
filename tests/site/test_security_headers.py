"""Issue 13.6: security headers and the docs page — a Content-Security-Policy without inline script,
HSTS and SSL redirect from the environment, /api/docs/ served from local static files, a favicon."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.staticfiles import finders
from django.test import Client

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]


def directives(response: Any) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    parsed: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            parsed[words[0]] = words[1:]
    return parsed


@pytest.fixture
def staff_client(db: Any) -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-123"))
    return client


@pytest.mark.parametrize("path", ["/login/", "/api/docs/", "/healthz"])
def test_every_response_carries_a_csp_that_forbids_inline_script(path: str) -> None:
    policy = directives(Client().get(path))
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no CDN
    assert policy["object-src"] == ["'none'"]
    assert policy["base-uri"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]


def test_pages_render_without_inline_script_or_handlers(staff_client: Client, make_agent: Any) -> None:
    agent, _ = make_agent("csp-agent")
    staff_client.post(f"/agents/{agent.agent_id}/keys/", {"name": "fresh"})  # the page with copy buttons
    for path in [
        "/",
        "/review/",
        "/decisions/",
        "/agents/",
        f"/agents/{agent.agent_id}/",
        "/policies/",
        "/products/",
        "/routes/",
        "/account/",
        "/account/two-factor/",
        "/admin/",
    ]:
        html = staff_client.get(path).content.decode()
        inline = [m for m in re.findall(r"<script\b[^>]*>", html) if "src=" not in m]
        assert inline == [], (path, inline)
        assert not re.search(r"\son[a-z]+\s*=", html), path
        assert "javascript:" not in html, path
        assert not re.search(r"<[a-z]+[^>]*\sstyle=", html), path  # style-src 'self' too


def test_templates_hold_no_inline_script() -> None:
    offenders = []
    for template in (ROOT / "templates").rglob("*.html"):
        if template.parts[-2] == "email":
            continue  # emails are not served under our CSP (and mail clients need inline styles)
        text = template.read_text()
        if re.search(r"<script(?![^>]*\ssrc=)[^>]*>", text) or re.search(r"\son[a-z]+\s*=", text):
            offenders.append(str(template.relative_to(ROOT)))
    assert offenders == []


def test_api_docs_come_from_local_static_files_not_a_cdn() -> None:
    page = Client().get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert not re.search(r"https?://(?!testserver)", re.sub(r'href="/api/schema/[^"]*"', "", html)), html
    assets = re.findall(r'(?:src|href)="(/static/[^"?]+)', html)
    assert any("swagger-ui" in a for a in assets), assets
    for asset in assets:
        assert finders.find(asset.removeprefix("/static/")) is not None, asset
    script = re.search(r'<script src="(/api/docs/\?script=[^"]*)"', html)
    assert script is not None, html  # the Swagger UI set-up is a script file, not an inline script
    set_up = Client().get(script.group(1).replace("&amp;", "&"))
    assert set_up.status_code == 200 and "SwaggerUIBundle" in set_up.content.decode()


def test_the_site_has_a_favicon() -> None:
    response = Client().get("/favicon.ico", follow=True)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("image/")
    assert b'rel="icon"' in Client().get("/login/").content


def _settings_under(env: dict[str, str]) -> dict[str, Any]:
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; print(json.dumps({"
        "'hsts': s.SECURE_HSTS_SECONDS, 'sub': s.SECURE_HSTS_INCLUDE_SUBDOMAINS, 'preload': s.SECURE_HSTS_PRELOAD,"
        "'redirect': s.SECURE_SSL_REDIRECT, 'exempt': s.SECURE_REDIRECT_EXEMPT, 'proxy': s.SECURE_PROXY_SSL_HEADER,"
        "'session': s.SESSION_COOKIE_SECURE, 'csrf': s.CSRF_COOKIE_SECURE}))"
    )
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_SECURE", "SESSION_COOKIE", "CSRF_COOKIE"))
    }
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**base, "DJANGO_SETTINGS_MODULE": "tracemem_site.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_hsts_and_ssl_redirect_are_read_from_the_environment() -> None:
    assert _settings_under({}) == {
        "hsts": 0,
        "sub": False,
        "preload": False,
        "redirect": False,
        "exempt": [r"^healthz$", r"^readyz$", r"^metrics$"],
        "proxy": None,
        "session": False,
        "csrf": False,
    }
    production = _settings_under(
        {
            "DJANGO_SECURE_HSTS_SECONDS": "31536000",
            "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
            "DJANGO_SECURE_HSTS_PRELOAD": "true",
            "DJANGO_SECURE_SSL_REDIRECT": "true",
            "DJANGO_SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
        }
    )
    assert production["hsts"] == 31536000 and production["sub"] and production["preload"]
    assert production["redirect"] and production["proxy"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert production["session"] and production["csrf"]  # secure cookies follow the HTTPS redirect


def test_a_bad_proxy_header_setting_fails_loudly() -> None:
    code = "import django; django.setup()"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tracemem_site.settings",
            "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Proto",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0 and "DJANGO_SECURE_PROXY_SSL_HEADER" in done.stderr


def test_with_ssl_redirect_plain_http_is_sent_to_https_but_health_checks_are_not(settings: Any) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    response = Client().get("/login/")
    assert response.status_code == 301 and response["Location"] == "https://testserver/login/"
    assert Client().get("/healthz").status_code == 200
    secure = Client().get("/login/", secure=True)
    assert secure.status_code == 200 and secure["Strict-Transport-Security"] == "max-age=3600"
