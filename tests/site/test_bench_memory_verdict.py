"""``bench hotpath``'s memory verdict (issue 17): a worker whose memory keeps growing round after round
is called growing; one that reached its high-water mark in the first round and stays there is called
flat. The series are each worker's peak resident memory in each round, in KiB, one list per round
with a value per web worker, as ``bench_hotpath.worker_peak_kib`` reads them."""

from __future__ import annotations

import random
from collections.abc import Sequence

from bench.bench_hotpath import MEMORY_MIN_ROUNDS, memory_verdict

MIB = 1024


def rounds(*workers: Sequence[float]) -> list[list[int]]:
    """Per-worker series of MiB → the benchmark's per-round lists of KiB."""
    return [[int(w[i] * MIB) for w in workers] for i in range(len(workers[0]))]


FLAT_WORKER = [164, 165, 165, 165, 166, 166, 166, 166, 167]


def test_a_steady_leak_is_growing() -> None:
    leaking = [187 + 3 * i for i in range(9)]  # 3 MiB a round, every round
    verdict = memory_verdict(rounds(leaking, FLAT_WORKER))
    assert verdict.startswith("MEMORY GROWING"), verdict
    assert "worker 1" in verdict


def test_a_slow_leak_under_noise_is_growing() -> None:
    """2 MiB a round with ±2 MiB of round-to-round noise: still a leak, still called one."""
    noise = random.Random(17)
    for _ in range(200):
        leaking = [190 + 2 * i + noise.uniform(-2, 2) for i in range(9)]
        verdict = memory_verdict(rounds(FLAT_WORKER, leaking))
        assert verdict.startswith("MEMORY GROWING"), (leaking, verdict)
        assert "worker 2" in verdict


def test_a_leak_in_the_second_worker_is_not_hidden_by_a_flat_first() -> None:
    leaking = [166 + 2 * i for i in range(12)]
    assert memory_verdict(rounds(FLAT_WORKER + [167] * 3, leaking)).startswith("MEMORY GROWING")


def test_a_high_water_mark_set_in_the_first_round_is_flat() -> None:
    """Measured (docs/performance.md section 21): the peaks of the worker serving the 828 KB
    trace reads, with MALLOC_ARENA_MAX=2, rounds 1–9."""
    plateau = [199, 198, 199, 199, 200, 200, 200, 200, 199]
    assert memory_verdict(rounds(plateau, [153, 153, 154, 154, 154, 155, 155, 155, 155])).startswith(
        "ok, memory flat"
    )


def test_an_allocator_still_filling_its_arenas_is_growing() -> None:
    """Measured in the same run without the arena cap: nine arenas each reaching its own high-water
    mark, one after the other, still rising by round 9 — growth, and called so."""
    filling = [212, 228, 231, 233, 227, 237, 243, 240, 242]
    assert memory_verdict(rounds(filling, FLAT_WORKER)).startswith("MEMORY GROWING")


def test_a_plateau_with_noise_is_flat_whatever_the_noise_draws() -> None:
    noise = random.Random(18)
    for _ in range(200):
        plateau = [165] + [190 + noise.uniform(-2, 2) for _ in range(8)]
        verdict = memory_verdict(rounds(plateau, FLAT_WORKER))
        assert verdict.startswith("ok, memory flat"), (plateau, verdict)


def test_too_few_rounds_cannot_tell_either_way() -> None:
    """The report that opened this investigation: three rounds, 187 → 202 → 198 MiB. From three
    points a high-water mark and a leak look the same; the verdict says so instead of guessing."""
    reported = rounds([187, 202, 198], [164, 164, 164])
    assert len(reported) < MEMORY_MIN_ROUNDS
    verdict = memory_verdict(reported)
    assert not verdict.startswith(("ok", "MEMORY GROWING")), verdict
    assert "rounds" in verdict
