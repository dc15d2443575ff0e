"""``decision_wait`` on the production server (scripts/serve.sh: gunicorn, uvicorn workers, the asyncio
front of ``tracemem_site.front``): waiting requests hold no thread, so more waits than threads leave
other requests as fast as before, and each wait still returns on the approval's commit.
(The latency figure under 200 waits is a benchmark, not a test: bench/bench_wait.py.)"""

from __future__ import annotations

import concurrent.futures
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.decisions.test_wait import pending_decision, vote_later
from tests.fault_helpers import Process, free_port, process_env
from tests.mcp_helpers import mcp_call
from tracemem_site import demo

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 2


@pytest.fixture
def served(tmp_path: Path, redis_url: str) -> Any:
    [line] = [line for line in demo.seed() if "export TRACEMEM_API_KEY=" in line]
    key = line.split("=", 1)[1].strip()
    port = free_port()
    env = process_env(
        redis_url,
        TRACEMEM_HOST="127.0.0.1",
        TRACEMEM_PORT=str(port),
        TRACEMEM_WEB_WORKERS="1",
        TRACEMEM_WEB_THREADS=str(THREADS),
        TRACEMEM_VAR_DIR=str(tmp_path),
    )
    process = Process("serve.sh", tmp_path / "serve.log", env).start(ready="Application startup complete")
    url = f"http://127.0.0.1:{port}"
    yield url, key, process
    process.stop()


def test_more_waits_than_threads_leave_other_requests_fast_and_each_returns_on_its_commit(
    served: Any,
) -> None:
    url, key, process = served
    headers = {"Authorization": f"Agent {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
        decisions = [pending_decision(http) for _ in range(THREADS * 4)]

        def wait(decision_id: str) -> tuple[dict[str, Any], float]:
            with httpx.Client(base_url=url, headers=headers, timeout=60) as own:
                answer = own.get(f"/api/v1/decisions/{decision_id}/wait", params={"timeout_seconds": 30})
                return answer.json(), time.monotonic()

        with concurrent.futures.ThreadPoolExecutor(max_workers=len(decisions)) as pool:
            waiting = {decision_id: pool.submit(wait, decision_id) for decision_id in decisions}
            time.sleep(1.5)  # every wait has reached the server and parked
            assert not any(future.done() for future in waiting.values())
            for _ in range(10):  # with every thread's worth of waits parked, others are served at once
                started = time.monotonic()
                assert http.get(f"/api/v1/decisions/{decisions[0]}").status_code == 200
                assert time.monotonic() - started < 0.5
            # An MCP wait parks the same way: it times out on time while the REST waits go on.
            started = time.monotonic()
            is_error, timed_out = mcp_call(
                url, key, "decision_wait", {"decision_id": decisions[1], "timeout_seconds": 1}
            )
            assert is_error is False and timed_out["timed_out"] is True
            assert 1 <= time.monotonic() - started < 3

            thread, committed = vote_later(decisions[0], "approve", 0.0)
            thread.join(10)
            waited, returned = waiting[decisions[0]].result(timeout=10)
            assert (waited["timed_out"], waited["approval_status"]) == (False, "approved")
            assert returned - committed[0] < 1.0
            assert not any(waiting[d].done() for d in decisions[1:])
            for decision_id in decisions[1:]:
                http.post(f"/api/v1/decisions/{decision_id}/close", json={"action": "abort"})
            answers = [waiting[d].result(timeout=10)[0] for d in decisions[1:]]
    assert {(a["timed_out"], a["status"]) for a in answers} == {(False, "aborted")}
    assert "Traceback" not in process.text()
