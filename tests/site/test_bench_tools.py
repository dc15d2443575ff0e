"""The bench tools a newcomer runs after ``bench hotpath`` (issue 17): on a database that is not the
``<name>_hot_run`` a run leaves behind they stop with one line saying what to run first; and the
offline verifier's documented install includes orjson, pinned as the server pins it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fault_helpers import database_url

ROOT = Path(__file__).resolve().parents[2]


def _run_tool(database: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database}
    env.pop("MIGRATION_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _one_line_naming_the_run(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # one line, no traceback
    assert "python -m bench hotpath" in lines[0] and "_hot_run" in lines[0], lines[0]
    return lines[0]


def test_a_profile_tool_on_a_database_that_does_not_exist_says_what_to_run_first() -> None:
    missing = database_url().rsplit("/", 1)[0] + "/tm_no_such_database_for_bench"
    line = _one_line_naming_the_run(_run_tool(missing, "bench.profile_hotpath", "create", "5"))
    assert "tm_no_such_database_for_bench" in line


@pytest.mark.django_db
def test_a_profile_tool_on_a_database_without_the_bench_agent_says_what_to_run_first() -> None:
    line = _one_line_naming_the_run(_run_tool(database_url(), "bench.cpu_hotpath", "1", "1"))
    assert "has no bench-agent" in line


def test_the_request_loop_without_a_server_says_what_to_start() -> None:
    done = _run_tool(database_url(), "bench.request_loop", "http://127.0.0.1:9", "tmem_x", "create", "1")
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no server at http://127.0.0.1:9" in lines[0], done.stderr
    assert "scripts/serve.sh" in lines[0] and "_hot_run" in lines[0]


def test_the_verifier_install_names_orjson_pinned_as_the_server_pins_it() -> None:
    """tracemem_verify's documented install (its requirements.txt, README, docs/receipts.md) includes
    orjson, the encoder that keeps it above 50,000 events/s (docs/performance.md section 23), at
    the versions the server's pyproject pins."""
    import tomllib

    pins = {
        line.split("==")[0].split("[")[0]: line
        for line in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    }
    wanted = [line.strip() for line in (ROOT / "tracemem_verify/requirements.txt").read_text().splitlines()]
    wanted = [line for line in wanted if line and not line.startswith("#")]
    assert sorted(w.split("==")[0] for w in wanted) == ["cryptography", "orjson", "rfc8785"]
    for line in wanted:
        assert pins[line.split("==")[0]] == line
    for doc in ("README.md", "docs/receipts.md"):
        assert "pip install -r tracemem_verify/requirements.txt" in (ROOT / doc).read_text(), doc
