"""Health checks as docker-compose runs them (issue 18): the web probe does not depend on
DJANGO_ALLOWED_HOSTS, and the beat's probe goes red when beat stops ticking."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from tests.fault_helpers import ROOT, Process, RedisServer, process_env, wait_for


@pytest.mark.django_db
def test_healthz_answers_a_probe_whose_host_is_not_in_allowed_hosts(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["tracemem.example.com"]
    client = Client()
    probe = client.get("/healthz", HTTP_HOST="127.0.0.1:8000")
    assert probe.status_code == 200 and probe.json() == {"status": "ok"}
    assert probe["X-Request-ID"]
    # Only the liveness answer: every other page still refuses a host it does not serve.
    assert client.get("/readyz", HTTP_HOST="127.0.0.1:8000").status_code == 400
    assert client.get("/login/", HTTP_HOST="127.0.0.1:8000").status_code == 400


def _check(var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "heartbeat_check.py"), *args],
        env={
            "PATH": os.environ["PATH"],
            "TRACEMEM_VAR_DIR": str(var_dir),
            "TRACEMEM_APPROVALS_TICK_SECONDS": "1",
        },
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.mark.django_db(transaction=True)
def test_the_beat_healthcheck_is_green_while_beat_ticks_and_red_once_it_stops(
    tmp_path: Path, redis: RedisServer
) -> None:
    assert _check(tmp_path, "beat").returncode == 1  # never ticked
    env = process_env(redis.url, TRACEMEM_VAR_DIR=str(tmp_path), TRACEMEM_APPROVALS_TICK_SECONDS="1")
    beat = Process("beat.sh", tmp_path / "beat.log", env).start(ready="beat: Starting")
    try:
        wait_for(lambda: _check(tmp_path, "beat").returncode == 0, 20, "the beat heartbeat")
        first = (tmp_path / "heartbeat" / "beat").stat().st_mtime
        wait_for(lambda: (tmp_path / "heartbeat" / "beat").stat().st_mtime > first, 10, "a later heartbeat")
    finally:
        beat.stop()
    # Stopped: three ticks (1 s) and 30 s later the probe fails; --max-age shortens that here.
    time.sleep(1.5)
    stale = _check(tmp_path, "beat", "--max-age", "1")
    assert stale.returncode == 1 and "last heartbeat" in stale.stderr


@pytest.mark.django_db
def test_readyz_reports_how_long_ago_beat_and_the_tick_were_seen(settings: Any, tmp_path: Path) -> None:
    settings.VAR_DIR = tmp_path
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    from tracemem_core import heartbeat

    body = Client().get("/readyz").json()
    assert body["heartbeat_seconds_ago"] == {"beat": None, "tick": None}
    heartbeat.stamp("beat")

    from django.core.management import call_command

    call_command("tick", "--once")
    body = Client().get("/readyz").json()
    assert 0 <= body["heartbeat_seconds_ago"]["beat"] < 5
    assert 0 <= body["heartbeat_seconds_ago"]["tick"] < 5
