"""Verified agent keys, remembered per process so a request needs no database round trip to
authenticate (issue 17), and forgotten by every process at once when credentials change.

An entry maps the SHA-256 of a secret to the key and agent rows read when it was last checked in
the database. It is used only while the **credentials generation** in the shared cache (Redis) is
the one read *before* that database check: revoking or rotating a key, and changing or disabling
an agent, set a new random generation once their transaction commits, so from the next request on
every web process checks the database again. Expiry needs no invalidation: the entry keeps
``expires_at`` and every request compares it with the clock.

When the shared cache is unreachable (or has no generation it can vouch for) nothing is trusted
from memory: every request checks the database, as without this cache. An entry is also never
used after ``MAX_AGE`` seconds, which bounds the one case the generation cannot cover (the shared
cache failing for the revoking process alone, at the moment it publishes the new generation).
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction

from agents.models import Agent, AgentKey
from tracemem_core.shared_cache import guarded

GENERATION_KEY = "tracemem:credentials:generation"
MAX_AGE = 60.0
MAX_ENTRIES = 10_000
_FALLBACK = "checking every agent key in the database"


@dataclass(frozen=True)
class _Entry:
    key: AgentKey
    agent: Agent
    generation: str
    stored: float


_entries: dict[str, _Entry] = {}
_lock = threading.Lock()


def generation() -> str | None:
    """The current credentials generation, or None when the shared cache cannot vouch for one."""

    def read() -> str:
        value = cache.get(GENERATION_KEY)
        if value is None:
            # None after a flush or eviction: start a new random generation, never an old one again.
            cache.add(GENERATION_KEY, secrets.token_hex(16), timeout=None)
            value = cache.get(GENERATION_KEY)
        return str(value)

    return guarded("credentials_generation", read, fallback=_FALLBACK)


def lookup(digest: str, current: str | None) -> tuple[Agent, AgentKey] | None:
    """Copies of the remembered rows of a key, if they are still good for generation ``current``."""
    if current is None:
        return None
    entry = _entries.get(digest)
    if entry is None or entry.generation != current or time.monotonic() - entry.stored > MAX_AGE:
        return None
    agent = copy.copy(entry.agent)
    key = copy.copy(entry.key)
    key._state = copy.copy(key._state)
    key._state.fields_cache = {"agent": agent}
    return agent, key


def remember(digest: str, key: AgentKey, current: str | None) -> None:
    """Keep a key checked in the database after generation ``current`` was read."""
    if current is None:
        return
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[digest] = _Entry(
            key=copy.copy(key), agent=copy.copy(key.agent), generation=current, stored=time.monotonic()
        )


def note_used(digest: str, key: AgentKey) -> None:
    """Mirror a refreshed ``last_used_at`` in the entry (it is a hint, not a credential)."""
    entry = _entries.get(digest)
    if entry is not None:
        entry.key.last_used_at = key.last_used_at


def invalidate() -> None:
    """Make every process check credentials in the database again (a new generation)."""
    guarded(
        "credentials_generation",
        lambda: cache.set(GENERATION_KEY, secrets.token_hex(16), timeout=None),
        fallback=_FALLBACK,
    )


def invalidate_with_transaction() -> None:
    """Call inside the transaction that changes a key or an agent: invalidates now, and again once
    it commits. The second is what counts in production (a request between the first and the
    commit may re-remember the old rows under the new generation); the first makes the change
    effective at once for whoever sees it uncommitted (its own connection, tests)."""
    invalidate()
    transaction.on_commit(invalidate)


def forget_local() -> None:
    """Drop this process's entries (tests)."""
    with _lock:
        _entries.clear()
