"""The process entry points of docs/contract/interfaces.md: scripts/serve.sh, scripts/worker.sh, scripts/beat.sh.

Each reads the environment, finds its program on PATH and runs in the foreground; the Dockerfile,
docker-compose and ``scripts/run.sh`` start TraceMem through them. (The worker and the beat are
exercised under faults in ``tests/site/test_drills.py``.)"""

from __future__ import annotations

import http.client
import os
import platform
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fault_helpers import ROOT, Process, free_port, process_env


def _serve_env(redis_url: str, port: int, var: Path) -> dict[str, str]:
    """scripts/serve.sh with one worker on ``port``, with serve.sh's own malloc setting."""
    env = process_env(
        redis_url,
        TRACEMEM_HOST="127.0.0.1",
        TRACEMEM_PORT=str(port),
        TRACEMEM_WEB_WORKERS="1",
        TRACEMEM_VAR_DIR=str(var),
    )
    env.pop("MALLOC_ARENA_MAX", None)
    return env


@pytest.fixture
def server(tmp_path: Path, db: Any, redis_url: str) -> Any:
    port = free_port()
    process = Process("serve.sh", tmp_path / "serve.log", _serve_env(redis_url, port, tmp_path))
    process.start(ready="Booting worker")
    yield port
    process.stop()


HEAP_MAX = 64 * 1024 * 1024  # glibc's HEAP_MAX_SIZE on 64-bit: what each thread arena reserves


def _malloc_thread_arenas(pid: int) -> int:
    """glibc's thread arenas in a process's memory map: each is a reservation of HEAP_MAX bytes at an
    address aligned to HEAP_MAX, anonymous, its used part read-write and the rest inaccessible (glibc's
    ``heap_info`` layout; the main arena is ``[heap]`` and not counted)."""
    regions = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        regions.append((start, end, fields[1], len(fields) > 5))  # a sixth field: a file or [heap], [stack]
    arenas = 0
    for (start, end, perms, named), after in zip(regions, [*regions[1:], None], strict=True):
        if named or perms != "rw-p" or start % HEAP_MAX:
            continue
        reserved = end - start if after is None or after[0] != end or after[2] != "---p" else after[1] - start
        arenas += reserved == HEAP_MAX
    return arenas


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="MALLOC_ARENA_MAX is glibc's")
def test_serve_keeps_a_worker_to_two_malloc_arenas_however_many_threads_allocate(
    tmp_path: Path, db: Any, redis_url: str
) -> None:
    """glibc gave each of a worker's pool threads its own malloc arena, each keeping the free memory
    of its busiest moment: ~30 MiB more per worker under the benchmark's load (docs/performance.md
    §21). serve.sh caps them at two (the main arena and one more) unless MALLOC_ARENA_MAX says otherwise."""
    port = free_port()
    env = _serve_env(redis_url, port, tmp_path)
    process = Process("serve.sh", tmp_path / "serve.log", env).start(ready="Booting worker")
    try:
        errors: list[BaseException] = []

        def client() -> None:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
                for _ in range(30):
                    assert _get(conn, "/healthz") == 200
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        time.sleep(1)  # the worker is booting: its first requests would only wait for it
        clients = [threading.Thread(target=client) for _ in range(16)]
        for t in clients:
            t.start()
        for t in clients:
            t.join()
        assert not errors, errors[0]
        assert process.proc is not None
        master = process.proc.pid  # serve.sh execs gunicorn
        (worker,) = (int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split())
        threads = len(os.listdir(f"/proc/{worker}/task"))
        assert threads >= 5, threads  # the event loop and at least four pool threads allocated
        assert _malloc_thread_arenas(worker) == 1, Path(f"/proc/{worker}/maps").read_text()
    finally:
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
