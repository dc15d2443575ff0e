"""The ``tracemem`` command line, run as a subprocess against the live server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from tracemem_client import Client

from tests.client_helpers import Seeded
from tests.conftest import require_service

pytest_plugins = ["tests.client_fixtures"]  # fixtures: seeded, agent_client
pytestmark = pytest.mark.django_db(transaction=True)

REPO = Path(__file__).resolve().parents[2]
CLIENT_SRC = REPO / "clients" / "python" / "src"


def tracemem(
    seeded: Seeded, *args: str, cwd: Path = REPO, pythonpath: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TRACEMEM_") and k != "PYTHONPATH"}
    environment.update(
        TRACEMEM_URL=seeded.url,
        TRACEMEM_API_KEY=seeded.key,
        TRACEMEM_TOKEN=seeded.token,
        PYTHONPATH=pythonpath if pythonpath is not None else f"{CLIENT_SRC}{os.pathsep}{REPO}",
    )
    environment.update(env)
    return subprocess.run(
        [sys.executable, "-m", "tracemem_client", *args],
        cwd=cwd,
        env={k: v for k, v in environment.items() if v != ""},
        capture_output=True,
        text=True,
        timeout=60,
    )


def closed_decision(agent_client: Client) -> str:
    with agent_client.decision(intent="code.refactor.execute", automation_mode="autonomous") as d:
        d.add_context({"step": "extracting_auth_logic"})
        d.evaluate("code_change_policy_v1", inputs={"change_type": "feature"})
    return d.decision_id


def test_decisions_show_and_trace(seeded: Seeded, agent_client: Client) -> None:
    decision_id = closed_decision(agent_client)

    shown = tracemem(seeded, "decisions", "show", decision_id)
    assert shown.returncode == 0, shown.stderr
    assert f"decision_id: {decision_id}\n" in shown.stdout and "status: committed\n" in shown.stdout
    as_json = tracemem(seeded, "--json", "decisions", "show", decision_id)
    assert json.loads(as_json.stdout) == agent_client.decision_get(decision_id)

    trace = tracemem(seeded, "decisions", "trace", decision_id)
    assert trace.returncode == 0, trace.stderr
    lines = trace.stdout.splitlines()
    assert lines[0] == f"{decision_id}  code.refactor.execute  committed"
    assert lines[1].split() == ["SEQ", "TIMESTAMP", "TYPE", "ACTOR", "PAYLOAD"]
    assert [line.split()[2] for line in lines[2:]] == ["created", "context", "evaluate", "close"]
    trace_json = json.loads(tracemem(seeded, "--json", "decisions", "trace", decision_id).stdout)
    assert trace_json["events"] == agent_client.decision_trace_all(decision_id)["events"]


def test_decisions_list_shows_the_agents_records(seeded: Seeded, agent_client: Client) -> None:
    record = agent_client.decision_record(
        "Adopt httpx", "dependency", "need HTTP", "httpx", "typed", tags=["http"]
    )
    listed = tracemem(seeded, "decisions", "list", "--tag", "http")
    assert listed.returncode == 0, listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["DECISION", "STATUS", "CATEGORY", "CREATED", "TITLE"]
    assert row.split()[:3] == [record["decision_id"], "committed", "dependency"]
    assert row.endswith("Adopt httpx")


def test_approvals_list_approve_and_reject(seeded: Seeded, agent_client: Client) -> None:
    first = agent_client.decision_create("code.refactor.execute", "propose")["decision_id"]
    second = agent_client.decision_create("code.refactor.execute", "propose")["decision_id"]
    approval_1 = agent_client.decision_request_approval(first, title="Refactoring Approval Required")[
        "approval_id"
    ]
    approval_2 = agent_client.decision_request_approval(second, title="Second")["approval_id"]

    listed = tracemem(seeded, "approvals", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert set(rows) == {approval_1, approval_2}
    assert rows[approval_1].split()[1:5] == ["pending", first, "code.refactor.execute", "demo-agent"]
    assert rows[approval_1].endswith("Refactoring Approval Required")

    approved = tracemem(seeded, "approvals", "approve", approval_1, "--rationale", "reviewed")
    assert (approved.returncode, approved.stdout) == (0, f"{approval_1}: approved (decision {first})\n")
    rejected = tracemem(seeded, "approvals", "reject", approval_2, "--rationale", "not now")
    assert rejected.stdout == f"{approval_2}: rejected (decision {second})\n"
    assert agent_client.decision_get(first)["approval_status"] == "approved"
    assert agent_client.decision_get(second)["approval_status"] == "rejected"
    assert tracemem(seeded, "approvals", "list").stdout.splitlines()[1:] == []
    everything = json.loads(tracemem(seeded, "--json", "approvals", "list", "--status", "all").stdout)
    assert {a["approval_id"]: a["status"] for a in everything["approvals"]} == {
        approval_1: "approved",
        approval_2: "rejected",
    }
    again = tracemem(seeded, "approvals", "approve", approval_1)
    assert again.returncode == 1 and again.stderr.startswith("tracemem: [")


def test_verify_checks_receipt_trace_and_keys_offline(
    seeded: Seeded, agent_client: Client, tmp_path: Path
) -> None:
    decision_id = closed_decision(agent_client)

    verified = tracemem(seeded, "verify", decision_id, "--save", str(tmp_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "\nOK: " in verified.stdout and "4 events" in verified.stdout
    assert f"keys: {seeded.url}/.well-known/tracemem/receipt-keys (pass --keys FILE" in verified.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json", "receipt.json", "trace.json"]
    offline = subprocess.run(
        [sys.executable, "-m", "tracemem_verify", str(tmp_path / "receipt.json"), "--trace",
         str(tmp_path / "trace.json"), "--keys", str(tmp_path / "keys.json")],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert offline.returncode == 0 and offline.stdout.startswith("OK: ")

    # Keys the auditor holds that did not sign this receipt: FAIL, exit 1.
    (tmp_path / "other-keys.json").write_text("[]")
    failed = tracemem(seeded, "verify", decision_id, "--keys", str(tmp_path / "other-keys.json"))
    assert failed.returncode == 1 and "FAIL: " in failed.stdout

    still_open = agent_client.decision_create("a.b.c", "autonomous")["decision_id"]
    refused = tracemem(seeded, "verify", still_open)
    assert refused.returncode == 1 and refused.stderr.startswith("tracemem: [invalid_state]")


def test_verify_without_the_offline_verifier_says_how_to_get_it(
    seeded: Seeded, agent_client: Client, tmp_path: Path
) -> None:
    decision_id = closed_decision(agent_client)
    result = tracemem(seeded, "verify", decision_id, cwd=tmp_path, pythonpath=str(CLIENT_SRC))
    assert result.returncode == 2
    assert "needs the offline verifier `tracemem_verify`" in result.stderr
    assert "PYTHONPATH=/path/to/tracemem" in result.stderr


def test_missing_settings_and_bad_keys_are_reported_plainly(seeded: Seeded) -> None:
    missing = tracemem(seeded, "decisions", "show", "TMEM_X", TRACEMEM_API_KEY="")
    assert missing.returncode == 2
    assert (
        missing.stderr == "tracemem: the agent key is not set: export TRACEMEM_API_KEY=… (or pass the flag)\n"
    )
    wrong = tracemem(seeded, "--api-key", "tmem_" + "x" * 40, "decisions", "show", "TMEM_X")
    assert wrong.returncode == 1 and wrong.stderr.startswith("tracemem: [unauthenticated]")
    no_token = tracemem(seeded, "approvals", "list", TRACEMEM_TOKEN="")
    assert no_token.returncode == 2 and "TRACEMEM_TOKEN" in no_token.stderr
    usage = tracemem(seeded, "decisions")
    assert usage.returncode == 2 and "usage: tracemem decisions" in usage.stderr


def test_the_console_script_is_installed(seeded: Seeded) -> None:
    script = Path(sys.executable).parent / "tracemem"
    require_service("the tracemem console script", script.exists(), "scripts/install.sh")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "decisions" in result.stdout and "approvals" in result.stdout


def test_the_package_builds_as_a_typed_wheel_with_its_entry_point(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path),
         str(REPO / "clients" / "python")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("tracemem_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        metadata = archive.read(next(n for n in names if n.endswith("METADATA"))).decode()
        assert "tracemem = tracemem_client.cli:main" in archive.read(entry_points).decode()
    assert "tracemem_client/py.typed" in names
    assert [line for line in metadata.splitlines() if line.startswith("Requires-Dist")] == [
        "Requires-Dist: httpx<1,>=0.23"
    ]
