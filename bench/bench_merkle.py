"""Receipt-log proofs at server scale (goal: p50 <= 1 ms per proof generated in a 1,000,000-leaf log).

Contract of ``bench/``: ``run() -> list[dict]`` rows. Runs without a database: it measures
``tracemem_verify.merkle`` over a :class:`MemoryTree` (every perfect subtree stored, as a server
table of ``(level, index) -> hash`` would be) and counts the node reads each proof makes, which is
what a database-backed node source pays per proof. ``BENCH_MERKLE_LEAVES`` overrides the size.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from bench.common import measure
from tracemem_verify import merkle

GOAL_P50_MS = 1.0


def run(n: int = 2000) -> list[dict[str, Any]]:
    leaves = int(os.environ.get("BENCH_MERKLE_LEAVES", 1_000_000))
    started = time.perf_counter()
    tree = merkle.MemoryTree(merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(leaves))
    build_s = time.perf_counter() - started
    pick = random.Random(19)
    reads = {"max": 0}

    def counting(level: int, index: int) -> bytes:
        reads["n"] = reads.get("n", 0) + 1
        return tree.node(level, index)

    def inclusion() -> None:
        reads["n"] = 0
        merkle.inclusion_proof(pick.randrange(leaves), leaves, counting)
        reads["max"] = max(reads["max"], reads["n"])

    def consistency() -> None:
        reads["n"] = 0
        merkle.consistency_proof(pick.randrange(1, leaves), leaves, counting)
        reads["max"] = max(reads["max"], reads["n"])

    index = leaves // 3
    audit_path, root = tree.inclusion_proof(index), tree.root()
    old = leaves // 2 + 7
    proof, old_root = tree.consistency_proof(old), tree.root(old)
    rows: list[dict[str, Any]] = [
        {
            "name": "build_memory_tree",
            "leaves": leaves,
            "total_s": round(build_s, 2),
            "goal": "(setup)",
            "ok": "",
        }
    ]
    for name, fn, goal in (
        ("inclusion_proof", inclusion, True),
        ("consistency_proof", consistency, True),
        ("root_at_any_size", lambda: tree.root(pick.randrange(1, leaves)), False),
        (
            "verify_inclusion",
            lambda: merkle.verify_inclusion(index, leaves, tree.node(0, index), audit_path, root),
            False,
        ),
        ("verify_consistency", lambda: merkle.verify_consistency(old, leaves, old_root, root, proof), False),
    ):
        reads["max"] = 0
        row = {"name": name, "leaves": leaves, **measure(fn, n)}
        if goal:
            row.update(
                max_node_reads=reads["max"],
                goal=f"p50 <= {GOAL_P50_MS:g} ms",
                ok=row["p50_ms"] <= GOAL_P50_MS,
            )
        else:
            row.update(goal="(breakdown)", ok="")
        rows.append({**row, "load_avg_1m": round(os.getloadavg()[0], 2)})
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
