"""Fault injection for the drills: a Redis of our own, TraceMem's worker and beat as operators run
them (scripts/worker.sh, scripts/beat.sh), receivers that misbehave, and PostgreSQL cuts confined to
the test database.

Everything here starts its own processes and stops only those (by the pid it started); PostgreSQL
cuts terminate backends of the test database only, never of another database on the server.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings as django_settings
from django.db import connection, connections

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 0.05) -> float:
    """Poll ``check`` until it is true; returns the monotonic time it first was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return time.monotonic()
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def within(seconds: float, call: Callable[[], Any]) -> tuple[Any, float]:
    """``call()``'s result and how long it took; fails (instead of hanging the suite) past
    ``seconds``. ``call`` runs in a thread of its own, with its own database connection."""
    outcome: list[Any] = []
    started = time.monotonic()

    def run() -> None:
        try:
            outcome.append(call())
        finally:
            connections.close_all()  # this thread's own database connection

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert outcome, f"still waiting after {seconds} s"
    return outcome[0], time.monotonic() - started


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class RedisServer:
    """A redis-server of this test's own, on its own port, that the test may stop and restart."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: port_open(self.port), 10, f"redis-server on port {self.port}")
        return self

    def pause(self) -> None:
        """Hang it (SIGSTOP): connections are still accepted, nothing is ever answered — what a
        frozen, overloaded or half-failed-over Redis looks like to its clients."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused server must be able to exit
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def use_broker(url: str) -> None:
    """Make this process publish Celery tasks to ``url`` (Celery caches its connection pools;
    dropping them makes the next publish connect there), forgetting any outage of the old one."""
    from tracemem_core import shared_cache
    from tracemem_site.celery import app

    app.conf.broker_url = url
    app._pool = None
    app.amqp._producer_pool = None
    shared_cache.broker.reset()


def use_cache(settings: Any, url: str) -> None:
    """Point the shared cache (the rate limit's store) at the Redis at ``url``, with the socket
    timeouts the shipped settings give it. ``settings`` is pytest-django's fixture."""
    options = settings.CACHES["default"].get("OPTIONS", {})
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "OPTIONS": options,
        }
    }


def database_url() -> str:
    """The URL of the database the tests run on (pytest-django's test database)."""
    db = django_settings.DATABASES["default"]
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _admin_connection() -> psycopg.Connection[Any]:
    """A connection to the ``postgres`` maintenance database, to act on the test database from
    outside: as the owner (a superuser here), since the app role the suite runs as may not."""
    db = django_settings.MIGRATION_DATABASE
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"],
        user=db["USER"],
        password=db.get("PASSWORD") or None,
        dbname="postgres",
        autocommit=True,
    )


def terminate_backends(*, except_pid: int | None = None) -> int:
    """Cut every connection to the test database (and only to it); returns how many were cut."""
    name = django_settings.DATABASES["default"]["NAME"]
    with _admin_connection() as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid() AND pid IS DISTINCT FROM %s",
            (name, except_pid),
        ).fetchall()
    return len(rows)


def terminate_backend(pid: int) -> None:
    """Cut one connection, after checking it belongs to the test database."""
    name = django_settings.DATABASES["default"]["NAME"]
    with _admin_connection() as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = %s AND datname = %s",
            (pid, name),
        )


def wait_backend_gone(pid: int, timeout: float = 10.0) -> None:
    """Until the terminated backend has exited (written its FATAL message and closed its socket):
    ``pg_terminate_backend`` returns as soon as the signal is sent."""
    deadline = time.monotonic() + timeout
    with _admin_connection() as admin:
        while admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
            if time.monotonic() > deadline:
                raise AssertionError(f"backend {pid} still there {timeout} s after pg_terminate_backend")
            time.sleep(0.01)


class DatabaseOutage:
    """The test database refuses new connections and every open one is cut, until ``end()``."""

    def __init__(self) -> None:
        self.name = django_settings.DATABASES["default"]["NAME"]

    def begin(self) -> None:
        with _admin_connection() as admin:
            admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS false')
        terminate_backends()
        connection.close()

    def end(self) -> None:
        with _admin_connection() as admin:
            admin.execute(f'ALTER DATABASE "{self.name}" ALLOW_CONNECTIONS true')


