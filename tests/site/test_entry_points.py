"""The process entry points of docs/contract/interfaces.md: scripts/serve.sh, scripts/worker.sh, scripts/beat.sh.

Each reads the environment, finds its program on PATH and runs in the foreground; the Dockerfile,
docker-compose and ``scripts/run.sh`` start TraceMem through them. (The worker and the beat are
exercised under faults in ``tests/site/test_drills.py``.)"""

from __future__ import annotations

import http.client
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fault_helpers import ROOT, Process, free_port, process_env


@pytest.fixture
def server(tmp_path: Path, db: Any, redis_url: str) -> Any:
    port = free_port()
    env = process_env(
        redis_url,
        TRACEMEM_HOST="127.0.0.1",
        TRACEMEM_PORT=str(port),
        TRACEMEM_WEB_WORKERS="1",
        TRACEMEM_VAR_DIR=str(tmp_path),
    )
    process = Process("serve.sh", tmp_path / "serve.log", env)
    process.start(ready="Booting worker")
    yield port
    process.stop()


def _venv_on_path() -> dict[str, str]:
    return {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}


def _get(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    return response.status


def test_serve_listens_where_the_environment_says_and_keeps_idle_connections_open(server: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server, timeout=10)
    deadline = time.monotonic() + 20
    while True:
        try:
            assert _get(conn, "/healthz") == 200
            break
        except (ConnectionError, OSError):
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    first_socket = conn.sock
    # Idle longer than gunicorn's default keep-alive (2 s): the connection must still be open.
    time.sleep(5)
    assert _get(conn, "/healthz") == 200
    assert conn.sock is first_socket  # reused, not reconnected
    conn.close()


def test_serve_keep_alive_outlasts_common_client_idle_timeouts(tmp_path: Path) -> None:
    env = _venv_on_path()
    printed = subprocess.run(
        ["bash", "scripts/serve.sh", "--print-config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    config = {
        name.strip(): value.strip()
        for name, _, value in (line.partition("=") for line in printed.stdout.splitlines())
        if value
    }
    assert int(config["keepalive"]) > 60  # nginx, AWS ALB and most client pools idle out at 60 s
    assert config["worker_class"] == "tracemem_site.front_worker.Worker"  # the asyncio front: docs/mcp.md


@pytest.mark.parametrize("script", ["serve.sh", "worker.sh", "beat.sh"])
def test_each_entry_point_says_so_when_its_program_is_not_on_path(script: str) -> None:
    done = subprocess.run(
        ["/bin/bash", f"scripts/{script}"],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 127
    assert "not on PATH" in done.stderr


def test_worker_refuses_an_unknown_worker_name() -> None:
    env = _venv_on_path()
    done = subprocess.run(
        ["bash", "scripts/worker.sh", "everything"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "usage" in done.stderr


def test_the_image_compose_and_the_quick_start_start_tracemem_through_the_entry_points() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert "exec scripts/serve.sh" in " ".join(services["web"]["command"])
    assert services["worker"]["command"] == ["scripts/worker.sh"]
    assert services["beat"]["command"] == ["scripts/beat.sh"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["scripts/serve.sh"]' in dockerfile and "TRACEMEM_HOST=0.0.0.0" in dockerfile
    run = (ROOT / "scripts" / "run.sh").read_text()
    assert "scripts/serve.sh" in run and "gunicorn" not in run.replace("scripts/serve.sh", "")


def test_the_front_runs_on_uvicorns_c_parser_and_event_loop() -> None:
    """h11 and asyncio's own loop in pure Python were most of the front's CPU per request
    (docs/performance.md): the worker must get httptools and uvloop, not fall back silently."""
    import uvicorn.config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from tracemem_site.front_worker import Worker

    config = uvicorn.config.Config("tracemem_site.front:application", **Worker.CONFIG_KWARGS)
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    factory = config.get_loop_factory()
    assert factory is not None and "uvloop" in factory.__module__
