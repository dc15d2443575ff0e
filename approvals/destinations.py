"""Per-destination admission for delivery attempts: one bad receiver never stalls the others.

A destination is where a delivery goes: one webhook endpoint, one Slack integration, the SMTP
server. The deliveries worker sends from a pool of threads (``scripts/worker.sh``); without a gate,
a receiver that hangs would take one thread per queued delivery until the pool is gone and every
other receiver waits. So, per destination and per worker process:

* a destination that has not answered yet is **probed** one attempt at a time; the others wait a
  moment for the probe's answer (a healthy receiver answers in milliseconds) and then proceed;
* a destination that answers takes up to ``TRACEMEM_DELIVERY_DESTINATION_SLOTS`` attempts at once;
* a destination whose last attempt failed (error, timeout, hang-up) is **failing**: one attempt at
  a time, and the rest are deferred at once (never waited for), so it holds one thread at most.

An attempt that is not admitted is *deferred*: not sent, not counted as an attempt, re-queued
(``delivery_defer`` in the services). The state is per process, like the thread pool it protects.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

UNKNOWN, HEALTHY, FAILING = "unknown", "healthy", "failing"


@dataclass
class _Destination:
    health: str = UNKNOWN
    in_flight: int = 0


class Gate:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._destinations: dict[str, _Destination] = {}

    def enter(self, key: str, *, slots: int, wait_seconds: float) -> bool:
        """Take a slot for one attempt to ``key`` (True), or say to defer it (False)."""
        deadline = time.monotonic() + wait_seconds
        with self._changed:
            destination = self._destinations.setdefault(key, _Destination())
            while True:
                limit = slots if destination.health == HEALTHY else 1
                if destination.in_flight < limit:
                    destination.in_flight += 1
                    return True
                remaining = deadline - time.monotonic()
                if destination.health == FAILING or remaining <= 0:
                    return False
                self._changed.wait(remaining)

    def leave(self, key: str, *, ok: bool | None) -> None:
        """Give the slot back; ``ok`` is the attempt's outcome (None: nothing was sent)."""
        with self._changed:
            destination = self._destinations.setdefault(key, _Destination())
            destination.in_flight = max(0, destination.in_flight - 1)
            if ok is not None:
                destination.health = HEALTHY if ok else FAILING
            self._changed.notify_all()

    def health(self, key: str) -> str:
        with self._changed:
            return self._destinations.get(key, _Destination()).health


gate = Gate()


def destination_key(channel: str, target: Mapping[str, Any]) -> str:
    """Which destination a delivery goes to, from its route channel entry."""
    if channel == "webhook":
        return f"webhook:{target.get('endpoint') or ''}"
    if channel == "slack":
        return f"slack:{target.get('integration') or ''}"
    return channel  # email: every message goes through the one SMTP server
