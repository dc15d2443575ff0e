"""Web worker memory under sustained load, two server settings side by side (docs/performance.md
section 21).

``python -m bench.memory_soak [ROUNDS]`` starts ``scripts/serve.sh`` twice, each on its own copy
(``<name>_soak_a``, ``_soak_b``) of the template ``bench hotpath`` migrates (``<name>_hot_tmpl``) and
its own port: **A** with the
environment as it is (serve.sh's defaults) and **B** with ``SOAK_B`` added (default
``MALLOC_ARENA_MAX=<8 per core>``, glibc's own limit, i.e. serve.sh before it capped the arenas;
``SOAK_A`` adds to A the same way: ``NAME=value`` separated by spaces). Then it sends both the
requests of a ``bench hotpath`` round — 16 clients appending single events, then batches of 100,
then one client's creates, appends, MCP appends, evaluations and 828 KB trace reads of a 1,000-event
decision — in rounds of a fixed number of requests (``SOAK_K16`` single appends and ``SOAK_B16``
batches per client, ``SOAK_N`` of each one-client call), taking turns round by round so a busy
neighbour slows both alike. After each round it prints, per server: each worker's resident memory
(VmRSS), its peak during the round (VmHWM, reset at the round's start) and the workers' CPU time per
request (/proc), and at the end ``bench_hotpath.memory_verdict`` of each server's peaks.

Needs ``DATABASE_URL`` (PostgreSQL, a role that may create databases) and ``REDIS_URL`` as for
``bench hotpath``; ``SOAK_PORT`` (8781: A there, B on the next port).
"""

from __future__ import annotations

import functools
import http.client
import os
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench import bench_hotpath as hot
from bench.common import cpu_seconds, env_int

K16 = env_int("SOAK_K16", 60)
B16 = env_int("SOAK_B16", 8)
N = env_int("SOAK_N", 300)
PORT = env_int("SOAK_PORT", 8781)


