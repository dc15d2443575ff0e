"""The chain trigger as a row trigger (A), as a statement trigger (B), and B without the two redundant
indexes of ``decisions_traceevent`` (C), measured by bench_hotpath's pgbench floor, alternately
(docs/performance.md section 31).

``python -m bench.trigger_ab TEMPLATE PREFIX [ROUNDS] [SECONDS]`` copies ``TEMPLATE`` (a database migrated to
decisions 0008, e.g. ``tracemem_hot_tmpl``) three times: ``<PREFIX>_a`` as it is,
``<PREFIX>_b`` with decisions 0009's SQL run in it, ``<PREFIX>_c`` with 0009's and then
0010's index drops; then runs each pgbench script against A, B and C, ROUNDS times (the order rotating
each round, so the machine's load falls on all alike), and prints each figure's median: single chained append (bench_hotpath's PG_APPEND) with 16 clients, each on its own
decision, events/s and p50 ms; and a chained batch of ``BATCH`` events in one INSERT, 16 clients,
events/s and p50 ms; and the single append with one client (latency). The role in ``DATABASE_URL``
(its database is ignored) must be able to create databases; pgbench must be on PATH.

``python -m bench.trigger_ab cpu PREFIX [ROUNDS]`` then measures, in those three databases in turn, the
server's CPU time (the backend's ``/proc/<pid>/schedstat``: PostgreSQL on this machine) per event of
3,000 single chained appends (one statement each, to 3,000 decisions of their own) and of 30 batches
of 100, in one transaction rolled back; with the machine loaded by others CPU time varies far less
than wall-clock time. It prints the medians and each round's single-append figure.
"""

from __future__ import annotations

import importlib
import os
import statistics
import sys
from typing import Any

from bench.bench_hotpath import PG_APPEND, _db_url, append_script_per_client, floor_decisions, pgbench

BATCH = 100
CLIENTS = 16

# BATCH chained events in one INSERT: event k's hash is a SHA-256 of the head and its seq, its prev_hash
# the hash of event k - 1 (the head for the first).
PG_APPEND_BATCH = """
\\set n random(1, 1000000000)
BEGIN;
SELECT event_count AS c, CASE WHEN event_count = 0 THEN '{genesis}' ELSE trace_head END AS h
  FROM decisions_decision WHERE decision_id = :did FOR UPDATE \\gset
INSERT INTO decisions_traceevent (event_id, decision_id, seq, type, "timestamp", actor, payload, prev_hash, hash)
  SELECT 'evt_' || md5(:n::text || clock_timestamp()::text || k), :did, :c + k, 'context', clock_timestamp(),
         '{{"kind": "agent", "id": "agent_bench", "name": "bench"}}',
         '{{"context": {{"step": "measuring", "n": 1}}}}',
         CASE WHEN k = 1 THEN :h ELSE encode(sha256(convert_to(:h || (:c + k - 1)::text, 'UTF8')), 'hex') END,
         encode(sha256(convert_to(:h || (:c + k)::text, 'UTF8')), 'hex')
    FROM generate_series(1, BATCH) AS k;
COMMIT;
""".replace("BATCH", str(BATCH))


SIDES = "ABC"
REDUNDANT_INDEXES = [
    "DROP INDEX decisions_traceevent_decision_id_35eeca30_like",
    "DROP INDEX decisions_traceevent_decision_id_35eeca30",
]