class Process:
    """One of TraceMem's entry points (scripts/*.sh) run as an operator would, output to a log file."""

    def __init__(self, script: str, log: Path, env: dict[str, str], args: list[str] | None = None) -> None:
        self.script = script
        self.log = log
        self.env = env
        self.args = args or []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, ready: str, count: int = 1, timeout: float = 60) -> Process:
        self.log.write_text("")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                ["bash", str(ROOT / "scripts" / self.script), *self.args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill() reaches its children
            )
        wait_for(lambda: self.text().count(ready) >= count, timeout, f"{self.script} to be ready", every=0.2)
        return self

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the whole process group this object started (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


def process_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment a worker or beat needs to share this test's database and Redis."""
    return {
        **os.environ,
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "DB_CONN_MAX_AGE": "0",
        "TRACEMEM_DELIVERY_BACKOFF_MS": "300",
        "TRACEMEM_DELIVERY_LEASE_MS": "4000",
        **extra,
    }


class HeldLock:
    """A row lock held by another PostgreSQL session (as a concurrent transaction would hold it)."""

    def __init__(self, sql: str, params: tuple[Any, ...]) -> None:
        self.sql, self.params = sql, params
        self.conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> HeldLock:
        self.conn = psycopg.connect(database_url())
        self.conn.execute(self.sql, self.params)  # psycopg opens a transaction and keeps it
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.conn is not None
        self.conn.rollback()
        self.conn.close()


class Receiver:
    """A real webhook receiver on its own port; the path picks its behaviour:

    ``/ok`` answers 200 (``/slow`` too, after 2 s or ``release()``), ``/fail`` 500, ``/close`` drops the connection
    without answering, ``/hang`` holds the request without answering until ``release()`` (or 60 s),
    ``/drip`` starts a 200 answer and then sends one more header byte every second, for up to 60 s
    (so no single read ever waits long). Every request is recorded as ``(path, webhook-id, monotonic arrival,
    answered status)``; ``hung_up[webhook-id]`` is when the sender gave up on a drip.
    """

    def __init__(self) -> None:
        import http.server

        receiver = self
        self.hits: list[tuple[str, str, float, int | None]] = []
        self.hung_up: dict[str, float] = {}
        self._lock = threading.Lock()
        self._release = threading.Event()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                arrived = time.monotonic()
                self.rfile.read(int(self.headers.get("content-length") or 0))
                path = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
                status: int | None = {"ok": 200, "slow": 200, "fail": 500}.get(path)
                with receiver._lock:
                    receiver.hits.append((path, self.headers.get("webhook-id", ""), arrived, status))
                if path == "hang":
                    receiver._release.wait(60)
                    return
                if path == "drip":
                    self._drip(arrived)
                    return
                if path == "slow":
                    receiver._release.wait(2)
                if status is None:  # /close: no answer at all
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def _drip(self, arrived: float) -> None:
                try:
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nx-drip: ")
                    while time.monotonic() - arrived < 60 and not receiver._release.is_set():
                        self.wfile.write(b"a")
                        self.wfile.flush()
                        # A closed connection shows as a write error, or as readable (EOF).
                        if select.select([self.connection], [], [], 1.0)[0]:
                            break
                except OSError:
                    pass
                with receiver._lock:
                    receiver.hung_up[self.headers.get("webhook-id", "")] = time.monotonic()
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, mode: str) -> str:
        return f"http://127.0.0.1:{self.port}/{mode}"

    def of(self, mode: str) -> list[tuple[str, str, float, int | None]]:
        with self._lock:
            return [h for h in self.hits if h[0] == mode]

    def arrival(self, webhook_id: str) -> float | None:
        with self._lock:
            return next((h[2] for h in self.hits if h[1] == webhook_id and h[3] == 200), None)

    def successes(self) -> list[str]:
        """webhook-ids answered 2xx, one entry per successful delivery of each."""
        with self._lock:
            return [h[1] for h in self.hits if h[3] == 200]

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def once_after(monkeypatch: Any, owner: Any, name: str) -> Callable[[Callable[[], None]], None]:
    """An ``arm(action)`` that runs ``action`` once, right after ``owner.name`` returns outside any
    transaction (between an unlocked read and its compare-and-swap insert), in a thread of its own with
    its own connection, as another request would (``within``)."""

    def arm(action: Callable[[], None]) -> None:
        original = getattr(owner, name)
        pending = [action]

        def then(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if pending and not connection.in_atomic_block:
                within(10, pending.pop())
            return result

        monkeypatch.setattr(owner, name, then)

    return arm
