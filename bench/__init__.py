"""Benchmarks: ``python -m bench`` (``make bench``) runs every ``bench/bench_*.py`` module.

Each module exposes ``run() -> list[dict]``; each row has at least ``bench`` and ``case`` and,
for latency rows, ``n``, ``p50_ms`` and ``p95_ms`` (extra keys become extra columns).
Call :func:`bench.common.django_setup` first to get Django on a throw-away benchmark database.
"""