class Server:
    """One serve.sh on its own database and port, with the agents and decisions of the load."""

    def __init__(
        self, name: str, port: int, base_env: dict[str, str], extra: dict[str, str], tmpl: str
    ) -> None:
        self.name, self.port = name, port
        base = base_env["DATABASE_URL"]
        db = f"{urlsplit(base).path.lstrip('/') or 'tracemem'}_soak_{name.lower()}"
        hot._admin_sql(
            base, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)', f'CREATE DATABASE "{db}" TEMPLATE "{tmpl}"'
        )
        self.var = Path(tempfile.mkdtemp(prefix=f"tracemem-soak-{name}-"))
        self.env = {
            **base_env,
            "DATABASE_URL": hot._db_url(base, db),
            "TRACEMEM_VAR_DIR": str(self.var),
            "TRACEMEM_PORT": str(port),
        }
        key = hot._manage(self.env, "create_agent", "bench-agent").strip().splitlines()[-1]
        (self.var / "policy.yaml").write_text(hot.POLICY_YAML)
        hot._manage(self.env, "apply_config", str(self.var / "policy.yaml"))
        self.key = key
        with (self.var / "serve.log").open("wb") as log:
            self.proc = subprocess.Popen(
                ["scripts/serve.sh"],
                cwd=hot.ROOT,
                env={**self.env, **extra},
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        print(f"{name}: serve.sh on port {port}, {' '.join(f'{k}={v}' for k, v in extra.items()) or 'as is'}")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"serve.sh did not come up:\n{(self.var / 'serve.log').read_text()[-3000:]}"
                )
            time.sleep(0.3)

    def prepare(self) -> None:
        self.agents = [hot.Agent(self.key, self.port) for _ in range(hot.CLIENTS)]
        create = {"intent": "bench.run.measure", "automation_mode": "autonomous"}
        self.own = [a.call("POST", "/api/v1/decisions", create, 201)["decision_id"] for a in self.agents]
        one = self.agents[0]
        solo = one.call("POST", "/api/v1/decisions", create, 201)["decision_id"]
        traced = one.call("POST", "/api/v1/decisions", create, 201)["decision_id"]
        for i in range(hot.TRACE_EVENTS - 1):
            one.call("POST", f"/api/v1/decisions/{traced}/context", {"context": hot.context_of(i)}, 201)
        context = {"context": {"step": "measuring", "n": 1}}
        evaluate = {"policy_id": "bench_cap_v1", "inputs": {"amount": 5}}
        self.one_client: list[Callable[[], Any]] = [
            lambda: one.call("POST", "/api/v1/decisions", create, 201),
            lambda: one.call("POST", f"/api/v1/decisions/{solo}/context", context, 201),
            lambda: one.mcp("decision_add_context", {"decision_id": solo, **context}),
            lambda: one.call("POST", f"/api/v1/decisions/{solo}/evaluate", evaluate),
            lambda: one.call(
                "GET", f"/api/v1/decisions/{traced}/trace?limit={hot.TRACE_EVENTS}", parse=False
            ),
        ]
        self.workers = hot.workers_of(self.proc.pid)
        self.peaks: list[list[int]] = []

    def round(self) -> str:
        hot.reset_worker_peaks(self.proc.pid)
        cpu = cpu_seconds(self.workers)
        single = {"context": {"step": "measuring", "n": 1}}
        batch = {"contexts": [{"step": "measuring", "n": i} for i in range(hot.BATCH)]}
        for body, count in ((single, K16), (batch, B16)):
            calls: list[Callable[[], Any]] = [
                functools.partial(a.call, "POST", f"/api/v1/decisions/{d}/context", body, 201)
                for a, d in zip(self.agents, self.own, strict=True)
            ]
            _together(calls, count)
        for call in self.one_client:
            for _ in range(N):
                call()
        requests = hot.CLIENTS * (K16 + B16) + len(self.one_client) * N
        per_request = (cpu_seconds(self.workers) - cpu) / requests * 1e6
        self.peaks.append(hot.worker_peak_kib(self.proc.pid))
        rss = hot._mib(hot.worker_rss_kib(self.proc.pid))
        return f"RSS {rss} MiB, peak {hot._mib(self.peaks[-1])} MiB, CPU {per_request:,.0f} µs/request"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _together(calls: list[Callable[[], Any]], count: int) -> None:
    """Each call ``count`` times in its own thread, all at once."""
    errors: list[BaseException] = []

    def loop(call: Callable[[], Any]) -> None:
        try:
            for _ in range(count):
                call()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(call,)) for call in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed; first: {errors[0]!r}")


def _settings(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in shlex.split(text))


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 12
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith(("postgres://", "postgresql://")):
        print(
            "memory_soak: needs DATABASE_URL=postgres://... (a role that may create databases)",
            file=sys.stderr,
        )
        return 2
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_DEBUG": "false",
        "TRACEMEM_HOST": "127.0.0.1",
        "TRACEMEM_AGENT_RATE_LIMIT": "1000000000/minute",
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
    }
    env.pop("MIGRATION_DATABASE_URL", None)
    tmpl = hot.migrated_template(base, env)
    glibc_default = f"MALLOC_ARENA_MAX={8 * (os.cpu_count() or 1)}"
    servers: list[Server] = []
    try:
        servers.append(Server("A", PORT, env, _settings(os.environ.get("SOAK_A", "")), tmpl))
        servers.append(Server("B", PORT + 1, env, _settings(os.environ.get("SOAK_B", glibc_default)), tmpl))
        for server in servers:
            server.wait_ready()
            server.prepare()
            print(f"{server.name}: before the load, RSS {hot._mib(hot.worker_rss_kib(server.proc.pid))} MiB")
        for r in range(1, rounds + 1):
            for server in servers if r % 2 else servers[::-1]:
                print(f"round {r:2d} {server.name}: {server.round()}", flush=True)
        for server in servers:
            print(f"{server.name}: {hot.memory_verdict(server.peaks)}")
    finally:
        for server in servers:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
