"""Structured logs with request ids (issue 18), from the production web server as operators run it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.fault_helpers import Process, free_port, process_env


def _get(port: int, path: str, request_id: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"X-Request-ID": request_id})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, headers, body = exc.code, exc.headers, exc.read()
    # Header names are case-insensitive (the server may send them in lower case).
    return status, {name.lower(): value for name, value in headers.items()}, body


@pytest.mark.django_db(transaction=True)
def test_json_logs_carry_the_request_id_the_caller_sent_and_the_answer_repeats_it(
    tmp_path: Path, redis_url: str
) -> None:
    port = free_port()
    env = process_env(
        redis_url,
        TRACEMEM_HOST="127.0.0.1",
        TRACEMEM_PORT=str(port),
        TRACEMEM_WEB_WORKERS="1",
        TRACEMEM_METRICS_DIR=str(tmp_path / "metrics"),
        TRACEMEM_LOG_FORMAT="json",
        TRACEMEM_METRICS_TOKEN="",
        TRACEMEM_METRICS_ALLOW="",
    )
    web = Process("serve.sh", tmp_path / "serve.log", env).start(ready="Booting worker")
    try:
        status, headers, _ = _get(port, "/metrics", "probe-42.a")  # refused: Django logs a warning
        assert status == 403 and headers["x-request-id"] == "probe-42.a"
        # A header that is not a plain token is replaced, never echoed into the logs.
        status, headers, _ = _get(port, "/healthz", "bad id\twith\ttabs")
        assert (
            status == 200
            and headers["x-request-id"] != "bad id\twith\ttabs"
            and len(headers["x-request-id"]) == 32
        )
    finally:
        web.stop()
    records = []
    for line in web.text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    forbidden = [r for r in records if r.get("message") == "Forbidden: /metrics"]
    assert forbidden, web.text()[-2000:]
    assert forbidden[0]["request_id"] == "probe-42.a"
    assert forbidden[0]["level"] == "WARNING" and forbidden[0]["logger"] == "django.request"
    assert {"time", "process"} <= set(forbidden[0])


@pytest.mark.django_db
def test_a_rest_error_body_names_the_request_id_of_its_answer(api: Any) -> None:
    refused = Client().get("/api/v1/capabilities", HTTP_X_REQUEST_ID="trace-me-1")
    assert refused.status_code == 401
    assert refused.json()["request_id"] == "trace-me-1" == refused["X-Request-ID"]
    fresh = api.get("/api/v1/decisions/dec_doesnotexist")
    assert fresh.status_code == 404
    assert fresh.json()["request_id"] == fresh["X-Request-ID"]


@pytest.mark.django_db
def test_an_unknown_api_path_answers_the_json_error_body_with_its_request_id() -> None:
    """Issue 18 (audit): a 404 under /api/v1/ that no view answered (a mistyped path) is the same
    JSON error body as every other API error, naming its request id; pages stay HTML."""
    missing = Client().get("/api/v1/decisionz", HTTP_X_REQUEST_ID="typo-1")
    assert missing.status_code == 404
    assert missing["Content-Type"].startswith("application/json")
    body = missing.json()
    assert body["error"]["code"] == "not_found" and "/api/v1/decisionz" in body["error"]["message"]
    assert body["request_id"] == "typo-1" == missing["X-Request-ID"]
    page = Client().get("/no-such-page/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")
