"""The hot path against its floor (issue 17): appends, creates, evaluations, trace reads, the verifier.

The server runs as production runs it, ``scripts/serve.sh`` (gunicorn), logged in to PostgreSQL as
the least-privilege app role ``manage.py db_roles`` makes (``<name>_hot_app``, as docker-compose.yml
does), on a fresh database copied from a migrated template, with Redis when ``REDIS_URL`` is set
(the rate limit counts every request there, with a limit no run reaches). The load generator
(threads with keep-alive HTTP connections, like an SDK) shares the machine with the server and
PostgreSQL, and so does the floor: ``pgbench``, logged in as the same app role, running the same SQL
work in a copy of the same schema (with the same triggers) in the same run, interleaved with the
server's rounds, so a noisy neighbour slows both. Each figure is the median of ``BENCH_REPEAT``
rounds (default 3).

Rows:

* ``append 16c`` — single-event ``decision_add_context`` over REST, 16 clients each on its own
  decision, events/s; floor: pgbench, 16 clients, the same chained append per decision (lock the
  decision row, insert the event with the next seq and its SHA-256, the trigger moves the head).
* ``append batch 16c`` — the same with ``contexts`` of ``BATCH`` events a call, events/s; floor:
  the same single-append pgbench figure (the issue's goal is a fraction of it); and, as a second,
  informational row, against a batch floor of the same shape: pgbench locking the decision and
  inserting ``BATCH`` chained events in one multi-row INSERT (``PG_BATCH``), events/s.
* ``create`` / ``evaluate`` / ``append`` / ``append (MCP)`` — one client, p50 and p99 latency;
  floors: pgbench, one client, the same SQL (create: the server's own one statement,
  ``decisions.services._INSERT_CREATED_SQL``, autocommit; append, evaluate: one chained append).
* ``trace read 1000`` — ``GET .../trace?limit=1000`` of a 1,000-event decision, p50/p99 until the
  last byte of the answer is read (as pgbench's floor reads the rows and does not parse them); floor:
  pgbench running the server's own page statement (``decisions.selectors._TRACE_JSON_SQL``: ``seq,
  event_json``) for the same 1,000 rows. The client's ``json.loads`` of that page is a row of its own.
* ``verify`` — ``tracemem_verify`` recomputing the chain of those events (one core, in this
  process; the row names the canonical JSON encoder it used, orjson or rfc8785 alone), events/s;
  floor: SHA-256 of ``json.dumps(sort_keys=True)`` of the same objects.

Every write's answer is recorded (``Ledger``); a write whose connection broke before its answer is
counted and never retried (a retry could store its events twice). Afterwards ``integrity`` checks
that every acknowledged event is stored exactly once, in its decision and at its seq, and that no
stored event lacks an acknowledgement beyond what the lost writes could have stored
(``ledger_verdict``); that ``seq`` is gapless; that ``manage.py verify_traces`` finds every chain
intact; and whether the web workers' memory stays flat: after the measured rounds come
``BENCH_MEMORY_ROUNDS`` more rounds of the same requests (without the floors), and each worker's peak
resident memory in every round is compared, later rounds against earlier ones (``memory_verdict``).

Needs ``DATABASE_URL`` (PostgreSQL; the role must be able to create databases and roles; the
benchmark's own databases are ``<name>_hot_tmpl``, ``_hot_run`` and ``_hot_floor``, its roles
``<name>_hot_app`` and ``_hot_products``, which must be able to log in from this machine without a
password, as tests/conftest.py's roles do) and ``pgbench`` on PATH. Settings: ``BENCH_REPEAT`` (3),
``BENCH_SECONDS`` per throughput round (8), ``BENCH_N`` requests per latency round (300),
``BENCH_MEMORY_ROUNDS`` (6; each about a third of a round), ``BENCH_PORT`` (8765),
``BENCH_WORKERS`` / ``BENCH_THREADS`` (unset: serve.sh's defaults).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import secrets
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.common import env_int, tool_call

ROOT = Path(__file__).resolve().parent.parent
CLIENTS = 16
BATCH = 100
TRACE_EVENTS = 1000
GENESIS = "0" * 64


def context_of(i: int) -> dict[str, Any]:
    """What an agent typically records: a step, its reasoning, files, numbers, some non-ASCII text."""
    return {
        "step": "extracting_auth_logic",
        "rationale": "Improving testability of the login flow; keep the public API unchanged",
        "i": i,
        "files": ["src/auth/service.py", "src/auth/tokens.py", "tests/test_auth.py"],
        "metrics": {"coverage": 0.8125, "lines_changed": 120 + i, "risk": "low", "ok": True, "note": None},
        "summary": "Refactor naïve token check → constant-time compare (ü, 中文, emoji 🚀)",
    }


REPEAT = env_int("BENCH_REPEAT", 3)
MEMORY_ROUNDS = env_int("BENCH_MEMORY_ROUNDS", 6)
SECONDS = env_int("BENCH_SECONDS", 8)
N = env_int("BENCH_N", 300)
PORT = env_int("BENCH_PORT", 8765)


# --- databases ---------------------------------------------------------------------------------


def _db_url(base: str, name: str) -> str:
    parts = urlsplit(base)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def _admin_sql(base: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(_db_url(base, "postgres"), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def _manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def migrated_template(base: str, env: dict[str, str]) -> str:
    """The name of ``<name>_hot_tmpl``, created if missing and migrated: what each run copies."""
    tmpl = f"{urlsplit(base).path.lstrip('/') or 'tracemem'}_hot_tmpl"
    import psycopg

    try:
        _admin_sql(base, f'CREATE DATABASE "{tmpl}"')
    except psycopg.errors.DuplicateDatabase:
        pass
    owner = {**env, "DATABASE_URL": _db_url(base, tmpl)}
    _manage(owner, "migrate", "--noinput", "-v", "0")
    # The least-privilege roles production runs as (docker-compose.yml: db_roles after migrate); the
    # grants live in the template, so every copy has them. Roles are the cluster's: named after it.
    app, products = app_roles(base)
    _manage(owner, "db_roles", "--app-user", app, "--products-user", products, "-v", "0")
    return tmpl


def app_roles(base: str) -> tuple[str, str]:
    """(app role, products role) of the benchmark's databases: ``<name>_hot_app``, ``_hot_products``."""
    name = urlsplit(base).path.lstrip("/") or "tracemem"
    return f"{name}_hot_app", f"{name}_hot_products"


