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

A request with a remembered key needs one round trip to Redis, shared with the rate limit
(:func:`confirm`): one script reads the generation and, only if it is still the one the key's rows
were checked under, counts the request in its agent's rate window.
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache
from django.db import transaction
from django.db.models import Model
from django.db.models.base import ModelState

from agents.models import Agent, AgentKey
from tracemem_core.rate_limit import Counted, Window
from tracemem_core.redis_cache import default_backend
from tracemem_core.shared_cache import guarded

GENERATION_KEY = "tracemem:credentials:generation"
MAX_AGE = 60.0
MAX_ENTRIES = 10_000
_FALLBACK = "checking every agent key in the database"


@dataclass(frozen=True)
class Entry:
    """A key's rows as checked in the database after ``generation`` was read (requests use copies)."""

    key: AgentKey
    agent: Agent
    generation: str
    stored: float


_entries: dict[str, Entry] = {}
_lock = threading.Lock()

# Atomic, so a request is counted only if the rows that authenticate it are current (a request that
# authentication then refuses must not spend the agent's budget). KEYS: the generation, the agent's
# rate window; ARGV: the generation of the remembered rows, the window key's lifetime.
_CONFIRM_AND_COUNT = """
local current = redis.call('GET', KEYS[1])
if current ~= ARGV[1] then return {current} end
local count = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {current, count}
"""


def _new_generation() -> int:
    # An integer, which Django's Redis cache stores as its digits (not pickled), so the script above
    # compares it as it is.
    return secrets.randbits(63)


def generation() -> str | None:
    """The current credentials generation, or None when the shared cache cannot vouch for one."""

    def read() -> str:
        value = cache.get(GENERATION_KEY)
        if type(value) is not int:
            # None after a flush or eviction (or a string an older version wrote): start a new
            # random generation, never an old one again.
            if value is None:
                cache.add(GENERATION_KEY, _new_generation(), timeout=None)
            else:
                cache.set(GENERATION_KEY, _new_generation(), timeout=None)
            value = cache.get(GENERATION_KEY)
        return str(value)

    return guarded("credentials_generation", read, fallback=_FALLBACK)


def recall(digest: str) -> Entry | None:
    """The remembered rows of a key, not yet known to be current (see :func:`confirm`)."""
    entry = _entries.get(digest)
    if entry is None or time.monotonic() - entry.stored > MAX_AGE:
        return None
    return entry


def confirm(entry: Entry | None, window: Window | None) -> tuple[str | None, Counted | None]:
    """The current generation (as :func:`generation`), and, when it is ``entry``'s and ``window`` is
    given, this request counted in ``window``, both in one round trip to Redis. Otherwise (another
    generation, no window, another cache backend, Redis down) nothing is counted here."""
    backend = default_backend()  # the backend itself: ``cache`` is a proxy, never a RedisCache
    if entry is None or window is None or not isinstance(backend, RedisCache):
        return generation(), None
    keys = [_full_key(backend, GENERATION_KEY), _full_key(backend, window.key)]

    def read_and_count() -> list[Any]:
        client = backend._cache.get_client(keys[0], write=True)
        return list(client.eval(_CONFIRM_AND_COUNT, 2, *keys, entry.generation, window.lifetime))

    found = guarded("credentials_generation", read_and_count, fallback=_FALLBACK)
    if found is None:
        return None, None
    if len(found) == 2:
        return entry.generation, Counted(window, int(found[1]))
    current = found[0]
    if not isinstance(current, bytes) or not current.isdigit():  # missing, or an older version's
        return generation(), None
    return current.decode(), None


def _full_key(backend: RedisCache, key: str) -> str:
    """The backend's name for ``key`` (prefix, version), checked once per process and window: Django's
    check walks the key character by character (8 µs a request for the two keys).

    Remembered by what the name depends on, never by the backend object: Django's cache handler is
    context-local and the front runs each request in a fresh context, so each request has a backend of
    its own; keyed by it, nothing was ever found again and the remembered names kept the last 512
    requests' backends alive (docs/performance.md)."""
    remembered = (backend.key_prefix, backend.version, backend.key_func, key)
    name = _full_keys.get(remembered)
    if name is None:
        name = backend.make_and_validate_key(key)
        if len(_full_keys) >= _FULL_KEYS_MAX:  # a new rate window each minute: forget the old ones
            _full_keys.clear()
        _full_keys[remembered] = name
    return name


_full_keys: dict[tuple[Any, ...], str] = {}
_FULL_KEYS_MAX = 1024


def copies(entry: Entry) -> tuple[Agent, AgentKey]:
    """Copies of the remembered rows, for one request to use (and change) as its own."""
    agent = _copy(entry.agent)
    key = _copy(entry.key)
    key._state.fields_cache = {"agent": agent}
    return agent, key


_Row = TypeVar("_Row", bound=Model)


def _copy(row: _Row) -> _Row:
    """What ``copy.copy`` makes of a model instance — its own attributes and its own ``_state`` with
    its own cache of related rows, the values shared — without the pickle protocol's detour (the
    model's ``__reduce__``, a look-up in the app registry, ``__setstate__``): 3 µs instead of 21,
    ~4 % of a create's instructions (docs/performance.md)."""
    clone = row.__class__.__new__(row.__class__)
    clone.__dict__.update(row.__dict__)
    state = clone._state = ModelState()
    state.__dict__.update(row._state.__dict__)
    state.fields_cache = dict(row._state.fields_cache)
    return clone


def remember(digest: str, key: AgentKey, current: str | None) -> None:
    """Keep a key checked in the database after generation ``current`` was read."""
    if current is None:
        return
    with _lock:
        if len(_entries) >= MAX_ENTRIES:
            _entries.clear()
        _entries[digest] = Entry(
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
        lambda: cache.set(GENERATION_KEY, _new_generation(), timeout=None),
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
