"""Policy evaluation time per call, with the compiled program cached (goal: p50 <= 20 µs).

Contract of ``bench/``: ``run() -> list[dict]`` rows. Runs without a database: it measures
``policies.engine`` exactly as ``decision_evaluate`` calls it (cache lookup by hash, schema
check, variable conversion, rules in order).
"""

from __future__ import annotations

import os
import statistics
import time
from datetime import UTC, datetime
from typing import Any

GOAL_P50_US = 20.0

CODE_POLICY: dict[str, Any] = {
    "inputs_schema": {
        "type": "object",
        "properties": {"change_type": {"type": "string"}, "component": {"type": "string"}},
        "required": ["change_type"],
    },
    "rules": [
        {"name": "destructive", "when": 'inputs.change_type in ["delete", "schema_drop"]', "outcome": "deny"},
        {"name": "refactor", "when": 'inputs.change_type == "refactor"', "outcome": "requires_exception"},
        {"name": "routine", "when": 'inputs.change_type in ["bugfix", "feature"]', "outcome": "allow"},
    ],
    "default_outcome": "deny",
}

CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("policy_eval_3_rules_schema", CODE_POLICY, {"change_type": "refactor", "component": "user-service"}),
    (
        "policy_eval_3_rules_no_schema",
        {**CODE_POLICY, "inputs_schema": None},
        {"change_type": "feature", "component": "user-service"},
    ),
    (
        "policy_eval_decision_and_now",
        {
            "rules": [
                {
                    "name": "office_hours_propose",
                    "when": 'decision.automation_mode == "propose" && now.getHours() < 24 && inputs.amount < 100',
                    "outcome": "allow",
                }
            ]
        },
        {"amount": 10},
    ),
]


def _measure(name: str, content: dict[str, Any], inputs: dict[str, Any], n: int) -> dict[str, Any]:
    from policies import engine

    decision = {"intent": "code.refactor.execute", "automation_mode": "propose", "actor": "a", "metadata": {}}
    key = f"bench-{name}"
    engine.compiled_for(key, content)  # compile once, as publishing does
    samples: list[float] = []
    for _ in range(n):
        start = time.perf_counter_ns()
        compiled = engine.compiled_for(key, content)
        engine.evaluate(compiled, inputs=inputs, decision=decision, now=datetime.now(UTC))
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    p50 = statistics.median(samples)
    return {
        "name": name,
        "n": n,
        "p50_us": round(p50, 2),
        "p95_us": round(samples[int(n * 0.95) - 1], 2),
        "goal": f"p50 <= {GOAL_P50_US:g} µs",
        "ok": p50 <= GOAL_P50_US,
        # Other work on the machine inflates the numbers; the load says how much to trust them.
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def _rules_only(n: int) -> dict[str, Any]:
    """The three rules against an already-converted context: what CEL itself costs.

    Not the goal's measure (that is the full call above); it shows where the time goes: the
    binding's Python → CEL value conversion (several µs per map or string) dominates.
    """
    import cel

    from policies import engine

    compiled = engine.compile_policy({**CODE_POLICY, "inputs_schema": None})
    inputs = {"change_type": "feature", "component": "user-service"}
    keys = compiled.fields["inputs"] or inputs.keys()
    variables = (
        {engine.flat_name("inputs", k): inputs[k] for k in keys if k in inputs}
        if "inputs" in compiled.flat
        else {"inputs": inputs}
    )
    context = cel.Context(variables=variables)
    samples: list[float] = []
    for _ in range(n):
        start = time.perf_counter_ns()
        for rule in compiled.rules:
            if rule.program.execute(context) is True:
                break
        samples.append((time.perf_counter_ns() - start) / 1000)
    samples.sort()
    return {
        "name": "policy_rules_only_no_conversion",
        "n": n,
        "p50_us": round(statistics.median(samples), 2),
        "p95_us": round(samples[int(n * 0.95) - 1], 2),
        "goal": "(breakdown)",
        "ok": "",
        "load_avg_1m": round(os.getloadavg()[0], 2),
    }


def run(n: int = 5000) -> list[dict[str, Any]]:
    return [*(_measure(name, content, inputs, n) for name, content, inputs in CASES), _rules_only(n)]


if __name__ == "__main__":
    for row in run():
        print(row)