def as_role(url: str, role: str) -> str:
    """``url`` logged in as ``role`` without a password (the app role has none here: local trust or
    peer authentication, as tests/conftest.py's roles; give it one with ALTER ROLE and PGPASSWORD)."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, f"{role}@{host}", parts.path, parts.query, parts.fragment))


def prepare_databases(base: str, env: dict[str, str]) -> tuple[str, str]:
    """(run, floor) URLs: both fresh copies of a migrated template, so every run starts equal."""
    name = urlsplit(base).path.lstrip("/") or "tracemem"
    tmpl, run, floor = migrated_template(base, env), f"{name}_hot_run", f"{name}_hot_floor"
    _admin_sql(
        base,
        f'DROP DATABASE IF EXISTS "{run}" WITH (FORCE)',
        f'DROP DATABASE IF EXISTS "{floor}" WITH (FORCE)',
        f'CREATE DATABASE "{run}" TEMPLATE "{tmpl}"',
        f'CREATE DATABASE "{floor}" TEMPLATE "{tmpl}"',
    )
    return _db_url(base, run), _db_url(base, floor)


# --- the server --------------------------------------------------------------------------------


@contextmanager
def serve(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    args = []
    if os.environ.get("BENCH_WORKERS"):
        args += ["--workers", os.environ["BENCH_WORKERS"]]
    bin_dir = str(Path(sys.executable).parent)
    server_env = {**env, "PATH": f"{bin_dir}:{env.get('PATH', '')}"}
    if os.environ.get("BENCH_THREADS"):  # the front's thread pool (gunicorn's --threads is not used)
        server_env["TRACEMEM_WEB_THREADS"] = os.environ["BENCH_THREADS"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["scripts/serve.sh", *args],
            cwd=ROOT,
            env=server_env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve.sh did not come up; its log:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def workers_of(master: int) -> list[int]:
    """gunicorn's workers: serve.sh execs gunicorn, so ``master`` is gunicorn and these its children."""
    children = Path(f"/proc/{master}/task/{master}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


def _status_kib(pid: int, field: str) -> int | None:
    status = Path(f"/proc/{pid}/status")
    for line in status.read_text().splitlines() if status.exists() else []:
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return None


def worker_rss_kib(master: int) -> list[int]:
    """Resident memory of gunicorn's workers, now."""
    return [kib for pid in workers_of(master) if (kib := _status_kib(pid, "VmRSS")) is not None]


def reset_worker_peaks(master: int) -> None:
    """Start each worker's peak resident memory (VmHWM) again from what it holds now: Linux's
    ``clear_refs`` 5. Where that is refused, the peak stays the one since the worker started, which
    still only grows when the memory does."""
    for pid in workers_of(master):
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass


def worker_peak_kib(master: int) -> list[int]:
    """Each worker's peak resident memory since ``reset_worker_peaks``."""
    return [kib for pid in workers_of(master) if (kib := _status_kib(pid, "VmHWM")) is not None]


# --- the load generator ------------------------------------------------------------------------


class RequestLost(Exception):
    """A write whose answer never arrived (the connection broke): it may or may not have been applied.
    Counted (``Ledger.lost``), never retried: a retried POST could store its events twice."""


class Ledger:
    """What the server acknowledged, request by request, and what it may have done without saying so.

    ``events``: (decision_id, event_id or None, seq or None) of each event a write's answer names (a
    ``decision_create`` acknowledges its ``created`` event as seq 1 of its decision; a single append
    answers its event_id only). ``decisions``: every created decision. ``lost``: per decision, at most
    how many events the writes whose answer never came could have stored (``""``: lost creates, each
    a decision and its ``created`` event). ``errors``: how many requests those were."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str | None, int | None]] = []
        self.decisions: list[str] = []
        self.lost: dict[str, int] = {}
        self.errors = 0
        self._lock = threading.Lock()

    def lose(self, decision_id: str, at_most: int) -> None:
        with self._lock:
            self.lost[decision_id] = self.lost.get(decision_id, 0) + at_most
            self.errors += 1

    def acknowledge(self, path: str, body: Any, answer: Any) -> None:
        """Record what a 2xx answer to a write says was stored."""
        if path == "/api/v1/decisions":
            self.decisions.append(answer["decision_id"])
            self.events.append((answer["decision_id"], None, 1))
        elif path == "/mcp":
            if answer.get("result", {}).get("isError") is not False:
                return  # refused: nothing stored (Agent.mcp raises)
            arguments = body["params"]["arguments"]
            structured = answer["result"].get("structuredContent") or json.loads(
                answer["result"]["content"][0]["text"]
            )
            self._events_of(arguments["decision_id"], structured)
        elif path.startswith("/api/v1/decisions/") and path.endswith(("/context", "/evaluate")):
            self._events_of(path.split("/")[4], answer)

    def _events_of(self, decision_id: str, answer: dict[str, Any]) -> None:
        if "events" in answer:  # a batch: each event with its seq
            self.events += [(decision_id, e["event_id"], e["seq"]) for e in answer["events"]]
        else:
            self.events.append((decision_id, answer["event_id"], answer.get("seq")))

    @staticmethod
    def events_at_most(path: str, body: Any) -> tuple[str, int]:
        """(decision, how many events) a write to ``path`` with ``body`` could have stored."""
        if path == "/api/v1/decisions":
            return "", 1
        if path == "/mcp":
            arguments = body["params"]["arguments"]
            return arguments["decision_id"], len(arguments.get("contexts") or [None])
        return path.split("/")[4], len(body.get("contexts") or [None])


class Agent:
    """One keep-alive connection, authenticated with the agent's key, as an SDK would hold it. Every
    write's answer goes to ``ledger`` (the integrity check after the run compares it with the rows)."""

    def __init__(self, key: str, port: int | None = None, ledger: Ledger | None = None) -> None:
        self.key = key
        self.port = port or PORT
        self.conn: http.client.HTTPConnection | None = None
        self.ledger = ledger

    def _connection(self) -> http.client.HTTPConnection:
        """The kept connection, or a new one when the server has closed it while idle (its socket is
        readable before a request is sent: the end of the stream): nothing was sent on it yet."""
        if self.conn is not None and self.conn.sock is not None:
            readable, _, _ = select.select([self.conn.sock], [], [], 0)
            if readable:
                self.conn.close()
                self.conn = None
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        return self.conn

    def call(self, method: str, path: str, body: Any = None, expect: int = 200, parse: bool = True) -> Any:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Agent {self.key}", "Accept": "application/json, text/event-stream"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        # A read is retried once on a broken connection; a write never is (RequestLost).
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, data, headers)
                response = conn.getresponse()
                payload = response.read()
                break
            except (ConnectionError, http.client.HTTPException) as exc:
                conn.close()
                self.conn = None
                if method != "GET":
                    if self.ledger is not None:
                        self.ledger.lose(*Ledger.events_at_most(path, body))
                    raise RequestLost(f"{method} {path}: {exc!r}") from exc
                if attempt == 2:
                    raise
        if response.status != expect:
            raise RuntimeError(f"{method} {path}: {response.status} {payload[:500]!r}")
        answer = json.loads(payload) if parse or (method != "GET" and self.ledger is not None) else payload
        if method != "GET" and self.ledger is not None:
            self.ledger.acknowledge(path, body, answer)
        return answer if parse else payload

    def mcp(self, tool: str, arguments: dict[str, Any]) -> Any:
        result = self.call("POST", "/mcp", tool_call(tool, arguments))
        if result.get("result", {}).get("isError") is not False:
            raise RuntimeError(f"MCP {tool}: {result}")
        return result