def prepare(base: str, template: str, prefix: str) -> dict[str, str]:
    import psycopg

    trigger = importlib.import_module("decisions.migrations.0009_trace_chain_per_statement")
    changes = {"A": [], "B": trigger.FORWARDS, "C": trigger.FORWARDS + REDUNDANT_INDEXES}
    urls = {}
    for side in SIDES:
        name = f"{prefix}_{side.lower()}"
        with psycopg.connect(base, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        urls[side] = _db_url(base, name)
        with psycopg.connect(urls[side], autocommit=True) as conn:
            for statement in changes[side]:
                conn.execute(statement)
    return urls


MICRO_DECISIONS = 3000
MICRO_SETUP = f"""
INSERT INTO decisions_decision (decision_id, agent_id, intent, automation_mode, actor, metadata, status, created_at,
                                event_count, trace_head)
SELECT 'TMEM_MICRO' || lpad(g::text, 16, '0'), 'agent_bench_floor', 'bench.run.measure', 'autonomous',
       'agent_bench_floor', '{{}}', 'open', now(), 0, ''
  FROM generate_series(1, {MICRO_DECISIONS}) AS g ON CONFLICT DO NOTHING
"""
_MICRO_ROW = """('evt_' || md5(i::text || clock_timestamp()::text || k), did, c + k, 'context', clock_timestamp(),
     '{"kind": "agent", "id": "agent_bench", "name": "bench"}', '{"context": {"step": "measuring", "n": 1}}',
     CASE WHEN k = 1 THEN h ELSE encode(sha256(convert_to(h || (c + k - 1)::text, 'UTF8')), 'hex') END,
     encode(sha256(convert_to(h || (c + k)::text, 'UTF8')), 'hex'))"""
MICRO = """DO $$
DECLARE c int; h text; did text;
BEGIN
  FOR i IN 1..DECISIONS LOOP
    did := 'TMEM_MICRO' || lpad(i::text, 16, '0');
    SELECT event_count, CASE WHEN event_count = 0 THEN repeat('0', 64) ELSE trace_head END INTO c, h
      FROM decisions_decision WHERE decision_id = did FOR UPDATE;
    INSERT INTO decisions_traceevent (event_id, decision_id, seq, type, "timestamp", actor, payload, prev_hash, hash)
      SELECT ROW FROM generate_series(1, EVENTS) AS k;
  END LOOP;
END $$"""
MICRO_SINGLE = (
    MICRO.replace("DECISIONS", str(MICRO_DECISIONS)).replace("EVENTS", "1").replace("ROW", _MICRO_ROW[1:-1])
)
MICRO_BATCH = (
    MICRO.replace("DECISIONS", str(MICRO_DECISIONS // BATCH))
    .replace("EVENTS", str(BATCH))
    .replace("ROW", _MICRO_ROW[1:-1])
)


def cpu(prefix: str, rounds: int) -> int:
    import psycopg

    base = os.environ["DATABASE_URL"]
    conns = {
        side: psycopg.connect(_db_url(base, f"{prefix}_{side.lower()}"), autocommit=True) for side in SIDES
    }
    pids = {side: conn.execute("SELECT pg_backend_pid()").fetchone()[0] for side, conn in conns.items()}  # type: ignore[index]

    def used(side: str, sql: str) -> float:
        """The backend's CPU µs per event running ``sql`` (MICRO_DECISIONS events) in a rolled-back transaction."""
        with open(f"/proc/{pids[side]}/schedstat") as f:
            before = int(f.read().split()[0])
        conns[side].execute("BEGIN")
        conns[side].execute(sql)
        with open(f"/proc/{pids[side]}/schedstat") as f:
            after = int(f.read().split()[0])
        conns[side].execute("ROLLBACK")
        return (after - before) / MICRO_DECISIONS / 1000

    for conn in conns.values():
        conn.execute(MICRO_SETUP)
    results: dict[str, list[tuple[float, float]]] = {side: [] for side in SIDES}
    for r in range(rounds):
        for side in SIDES[r % 3 :] + SIDES[: r % 3]:
            used(side, MICRO_SINGLE)  # warm the backend's caches
            results[side].append((used(side, MICRO_SINGLE), used(side, MICRO_BATCH)))
    for side in SIDES:
        single = statistics.median(x[0] for x in results[side])
        batch = statistics.median(x[1] for x in results[side])
        rounds_ = " ".join(f"{x[0]:.0f}" for x in results[side])
        print(
            f"{side}: single append {single:6.1f} µs CPU/event, batch x{BATCH} {batch:6.1f} µs CPU/event  ({rounds_})"
        )
    return 0


def main(argv: list[str]) -> int:
    if argv[0] == "cpu":
        return cpu(argv[1], int(argv[2]) if len(argv) > 2 else 10)
    template = argv[0]
    prefix = argv[1]
    rounds = int(argv[2]) if len(argv) > 2 else 5
    seconds = float(argv[3]) if len(argv) > 3 else 8
    base = os.environ["DATABASE_URL"]
    urls = prepare(base, template, prefix)
    ids = {side: floor_decisions(url, "agent_bench_floor", 2 * CLIENTS + 1) for side, url in urls.items()}
    assert ids["A"] == ids["B"] == ids["C"]
    batch_did = (
        f"('TMEM_FLOOR' || lpad((:client_id + {CLIENTS})::int::text, 16, '0'))"  # decisions of their own
    )
    scripts: dict[str, tuple[str, int]] = {
        "append 16c": (append_script_per_client(ids["A"][:CLIENTS]), CLIENTS),
        f"batch x{BATCH} 16c": (PG_APPEND_BATCH.replace(":did", batch_did), CLIENTS),
        "append 1c": (PG_APPEND.replace(":did", f"'{ids['A'][2 * CLIENTS]}'"), 1),
    }
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r in range(rounds):
        for name, (script, clients) in scripts.items():
            for side in SIDES[r % 3 :] + SIDES[: r % 3]:
                result = pgbench(urls[side], script, clients, seconds, {})
                per = BATCH if name.startswith("batch") else 1
                result["events"] = result["rate"] * per
                results.setdefault((name, side), []).append(result)
                print(
                    f"round {r + 1} {name} {side}: {result['events']:.0f} events/s p50 {result['p50']:.2f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    print(
        f"{'operation':<18}"
        + "".join(f" {s + ' events/s':>11} {s + ' p50 ms':>9}" for s in SIDES)
        + "   B/A   C/A"
    )
    for name in scripts:
        med: dict[str, Any] = {
            side: (
                statistics.median(x["events"] for x in results[(name, side)]),
                statistics.median(x["p50"] for x in results[(name, side)]),
            )
            for side in SIDES
        }
        cells = "".join(f" {med[s][0]:>11.0f} {med[s][1]:>9.2f}" for s in SIDES)
        print(f"{name:<18}{cells} {med['B'][0] / med['A'][0]:>5.2f} {med['C'][0] / med['A'][0]:>5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
