"""The quick start's embedded default (SQLite under var/, tasks inline, email on the console),
exercised end to end in a subprocess, since the rest of the suite runs on PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_spec_story_runs_on_the_embedded_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(TRACEMEM_VAR_DIR=str(tmp_path / "var"), PYTHONPATH=str(ROOT))
    for step in (["manage.py", "migrate", "--noinput", "-v", "0"], ["manage.py", "seed_demo"]):
        done = _run(step, env)
        assert done.returncode == 0, done.stderr[-2000:]
    story = _run(["tests/embedded/story.py"], env)
    assert story.returncode == 0, story.stdout + story.stderr[-3000:]
    lines = story.stdout.splitlines()
    assert "evaluate requires_exception" in lines
    assert "approval pending delivered" in lines  # the inline task sent the email (console backend)
    assert "decision approved" in lines
    assert "write executed 1" in lines
    assert "close committed" in lines
    assert "secret stored False" in lines
    assert "receipt ed25519" in lines
    assert "Refactoring Approval Required" in story.stdout  # the approval email, printed to the console
    decision_id = next(line.split()[1] for line in lines if line.startswith("DECISION "))
    verified = _run(["manage.py", "verify_traces", "--decision", decision_id], env)
    assert verified.returncode == 0 and verified.stdout.startswith("OK"), verified.stdout + verified.stderr
    assert (tmp_path / "var" / "tracemem.sqlite3").exists()
    # SQLite has no roles, but the same triggers keep TraceMem's own code honest (docs/security.md §7).
    with closing(sqlite3.connect(tmp_path / "var" / "tracemem.sqlite3")) as db:
        for sql, refusal in (
            ("UPDATE decisions_traceevent SET payload = '{}'", "decisions_traceevent is append-only"),
            ("DELETE FROM decisions_receipt", "decisions_receipt is append-only"),
            ("UPDATE decisions_decision SET status = 'aborted' WHERE decision_id = ?", "row is frozen"),
            ("UPDATE policies_policyversion SET rules = '[]' WHERE status = 'published'", "is frozen"),
            ("UPDATE products_dataproduct SET source_table = 'auth_user'", "is published and frozen"),
            ("DELETE FROM products_dataproduct", "is published and frozen"),
            (
                "INSERT INTO audit_auditentry (seq, at, actor_kind, actor_id, actor_name, action, object_type, "
                "object_id, prev_hash, hash) VALUES (9999, '2026-01-01', 'system', 'system', 'system', 'x', 'x', "
                "'x', 'p', 'h')",
                "does not continue the audit log",
            ),
        ):
            with pytest.raises(sqlite3.DatabaseError, match=refusal):
                db.execute(sql, [decision_id] if "?" in sql else [])