def latencies(fn: Callable[[], Any], n: int, warmup: int = 20) -> list[float]:
    """Wall-clock ms of ``n`` calls of ``fn`` after ``warmup``; a call whose answer was lost
    (RequestLost, counted in the ledger) is not a sample."""
    for _ in range(warmup):
        try:
            fn()
        except RequestLost:
            pass
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        try:
            fn()
        except RequestLost:
            continue
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def throughput(calls: list[Callable[[], int]], seconds: float) -> float:
    """Run each call in its own thread, in a loop, for ``seconds``; units (events) per second."""
    done = [0] * len(calls)
    errors: list[BaseException] = []
    start = threading.Barrier(len(calls) + 1)
    stop = threading.Event()

    def loop(i: int) -> None:
        start.wait()
        try:
            while not stop.is_set():
                try:
                    done[i] += calls[i]()
                except RequestLost:  # counted in the ledger; the client goes on, on a new connection
                    pass
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    if errors:
        raise RuntimeError(f"{len(errors)} clients failed; first: {errors[0]!r}")
    return sum(done) / elapsed


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


# --- the floor: pgbench ------------------------------------------------------------------------

# One chained append, as the server does it (the trigger checks the chain and moves the head).
PG_APPEND = """
\\set n random(1, 1000000000)
BEGIN;
SELECT event_count AS c, CASE WHEN event_count = 0 THEN '{genesis}' ELSE trace_head END AS h
  FROM decisions_decision WHERE decision_id = :did FOR UPDATE \\gset
INSERT INTO decisions_traceevent (event_id, decision_id, seq, type, "timestamp", actor, payload, prev_hash, hash)
  VALUES ('evt_' || md5(:n::text || clock_timestamp()::text), :did, :c + 1, 'context', clock_timestamp(),
          '{{"kind": "agent", "id": "agent_bench", "name": "bench"}}',
          '{{"context": {{"step": "measuring", "n": 1}}}}', :h,
          encode(sha256(convert_to(:h || :c::text || '{{"context": {{"step": "measuring", "n": 1}}}}', 'UTF8')), 'hex'));
COMMIT;
"""

# The same with BATCH events in one multi-row INSERT (the batch append's statement): one lock, then
# BATCH rows, each continuing the chain of the one before (hash = SHA-256 of the decision and its seq,
# so each prev_hash is the previous row's hash); the trigger checks and moves the head row by row.
PG_BATCH = """
BEGIN;
SELECT event_count AS c FROM decisions_decision WHERE decision_id = :did FOR UPDATE \\gset
INSERT INTO decisions_traceevent (event_id, decision_id, seq, type, "timestamp", actor, payload, prev_hash, hash)
  SELECT 'evt_' || md5(random()::text || clock_timestamp()::text || g), :did, :c + g, 'context', clock_timestamp(),
         '{{"kind": "agent", "id": "agent_bench", "name": "bench"}}',
         jsonb_build_object('context', jsonb_build_object('step', 'measuring', 'n', g)),
         CASE WHEN :c + g = 1 THEN '{genesis}'
              ELSE encode(sha256(convert_to(:did || (:c + g - 1)::text, 'UTF8')), 'hex') END,
         encode(sha256(convert_to(:did || (:c + g)::text, 'UTF8')), 'hex')
    FROM generate_series(1, BATCH_SIZE) AS g ORDER BY g;
COMMIT;
""".replace("BATCH_SIZE", str(BATCH))


