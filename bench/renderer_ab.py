"""DRF's ``JSONRenderer`` (``json``) against ``tracemem_site.renderers.FastJSONRenderer`` (orjson), in-process.

``python -m bench.renderer_ab [ROUNDS=15]`` renders, alternately, a 1,000-event trace page as dicts
(``event_as_dict``'s shape, bench_hotpath's payloads) and a ``decision_create`` answer (the
``decision_get`` object), with each renderer, and prints the median CPU time (``time.process_time``)
per render of each and their ratio; it checks both write the same bytes first. No database
(docs/performance.md section 6).
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any


def page() -> dict[str, Any]:
    from bench.bench_hotpath import TRACE_EVENTS, context_of

    events = [
        {
            "decision_id": "TMEM_01JDX5Q8Y3K2M7N4P6R8S0T2V4",
            "event_id": f"evt_01JDX5Q8Y3K2M7N4P6R8S{i:07d}",
            "seq": i + 1,
            "type": "context",
            "timestamp": "2026-11-28T09:00:00.123456Z",
            "actor": {"kind": "agent", "id": "agent_01JDX5Q8Y3K2M7N4P6R8S0T2V4", "name": "bench-agent"},
            "payload": {"context": context_of(i)},
            "prev_hash": f"{i:064x}",
            "hash": f"{i + 1:064x}",
        }
        for i in range(TRACE_EVENTS)
    ]
    return {"decision_id": "TMEM_01JDX5Q8Y3K2M7N4P6R8S0T2V4", "events": events, "next_after_seq": None}


def create_answer() -> dict[str, Any]:
    created = datetime(2026, 11, 28, 9, 0, 0, 123456, tzinfo=UTC)
    return {
        "decision_id": "TMEM_01JDX5Q8Y3K2M7N4P6R8S0T2V4",
        "intent": "bench.run.measure",
        "status": "open",
        "automation_mode": "autonomous",
        "actor": "agent_01JDX5Q8Y3K2M7N4P6R8S0T2V4",
        "instance": None,
        "agent_id": "agent_01JDX5Q8Y3K2M7N4P6R8S0T2V4",
        "created_at": created,  # a datetime, as the serializer hands it to the renderer
        "closed_at": None,
        "approval_required": False,
        "approval_status": None,
        "pending_approval_id": None,
        "event_count": 1,
        "trace_head": "a" * 64,
    }


def main(argv: list[str]) -> int:
    rounds = int(argv[0]) if argv else 15
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracemem_site.settings")
    import django

    django.setup()
    from rest_framework.renderers import JSONRenderer

    from tracemem_site.renderers import FastJSONRenderer

    renderers = {"json (DRF)": JSONRenderer(), "orjson (Fast)": FastJSONRenderer()}
    for name, data, calls in (("1,000-event page", page(), 20), ("create answer", create_answer(), 5000)):
        texts = {label: r.render(data) for label, r in renderers.items()}
        same = len(set(texts.values())) == 1
        times: dict[str, list[float]] = {label: [] for label in renderers}
        for i in range(rounds):
            order = list(renderers.items()) if i % 2 == 0 else list(reversed(renderers.items()))
            for label, renderer in order:
                started = time.process_time()
                for _ in range(calls):
                    renderer.render(data)
                times[label].append((time.process_time() - started) / calls * 1e6)
        medians = {label: statistics.median(t) for label, t in times.items()}
        slow, fast = medians["json (DRF)"], medians["orjson (Fast)"]
        print(
            f"{name} ({len(texts['json (DRF)']):,} bytes, same bytes: {same}): "
            f"json {slow:,.1f} us, orjson {fast:,.1f} us per render, {slow / fast:.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
