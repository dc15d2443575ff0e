"""Hot calls through the production front in one process, for counting what the server runs per call.

``DATABASE_URL=postgres://.../<copy of tracemem_hot_run> python -m bench.front_calls MODE OPERATION [N]``
sends N requests (OPERATION: ``create``, ``evaluate``, ``append``, ``get``, ``mcp``) to
``tracemem_site.front.application`` as uvicorn hands them over — the ASGI scope and body, on uvloop,
the front's thread pool, the agent door and the service, everything but uvicorn and the socket —
after 30 warm-up calls, with the bench's agent (a new key) and policy. MODE:

- ``time``: the process's CPU time per call (``time.process_time``), median of 10 rounds of N;
- ``cprofile``: cProfile's listing of the measured calls' CPU time (``time.thread_time``), the pool
  thread (the door) and the event loop thread each profiled (``PROFILE_SORT``, default ``tottime``; ``PROFILE_LINES``, default 40);
- ``exceptions``: every exception raised per call, by where it was raised (``sys.settrace``'s
  ``exception`` events, in the event loop thread and in the door), the most frequent first;
- ``callgrind``: under ``valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes``,
  instrumentation switched on for the measured calls only (a small library built with gcc from
  valgrind's ``callgrind.h``, called through ctypes); the instruction counts per thread are in the
  ``callgrind.out.*`` files (``bench.front_calls sum FILES...`` prints them per call with
  ``CALLS=N``). Instruction counts do not move with the load of a shared machine
  (docs/performance.md sections 18, 25, 27 and 30).

Rate limiting counts as in production (a limit never reached), Redis is ``REDIS_URL``'s.
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

WARMUP = 30


def _callgrind_switch() -> tuple[Callable[[], None], Callable[[], None]]:
    source = (
        "#include <valgrind/callgrind.h>\n"
        "void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }\n"
        "void cg_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }\n"
    )
    folder = Path(tempfile.mkdtemp(prefix="tracemem-cg-"))
    (folder / "cg.c").write_text(source)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", folder / "cg.so", folder / "cg.c"], check=True)
    lib = ctypes.CDLL(str(folder / "cg.so"))
    return lib.cg_start, lib.cg_stop


def requests(operation: str, did: str) -> Callable[[], tuple[str, str, bytes]]:
    from bench.common import tool_call

    create = json.dumps({"intent": "bench.run.measure", "automation_mode": "autonomous"}).encode()
    context = json.dumps({"context": {"step": "measuring", "n": 1}}).encode()
    evaluate = json.dumps({"policy_id": "bench_cap_v1", "inputs": {"amount": 5}}).encode()
    mcp = json.dumps(
        tool_call("decision_add_context", {"decision_id": did, "context": {"step": "measuring", "n": 1}})
    ).encode()
    table = {
        "create": ("POST", "/api/v1/decisions", create),
        "append": ("POST", f"/api/v1/decisions/{did}/context", context),
        "evaluate": ("POST", f"/api/v1/decisions/{did}/evaluate", evaluate),
        "get": ("GET", f"/api/v1/decisions/{did}", b""),
        "mcp": ("POST", "/mcp", mcp),
    }
    chosen = table[operation]
    return lambda: chosen


def main(argv: list[str]) -> int:
    if argv and argv[0] == "sum":
        return _sum(argv[1:])
    mode, operation = argv[0], argv[1]
    n = int(argv[2]) if len(argv) > 2 else 100
    start_cg, stop_cg = _callgrind_switch() if mode == "callgrind" else (None, None)

    from bench.common import bench_agent_client

    _, auth = bench_agent_client("front-calls")  # Django set up on DATABASE_URL, a new key
    import uvloop

    from tracemem_site import agent_door, front

    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"authorization", auth["HTTP_AUTHORIZATION"].encode()),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json, text/event-stream"),
        (b"user-agent", b"Python-urllib/3.11"),
    ]
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)

    def call(method: str, path: str, body: bytes) -> tuple[int, bytes]:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
            "scheme": "http",
            "method": method,
            "root_path": "",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [*headers, (b"content-length", str(len(body)).encode())] if body else headers,
            "state": {},
        }
        sent: list[dict[str, Any]] = []
        done = False

        async def receive() -> dict[str, Any]:
            nonlocal done
            if not done:
                done = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        loop.run_until_complete(front.application(scope, receive, send))
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    status, content = call("POST", "/api/v1/decisions", requests("create", "")()[2])
    assert status == 201, content
    did = json.loads(content)["decision_id"]
    one = requests(operation, did)
    expect = 201 if operation in ("create", "append") else 200

    def run(count: int) -> None:
        for _ in range(count):
            method, path, body = one()
            status, content = call(method, path, body)
            assert status == expect, content

    run(WARMUP)
    if mode == "time":
        per_call = []
        for _ in range(10):
            started = time.process_time()
            run(n)
            per_call.append((time.process_time() - started) / n * 1e6)
        print(f"{operation}: {statistics.median(per_call):.0f} µs CPU per call (rounds: {sorted(per_call)})")
    elif mode == "callgrind":
        assert start_cg is not None and stop_cg is not None
        start_cg()
        run(n)
        stop_cg()
        print(f"{operation}: {n} calls counted")
    elif mode == "cprofile":
        import cProfile
        import pstats

        # CPU time of the thread (each profile stays in its own thread), not the wall clock.
        door = cProfile.Profile(time.thread_time)
        loop_profile = cProfile.Profile(time.thread_time)
        real_answer = agent_door.answer

        def profiled_answer(*args: Any) -> Any:
            return door.runcall(real_answer, *args)

        agent_door.answer = profiled_answer  # type: ignore[assignment]
        loop_profile.enable()
        run(n)
        loop_profile.disable()
        agent_door.answer = real_answer  # type: ignore[assignment]
        sort, lines = os.environ.get("PROFILE_SORT", "tottime"), int(os.environ.get("PROFILE_LINES", 40))
        for name, profile in (("pool thread (the door)", door), ("event loop thread", loop_profile)):
            print(f"===== {name}, {n} calls")
            pstats.Stats(profile).sort_stats(sort).print_stats(lines)
    elif mode == "exceptions":
        raised: collections.Counter[str] = collections.Counter()

        def tracer(frame: Any, event: str, arg: Any) -> Any:
            if event == "exception":
                code = frame.f_code
                raised[f"{arg[0].__name__} at {code.co_filename}:{frame.f_lineno} ({code.co_name})"] += 1
            return tracer

        real_answer = agent_door.answer

        def traced_answer(*args: Any) -> Any:
            sys.settrace(tracer)
            try:
                return real_answer(*args)
            finally:
                sys.settrace(None)

        agent_door.answer = traced_answer  # type: ignore[assignment]
        sys.settrace(tracer)
        run(n)
        sys.settrace(None)
        agent_door.answer = real_answer  # type: ignore[assignment]
        total = sum(raised.values())
        print(f"{operation}: {total / n:.1f} exception events per call (each frame it passes through counts)")
        for where, count in raised.most_common(40):
            print(f"{count / n:6.1f}  {where}")
    else:
        raise SystemExit(f"unknown mode {mode}")
    front._pool.shutdown(wait=True)
    return 0


def _sum(files: list[str]) -> int:
    """Instructions per call in each ``callgrind.out`` file (one per thread), and their total."""
    calls = int(os.environ.get("CALLS", "100"))
    total = 0
    for name in files:
        count = 0
        for line in Path(name).read_text(errors="replace").splitlines():
            if line.startswith("totals:"):  # of a thread's file, dumped when the program ends
                count = int(line.split()[1])
                break
        total += count
        print(f"{name}: {count / calls:,.0f} per call")
    print(f"total: {total / calls:,.0f} instructions per call")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