def session_roles(owner_url: str) -> list[str]:
    """The roles of the sessions other than this one open on ``owner_url``'s database: the server's."""
    import psycopg

    with psycopg.connect(owner_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_type = 'client backend' ORDER BY 1"
        ).fetchall()
    return [name for (name,) in rows]


def server_statements(env: dict[str, str]) -> dict[str, str]:
    """The server's own SQL texts the floors run: ``decision_create``'s one statement
    (``decisions.services._INSERT_CREATED_SQL``) and the trace page's (``decisions.selectors.
    _TRACE_JSON_SQL``), read from this checkout's code so the floor follows any change to them."""
    out = _manage(
        env,
        "shell",
        "-v",
        "0",
        "-c",
        "import json; from decisions.services import _INSERT_CREATED_SQL as c; "
        "from decisions.selectors import _TRACE_JSON_SQL as t; print(json.dumps({'create': c, 'trace': t}))",
    )
    texts: dict[str, str] = json.loads(out.strip().splitlines()[-1])
    return texts


def bind(sql: str, values: list[str]) -> str:
    """``sql`` with each ``%s`` replaced, in order, by the SQL expression in ``values``; braces doubled
    for :func:`pgbench`'s ``str.format`` (which fills ``{genesis}``)."""
    parts = sql.split("%s")
    if len(parts) != len(values) + 1:
        raise ValueError(f"{len(parts) - 1} placeholders, {len(values)} values: {sql}")
    escaped = [part.replace("{", "{{").replace("}", "}}") for part in parts]
    out = escaped[0]
    for value, part in zip(values, escaped[1:], strict=True):
        out += value.replace("{", "{{").replace("}", "}}") + part
    return out.replace("{{genesis}}", "{genesis}")


def _columns(sql: str, table: str) -> list[str]:
    found = re.search(rf"INSERT INTO {table} \((.*?)\) VALUES", sql)
    if found is None:
        raise ValueError(f"no INSERT INTO {table} in {sql}")
    return [c.strip().strip('"') for c in found.group(1).split(",")]


def create_script(sql: str) -> str:
    """The server's ``decision_create`` statement as a pgbench script: one statement, autocommit (no
    BEGIN/COMMIT), the values the server would bind written as SQL expressions (a column not named
    here gets NULL, as the server's optional fields do; a NOT NULL one would fail the run loudly)."""
    decision_id = "('TMEM_' || upper(substr(md5(:n::text || statement_timestamp()::text), 1, 26)))"
    decision = {
        "decision_id": decision_id,
        "agent_id": ":agent",
        "intent": "'bench.run.measure'",
        "automation_mode": "'autonomous'",
        "actor": ":agent",
        "metadata": "'{}'",
        "status": "'open'",
        "created_at": "clock_timestamp()",
        "event_count": "0",
        "trace_head": "''",
    }
    event = {
        "event_id": "('evt_' || md5(:n::text || clock_timestamp()::text))",
        "decision_id": decision_id,
        "seq": "1",
        "type": "'created'",
        "timestamp": "clock_timestamp()",
        "actor": """'{"kind": "agent", "id": "agent_bench", "name": "bench"}'""",
        "payload": """'{"intent": "bench.run.measure", "automation_mode": "autonomous"}'""",
        "prev_hash": "'{genesis}'",
        "hash": f"encode(sha256(convert_to({decision_id}, 'UTF8')), 'hex')",
    }
    values = [decision.get(c, "NULL") for c in _columns(sql, "decisions_decision")]
    values += [event.get(c, "NULL") for c in _columns(sql, "decisions_traceevent")]
    return "\\set n random(1, 1000000000)\n" + bind(sql, values) + ";\n"


def trace_script(sql: str) -> str:
    """The server's trace page statement, the first 1,000 events of ``:did`` (one page)."""
    return bind(sql, [":did", "0", str(TRACE_EVENTS), str(TRACE_EVENTS)]) + ";\n"


def pgbench(
    url: str, script: str, clients: int, seconds: float, variables: dict[str, str]
) -> dict[str, float]:
    """Run ``script`` (variable ``did`` = the client's decision when given as a list); tps, p50, p99 ms."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "script.sql"
        path.write_text(script.format(genesis=GENESIS))
        args = ["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(clients, 2))]
        args += ["-T", str(int(seconds)), "-l", "--log-prefix", str(Path(tmp) / "log"), "-f", str(path)]
        for name, value in variables.items():
            args += ["-D", f"{name}={value}"]
        done = subprocess.run([*args, url], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pgbench failed:\n{done.stdout}\n{done.stderr}")
        tps = float(re.search(r"tps = ([\d.]+)", done.stdout).group(1))  # type: ignore[union-attr]
        samples = []
        for log in Path(tmp).glob("log*"):
            samples += [int(line.split()[2]) / 1000 for line in log.read_text().splitlines() if line.strip()]
    return {"rate": tps, "p50": statistics.median(samples), "p99": pct(samples, 0.99)}


def floor_decisions(url: str, agent_id: str, count: int, prefix: str = "TMEM_FLOOR") -> list[str]:
    """Open decisions for the pgbench clients, one each (pgbench picks one by ``:client_id``)."""
    import psycopg

    ids = [f"{prefix}{i:016d}" for i in range(count)]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO agents_agent (agent_id, name, description, disabled, created_at) "
            "VALUES (%s, %s, '', false, now()) ON CONFLICT DO NOTHING",
            (agent_id, agent_id),
        )
        for did in ids:
            conn.execute(
                "INSERT INTO decisions_decision (decision_id, agent_id, intent, automation_mode, actor, metadata, "
                "status, created_at, event_count, trace_head) VALUES (%s, %s, 'bench.run.measure', 'autonomous', "
                "%s, '{}', 'open', now(), 0, '')",
                (did, agent_id, agent_id),
            )
    return ids


def append_script_per_client(ids: list[str], script: str = PG_APPEND, prefix: str = "TMEM_FLOOR") -> str:
    """``script`` with ``did`` chosen by the client's number (each client appends to its own decision)."""
    assert ids == [f"{prefix}{i:016d}" for i in range(len(ids))]
    return script.replace(":did", f"('{prefix}' || lpad((:client_id)::int::text, 16, '0'))")


# --- the run -----------------------------------------------------------------------------------

POLICY_YAML = """
policies:
  - policy_id: bench_cap_v1
    name: Bench cap
    rules:
      - {name: too_big, when: "inputs.amount > 1000", outcome: deny, message: "over 1000"}
      - {name: needs_human, when: "inputs.amount > 100", outcome: requires_exception, message: "over 100"}
    default_outcome: allow
    publish: true
    grants: [bench-agent]
"""


def median_of(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def run() -> list[dict[str, Any]]:
    base = os.environ.get("DATABASE_URL", "")
    # Skipped, not failed, so `make bench` on the embedded default still runs the other benchmarks.
    if not base.startswith(("postgres://", "postgresql://")):
        return [
            {"operation": "skipped: needs DATABASE_URL=postgres://... (a role that may create databases)"}
        ]
    if shutil.which("pgbench") is None:
        return [{"operation": "skipped: needs pgbench on PATH (Debian: postgresql-client)"}]
    var = Path(tempfile.mkdtemp(prefix="tracemem-bench-"))
    env = {
        **os.environ,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_DEBUG": "false",
        "TRACEMEM_VAR_DIR": str(var),
        "TRACEMEM_HOST": "127.0.0.1",
        "TRACEMEM_PORT": str(PORT),
        # Counted on every request like in production, at a limit no run reaches.
        "TRACEMEM_AGENT_RATE_LIMIT": "1000000000/minute",
    }
    env.pop("MIGRATION_DATABASE_URL", None)
    print("bench hotpath: preparing databases ...", file=sys.stderr, flush=True)
    owner_run_url, owner_floor_url = prepare_databases(base, env)
    # The server, its management commands and the floor's pgbench log in as the app role, as
    # production's web and workers do (docker-compose.yml); only the setup above ran as the owner.
    app_role, products_role = app_roles(base)
    run_url, floor_url = as_role(owner_run_url, app_role), as_role(owner_floor_url, app_role)
    env["DATABASE_URL"] = run_url
    env["TRACEMEM_PRODUCTS_ROLE"] = products_role
    statements = server_statements(env)
    key = _manage(env, "create_agent", "bench-agent").strip().splitlines()[-1]
    policy_file = var / "policy.yaml"
    policy_file.write_text(POLICY_YAML)
    _manage(env, "apply_config", str(policy_file))
    floor_ids = floor_decisions(owner_floor_url, "agent_bench_floor", CLIENTS + 2)
    append_floor = append_script_per_client(floor_ids[:CLIENTS])
    batch_ids = floor_decisions(owner_floor_url, "agent_bench_floor", CLIENTS, prefix="TMEB_FLOOR")
    batch_floor = append_script_per_client(batch_ids, PG_BATCH, prefix="TMEB_FLOOR")
    one_floor = PG_APPEND.replace(":did", f"'{floor_ids[CLIENTS]}'")
    pg_create, pg_trace = create_script(statements["create"]), trace_script(statements["trace"])
    ledger = Ledger()

    rows: list[dict[str, Any]] = []
    results: dict[str, list[dict[str, float]]] = {}

    def note(name: str, value: dict[str, float]) -> None:
        results.setdefault(name, []).append(value)

    with serve(env, var / "serve.log") as server:
        agents = [Agent(key, ledger=ledger) for _ in range(CLIENTS)]
        create = {"intent": "bench.run.measure", "automation_mode": "autonomous"}
        own = [
            agents[i].call("POST", "/api/v1/decisions", create, 201)["decision_id"] for i in range(CLIENTS)
        ]
        one = agents[0]
        solo = one.call("POST", "/api/v1/decisions", create, 201)["decision_id"]
        batch_ok = True
        try:
            one.call("POST", f"/api/v1/decisions/{solo}/context", {"contexts": [{"n": 0}]}, 201)
        except RuntimeError:
            batch_ok = False
        # The 1,000-event trace the read and the verifier use.
        traced = one.call("POST", "/api/v1/decisions", create, 201)["decision_id"]
        for i in range(TRACE_EVENTS - 1):
            one.call("POST", f"/api/v1/decisions/{traced}/context", {"context": context_of(i)}, 201)
        trace_path = f"/api/v1/decisions/{traced}/trace?limit={TRACE_EVENTS}"
        events = one.call("GET", trace_path)["events"]
        assert len(events) == TRACE_EVENTS, len(events)

        def append_call(agent: Agent, did: str) -> Callable[[], int]:
            def call() -> int:
                agent.call(
                    "POST",
                    f"/api/v1/decisions/{did}/context",
                    {"context": {"step": "measuring", "n": 1}},
                    201,
                )
                return 1

            return call

        def batch_call(agent: Agent, did: str) -> Callable[[], int]:
            body = {"contexts": [{"step": "measuring", "n": i} for i in range(BATCH)]}

            def call() -> int:
                return len(agent.call("POST", f"/api/v1/decisions/{did}/context", body, 201)["events"])

            return call

        def create_call() -> None:
            one.call("POST", "/api/v1/decisions", create, 201)

        evaluate = {"policy_id": "bench_cap_v1", "inputs": {"amount": 5}}

        def evaluate_call() -> None:
            one.call("POST", f"/api/v1/decisions/{solo}/evaluate", evaluate)

        def mcp_append() -> None:
            one.mcp("decision_add_context", {"decision_id": solo, "context": {"step": "measuring", "n": 1}})

        def rest_append() -> None:
            one.call(
                "POST", f"/api/v1/decisions/{solo}/context", {"context": {"step": "measuring", "n": 1}}, 201
            )

        def trace_call() -> None:
            one.call("GET", trace_path, parse=False)

        trace_bytes = one.call("GET", trace_path, parse=False)

        def timed(fn: Callable[[], Any]) -> dict[str, float]:
            s = latencies(fn, N)
            return {"p50": statistics.median(s), "p99": pct(s, 0.99), "rate": 1000 / statistics.mean(s)}

        server_roles = session_roles(owner_run_url)
        rss_before = worker_rss_kib(server.pid)
        workers = workers_of(server.pid)
        # Each worker's peak in each round: a leak keeps growing, a high-water mark stops.
        peaks: list[list[int]] = []
        floor_vars = {"agent": "agent_bench_floor", "did": floor_ids[CLIENTS + 1]}
        for r in range(REPEAT):
            print(f"bench hotpath: round {r + 1}/{REPEAT} ...", file=sys.stderr, flush=True)
            reset_worker_peaks(server.pid)
            note(
                "append16",
                {"rate": throughput([append_call(a, d) for a, d in zip(agents, own, strict=True)], SECONDS)},
            )
            note("append16_floor", pgbench(floor_url, append_floor, CLIENTS, SECONDS, {}))
            if batch_ok:
                calls = [batch_call(a, d) for a, d in zip(agents, own, strict=True)]
                note("batch16", {"rate": throughput(calls, SECONDS)})
                batch_tx = pgbench(floor_url, batch_floor, CLIENTS, SECONDS, {})
                note("batch16_floor", {"rate": batch_tx["rate"] * BATCH})
            note("create", timed(create_call))
            note("create_floor", pgbench(floor_url, pg_create, 1, max(2, SECONDS // 2), floor_vars))
            note("append1", timed(rest_append))
            note("append1_mcp", timed(mcp_append))
            note("append1_floor", pgbench(floor_url, one_floor, 1, max(2, SECONDS // 2), floor_vars))
            note("evaluate", timed(evaluate_call))
            note("trace", timed(trace_call))
            note("trace_parse", timed(lambda: json.loads(trace_bytes)))
            trace_floor_vars = {"did": traced}
            note("trace_floor", pgbench(run_url, pg_trace, 1, max(2, SECONDS // 2), trace_floor_vars))
            note("verify", verify_rate(traced, events))
            note("verify_floor", verify_floor_rate(events))
            peaks.append(worker_peak_kib(server.pid))
        # More rounds of the same requests, without the floors and timings, for the memory verdict:
        # a plateau and a leak look alike over three rounds (docs/performance.md section 21).
        for r in range(MEMORY_ROUNDS):
            print(f"bench hotpath: memory round {r + 1}/{MEMORY_ROUNDS} ...", file=sys.stderr, flush=True)
            reset_worker_peaks(server.pid)
            throughput([append_call(a, d) for a, d in zip(agents, own, strict=True)], max(2, SECONDS // 2))
            if batch_ok:
                calls = [batch_call(a, d) for a, d in zip(agents, own, strict=True)]
                throughput(calls, max(2, SECONDS // 2))
            for fn in (create_call, rest_append, mcp_append, evaluate_call, trace_call):
                for _ in range(max(20, N // 3)):
                    fn()
            peaks.append(worker_peak_kib(server.pid))
        rss_after = worker_rss_kib(server.pid)
        restarted = workers_of(server.pid) != workers

    def row(name: str, key_: str, unit: str, floor: str | None, goal: str, ratio_of: str = "rate") -> None:
        value = median_of(results[key_], ratio_of)
        entry: dict[str, Any] = {"operation": name, "unit": unit, "value": _fmt(value)}
        if ratio_of == "p50":
            entry["p99"] = _fmt(median_of(results[key_], "p99"))
        if floor is not None:
            fvalue = median_of(results[floor], ratio_of)
            entry["floor"] = _fmt(fvalue)
            if ratio_of == "p99" or ratio_of == "p50":
                entry["floor_p99"] = _fmt(median_of(results[floor], "p99"))
                entry["ratio"] = f"{fvalue / value:.3f}"
            else:
                entry["ratio"] = f"{value / fvalue:.3f}"
        entry["goal"] = goal
        rows.append(entry)

    row("append, 16 clients (REST)", "append16", "events/s", "append16_floor", "ratio >= 0.08 (>= 800/s)")
    if batch_ok:
        row(f"batch append x{BATCH}, 16 clients", "batch16", "events/s", "append16_floor", "ratio >= 0.5")
        row(
            f"  the same against a batch floor (pgbench: one lock, one {BATCH}-row INSERT)",
            "batch16",
            "events/s",
            "batch16_floor",
            "(informational)",
        )
    else:
        rows.append(
            {
                "operation": f"batch append x{BATCH}, 16 clients",
                "value": "not supported",
                "goal": "ratio >= 0.5",
            }
        )
    row("decision_create, 1 client", "create", "ms p50", "create_floor", "p50 <= 3, p99 <= 8", "p50")
    row("decision_evaluate (REST), 1 client", "evaluate", "ms p50", "append1_floor", "p50 <= 3", "p50")
    row("decision_add_context (REST), 1 client", "append1", "ms p50", "append1_floor", "", "p50")
    mcp_p50 = median_of(results["append1_mcp"], "p50")
    rest_p50 = median_of(results["append1"], "p50")
    rows.append(
        {
            "operation": "decision_add_context (MCP), 1 client",
            "unit": "ms p50",
            "value": _fmt(mcp_p50),
            "p99": _fmt(median_of(results["append1_mcp"], "p99")),
            "floor": _fmt(rest_p50) + " (REST)",
            "ratio": f"{mcp_p50 / rest_p50:.2f}x REST",
            "goal": "<= 1.1x REST",
        }
    )
    row(f"trace read, {TRACE_EVENTS} events", "trace", "ms p50", "trace_floor", "p50 <= 10", "p50")
    row(
        f"  + the client's json.loads of that page ({len(trace_bytes) // 1024:,} KiB)",
        "trace_parse",
        "ms p50",
        None,
        "",
        "p50",
    )
    row(
        f"chain verification (1 core, {verifier_encoder()})",
        "verify",
        "events/s",
        "verify_floor",
        ">= 50,000/s",
    )
    memory = {"before": rss_before, "peaks": peaks, "after": rss_after, "restarted": restarted}
    rows.append(integrity(run_url, env, ledger, memory))
    rows.append(
        {
            "operation": "logged in as (server; pgbench floors)",
            "value": f"{', '.join(server_roles)}; {app_role}",
            "goal": f"the app role ({app_role}, manage.py db_roles), as production",
        }
    )
    shutil.rmtree(var, ignore_errors=True)
    return [{c: r.get(c, "") for c in COLUMNS} for r in rows]


COLUMNS = ("operation", "unit", "value", "p99", "floor", "floor_p99", "ratio", "goal")


def _fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def verifier_encoder() -> str:
    """Which canonical JSON encoder ``tracemem_verify`` uses here: orjson when installed (its
    documented install, tracemem_verify/requirements.txt), else rfc8785 alone (slower)."""
    from tracemem_verify import canonical

    return "orjson" if canonical.orjson is not None else "rfc8785 only, no orjson"


def verify_rate(decision_id: str, events: list[dict[str, Any]]) -> dict[str, float]:
    from tracemem_verify.chain import ChainVerifier

    rounds = max(1, 20_000 // len(events))
    started = time.process_time()
    for _ in range(rounds):
        broken = ChainVerifier(decision_id).feed(events)
        assert broken is None, broken
    return {"rate": rounds * len(events) / (time.process_time() - started)}


def verify_floor_rate(events: list[dict[str, Any]]) -> dict[str, float]:
    """The least a Python verifier must do: serialise each event (sorted keys, compact) and hash it."""
    import hashlib

    fields = ("decision_id", "event_id", "seq", "type", "timestamp", "actor", "payload", "prev_hash")
    rounds = max(1, 20_000 // len(events))
    started = time.process_time()
    for _ in range(rounds):
        for event in events:
            material = {name: event[name] for name in fields}
            text = json.dumps(material, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            hashlib.sha256(text.encode()).hexdigest()
    return {"rate": rounds * len(events) / (time.process_time() - started)}


MEMORY_MIN_ROUNDS = 5


def memory_verdict(peaks: list[list[int]]) -> str:
    """Whether a web worker's memory keeps growing under the same load, round after round.

    ``peaks``: per round, each worker's peak resident memory in KiB. A leak grows every round; a
    high-water mark — the allocator keeping what the busiest moment needed, caches filled once —
    stops. So the first round, which sets the high-water marks, is left out, the rounds after it
    are split into an earlier and a later half, and a worker is growing when the median of its
    later half exceeds the median of its earlier half by more than 4 MiB and 2 %. With the default
    nine rounds that sees a leak of more than about 1 MiB a round (a few hundred bytes a request);
    the peaks of a worker at its high-water mark moved by 1–2 MiB from round to round
    (docs/performance.md section 21). From fewer than MEMORY_MIN_ROUNDS rounds it does not guess."""
    if len(peaks) < MEMORY_MIN_ROUNDS:
        return (
            f"memory: cannot tell from {len(peaks)} rounds (needs {MEMORY_MIN_ROUNDS}, BENCH_MEMORY_ROUNDS)"
        )
    after_first = peaks[1:]
    half = len(after_first) // 2
    early, late = after_first[:half], after_first[-half:]
    findings = []
    for worker in range(min(len(r) for r in peaks)):
        before = statistics.median(r[worker] for r in early)
        now = statistics.median(r[worker] for r in late)
        limit = max(4 * 1024, before * 0.02)
        findings.append((now - before, limit, worker + 1))
    rounds = f"median peak of rounds {len(peaks) - half + 1}-{len(peaks)} against rounds 2-{half + 1}"
    growing = [finding for finding in findings if finding[0] > finding[1]]
    shown = ", ".join(
        f"worker {w} {g / 1024:+.1f} MiB (limit {lim / 1024:.0f} MiB)"
        for g, lim, w in growing or [max(findings)]
    )
    if growing:
        return f"MEMORY GROWING round over round: {rounds}: {shown}"
    return f"ok, memory flat: {rounds}: {shown}"


def ledger_verdict(
    ledger: Ledger, stored: Iterable[tuple[str, str, int]], decisions: Iterable[str]
) -> tuple[bool, str]:
    """Compare what the server acknowledged (``ledger``) with what it stored: ``stored`` holds
    (decision_id, event_id, seq) of every event of the agent's decisions, ``decisions`` their ids.

    Each acknowledged event must be stored exactly once, in its decision (at its seq, when the
    answer named one); a ``decision_create`` acknowledges its decision and that decision's seq 1.
    A stored event no answer named is one a lost write (``Ledger.lost``, its answer never came)
    may have stored: per decision, at most as many as those writes carried; a decision no answer
    named, at most as many as the lost creates. Anything beyond that was stored without being
    acknowledged — a retried or replayed write, say. Returns (ok, what was counted)."""
    by_id: dict[
        str, list[Any]
    ] = {}  # event_id -> [decision_id, seq or None, times acknowledged, times stored]
    by_seq: dict[
        tuple[str, int], list[int]
    ] = {}  # (decision, seq) acknowledged without an id -> [acks, stored]
    for decision_id, event_id, seq in ledger.events:
        if event_id is None:
            assert seq is not None
            by_seq.setdefault((decision_id, seq), [0, 0])[0] += 1
        else:
            by_id.setdefault(event_id, [decision_id, seq, 0, 0])[2] += 1
    acknowledged_decisions = set(ledger.decisions)
    elsewhere = 0  # stored in another decision, or at another seq, than its answer said
    unacknowledged: dict[str, int] = {}
    for decision_id, event_id, seq in stored:
        entry = by_id.get(event_id)
        if entry is not None:
            entry[3] += 1
            if entry[0] != decision_id or (entry[1] is not None and entry[1] != seq):
                elsewhere += 1
        elif (decision_id, seq) in by_seq:
            by_seq[(decision_id, seq)][1] += 1
        elif decision_id not in acknowledged_decisions and seq == 1:
            pass  # the created event of a decision no answer named: counted with the decisions
        else:
            unacknowledged[decision_id] = unacknowledged.get(decision_id, 0) + 1
    counts = [(e[2], e[3]) for e in by_id.values()] + [(acks, n) for acks, n in by_seq.values()]
    missing = sum(1 for _, n in counts if n == 0)
    duplicated = sum(acks - 1 for acks, _ in counts if acks > 1) + sum(n - 1 for _, n in counts if n > 1)
    stray_decisions = len([d for d in set(decisions) if d not in acknowledged_decisions])
    unexplained = sum(max(0, n - ledger.lost.get(d, 0)) for d, n in unacknowledged.items())
    unexplained += max(0, stray_decisions - ledger.lost.get("", 0))
    ok = not (missing or duplicated or elsewhere or unexplained)
    at_most = sum(ledger.lost.values())
    return ok, (
        f"{len(counts):,} acknowledged events: {missing} missing, {duplicated} duplicated, {elsewhere} misplaced; "
        f"{sum(unacknowledged.values()) + stray_decisions} stored unacknowledged, {unexplained} beyond what "
        f"{ledger.errors} lost writes (at most {at_most} events) explain"
    )


def integrity(url: str, env: dict[str, str], ledger: Ledger, memory: dict[str, Any]) -> dict[str, Any]:
    """Every acknowledged event stored exactly once and nothing else (``ledger_verdict``), gapless
    seq, every chain intact (``manage.py verify_traces``); worker memory by round."""
    import psycopg

    agent = "SELECT agent_id FROM agents_agent WHERE name = 'bench-agent'"
    with psycopg.connect(url) as conn:
        gaps = conn.execute(
            "SELECT d.decision_id FROM decisions_decision d LEFT JOIN decisions_traceevent e "
            f"ON e.decision_id = d.decision_id WHERE d.agent_id IN ({agent}) GROUP BY d.decision_id "
            "HAVING max(e.seq) <> count(e.*) OR min(e.seq) <> 1 OR count(DISTINCT e.seq) <> count(e.*)"
        ).fetchall()
        decisions = [
            d
            for (d,) in conn.execute(
                f"SELECT decision_id FROM decisions_decision WHERE agent_id IN ({agent})"
            )
        ]
        with conn.cursor(name="stored") as cursor:  # streamed: a run stores a few hundred thousand
            cursor.itersize = 20_000
            cursor.execute(
                "SELECT e.decision_id, e.event_id, e.seq FROM decisions_traceevent e "
                f"JOIN decisions_decision d ON d.decision_id = e.decision_id WHERE d.agent_id IN ({agent})"
            )
            acknowledged, counted = ledger_verdict(ledger, cursor, decisions)
        total = conn.execute("SELECT count(*) FROM decisions_traceevent").fetchone()[0]  # type: ignore[index]
    verified = subprocess.run(
        [sys.executable, "manage.py", "verify_traces"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    ok = acknowledged and not gaps and verified.returncode == 0
    failed = [
        what
        for what, bad in (
            ("ledger", not acknowledged),
            ("seq gaps", gaps),
            ("verify_traces", verified.returncode),
        )
        if bad
    ]
    return {
        "operation": "after the run: acknowledged = stored, seq gapless, verify_traces",
        "unit": "",
        "value": f"{'ok' if ok else 'FAILED: ' + ', '.join(failed)} ({total:,} events; {counted})",
        "floor": "",
        "ratio": f"worker RSS MiB before {_mib(memory['before'])}, peak by round "
        + " -> ".join(_mib(peak) for peak in memory["peaks"])
        + f", after {_mib(memory['after'])}",
        "goal": "memory: a worker restarted during the run, cannot tell"
        if memory["restarted"]
        else memory_verdict(memory["peaks"]),
    }


def _mib(kib: list[int]) -> str:
    return "/".join(str(k // 1024) for k in kib)
