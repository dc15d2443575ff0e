"""Verified agent keys, remembered per process so a request needs no database round trip to
authenticate (issue 17), and forgotten by every process at once when credentials change.

An entry maps the SHA-256 of a secret to the key and agent rows read when it was last checked in
the database. It is used only while the **credentials generation** in the shared cache (Redis) is
the one read *before* that database check. Expiry needs no invalidation: the entry keeps
``expires_at`` and every request compares it with the clock. Entries live in this process's memory
only; nothing about a key is ever stored in Redis.

Only a cache every process shares can tell one process of another's change: without one
(no ``REDIS_URL``, Django's per-process LocMemCache) nothing is remembered and every request checks
the database.

**A credentials change** (revoking or rotating a key, changing or disabling an agent, and any save
or delete of an agent or key through the admin site or a shell: ``agents/apps.py``) calls
:func:`invalidate_with_transaction` inside its transaction, which

1. *before the commit*, marks the generation "changing" (a negative number, which nothing is ever
   remembered under, for at most ``CHANGE_SECONDS``) and adds the change to the changes in flight,
   each with its own deadline (``CHANGE_SECONDS``; a change rolled back is taken out by its
   connection's next change, one abandoned elsewhere counts no more after its deadline). If the
   shared cache cannot be told, the change is refused with ``Unavailable`` (503), its transaction
   rolls back and **nothing is changed**: a revocation that the other processes might not hear of
   is not made.
2. *after the commit*, publishes a new random generation once no other change is in flight
   within its deadline. From
   then on every process checks the database again, and sees the committed change.

Between 1 and 2 no process remembers anything (a request then may read the rows as they were
before the change: they are used for that request only). If 2 fails (Redis went down after 1), the
marker stays and nobody remembers anything until it expires, then a reader starts a new random
generation. An entry is never used under a generation other than the one it was remembered under,
and a new generation is random (63 bits), never an old one again.

**Redis down** on the request path: nothing is trusted from memory, every request checks the
database, and this process forgets every entry it has (:func:`forget_local`), so nothing
remembered before an outage is trusted after it, even if Redis comes back with the generation it
had before (a restart with its data, a paused server, a network cut).

**The database tells every process too** (audit2 K1, K4): a change that goes through neither the
services nor a model's save — ``QuerySet.update()`` or ``delete()`` in a shell, SQL in psql, a
process without ``REDIS_URL`` (which tells Redis nothing) — sends no signal, so a trigger on
``agents_agent`` and ``agents_agentkey`` (agents migration 0004) sends ``NOTIFY
tracemem_credentials`` on any UPDATE (other than of ``last_used_at`` alone), DELETE or TRUNCATE.
The process's listening thread (``tracemem_core.waits``, started by its first request that checks a
key in the database) calls :func:`forget_local` on each such notification, and whenever it
connects, reconnects or loses its connection (notifications may have been missed). The window is
honest, not zero: such a change stops a remembered key when its notification is *handled* — at the
commit plus delivery latency (the listener thread must get the GIL), not at the commit. Nothing is
remembered while that thread does not listen (not yet connected, the database link down, SQLite),
and a key read in the database before a forgetting is not remembered after it (:func:`epoch`).

What remains: Redis *losing* acknowledged writes — a crash within its fsync interval (compose
runs it with ``appendonly``, fsync every second), a restore from an older snapshot, a fail-over to
a replica that had not received the marker — can bring back an old generation; a process that
never saw the outage (it served no request meanwhile) would then trust entries remembered under
it — unless the database's notification of the same change reached it, which it does whenever the
change committed while that process listened. ``MAX_AGE`` bounds that: no entry is used more than 60 seconds after its database check.
Operators who restore Redis or fail it over restart the web processes (docs/operations.md).

A request with a remembered key needs one round trip to Redis, shared with the rate limit
(:func:`confirm`): one script reads the generation and, only if it is still the one the key's rows
were checked under, counts the request in its agent's rate window.
"""

from __future__ import annotations

import copy
import secrets
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.cache import cache
from django.core.cache.backends.redis import RedisCache
from django.db import transaction
from django.db.models import Model
from django.db.models.base import ModelState

from agents.models import Agent, AgentKey
from tracemem_core import waits
from tracemem_core.errors import Unavailable
from tracemem_core.rate_limit import Counted, Window
from tracemem_core.redis_cache import default_backend, run_script
from tracemem_core.shared_cache import guarded, retry_seconds

GENERATION_KEY = "tracemem:credentials:generation"
# The changes between their steps 1 and 2: a sorted set of change ids (their markers), each scored
# by its own deadline (Redis's clock), so a change that never reaches step 2 (a rollback, a crash)
# holds back the others' publishing for CHANGE_SECONDS at most, not for as long as changes keep
# coming (audit2 K2: a counter leaked +1 per rollback). A new name: the old counter was a string.
CHANGING_KEY = "tracemem:credentials:changes"
MAX_AGE = 60.0
# How long a change's "changing" marker lasts without its publish (a rollback, a crash, Redis down
# after the commit); a change taking longer than this from its step 1 to its commit is not covered
# if its own publish then fails as well (MAX_AGE still bounds it).
CHANGE_SECONDS = 120
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
# How many times this process forgot its entries: a key read in the database before a forgetting is
# never remembered after it (:func:`epoch`, :func:`remember`).
_epoch = 0
CREDENTIALS_CHANNEL = "tracemem_credentials"  # agents migration 0004

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


def shared() -> bool:
    """Whether the default cache is shared by every process (Redis): only then is anything remembered."""
    return isinstance(default_backend(), RedisCache)  # the backend: ``cache`` is a proxy


def generation() -> str | None:
    """The current credentials generation, or None when nothing may be trusted or remembered: no
    shared cache, Redis down (then this process forgets its entries), or a change being committed."""
    if not shared():
        return None

    def read() -> str | None:
        value = cache.get(GENERATION_KEY)
        if type(value) is not int:
            # None after a flush or eviction (or a string an older version wrote): start a new
            # random generation, never an old one again.
            if value is None:
                cache.add(GENERATION_KEY, _new_generation(), timeout=None)
            else:
                cache.set(GENERATION_KEY, _new_generation(), timeout=None)
            value = cache.get(GENERATION_KEY)
        if type(value) is not int or value < 0:  # a change is between its steps 1 and 2
            return None
        return str(value)

    current = guarded("credentials_generation", read, fallback=_FALLBACK)
    if current is None:
        forget_local()
    return current


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
        return list(run_script(backend, _CONFIRM_AND_COUNT, keys, entry.generation, window.lifetime))

    found = guarded("credentials_generation", read_and_count, fallback=_FALLBACK)
    if found is None:  # Redis down: nothing remembered before the outage is trusted after it
        forget_local()
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


def epoch() -> int:
    """Read before a key's database check and given to :func:`remember`."""
    return _epoch


def remember(digest: str, key: AgentKey, current: str | None, read_in: int) -> None:
    """Keep a key checked in the database after generation ``current`` and :func:`epoch` ``read_in``
    were read: only while this process hears the database's notifications of credential changes,
    and only if it forgot nothing since ``read_in`` (a notification there may be about these rows)."""
    if current is None:
        return
    listener = waits.hub()
    listener.start()  # the first request of a process starts it; until it listens, nothing is kept
    if not listener.listening():
        return
    with _lock:
        if read_in != _epoch:
            return
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


# Step 1 of a change (module docstring). KEYS: the generation, the changes in flight; ARGV: a
# "changing" marker (negative; also the change's id), its lifetime, then the ids of changes this
# connection began in transactions that rolled back (they will never reach step 2).
_BEGIN_CHANGE = """
local now = tonumber(redis.call('TIME')[1])
for i = 3, #ARGV do redis.call('ZREM', KEYS[2], ARGV[i]) end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# Step 2, once the change committed: a new generation, unless another change is still in flight
# and within its deadline (its own step 2 publishes; until then its marker stays). ARGV: the new
# generation, then the ids of the changes that are over (this one; rolled-back ones).
_END_CHANGE = """
local now = tonumber(redis.call('TIME')[1])
for i = 2, #ARGV do redis.call('ZREM', KEYS[2], ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""

_REFUSED = (
    "the shared cache (Redis) is unavailable, so this change to an agent or its keys was not "
    "applied (nothing was changed): every web process must be told to stop trusting the keys it "
    "remembers before a revocation, rotation or agent change is committed. Retry after {} seconds"
)
_UNPUBLISHED = (
    "this change to an agent or its keys was applied (it was saved outside a transaction), but the "
    "shared cache (Redis) is unavailable, so the web processes could not be told: they may accept "
    "keys they remember for up to {} seconds. Save such changes through the services or the admin "
    "site, which refuse them while Redis is down"
)


def _script(script: str, *args: Any) -> Any:
    backend = default_backend()
    assert isinstance(backend, RedisCache)
    keys = [_full_key(backend, GENERATION_KEY), _full_key(backend, CHANGING_KEY)]

    def run() -> Any:
        return run_script(backend, script, keys, *args)

    found = guarded("credentials_generation", run, fallback=_FALLBACK)
    if found is None:
        forget_local()
    return found


def invalidate() -> bool:
    """Make every process check credentials in the database again: a new generation now (once no
    change is in flight). False when Redis could not be told."""
    if not shared():
        return True  # nothing is remembered anywhere
    change = _new_change()
    if _script(_BEGIN_CHANGE, change, CHANGE_SECONDS) is None:
        return False
    return _end_change(change)


def _new_change() -> int:
    """A change's id, which is also its "changing" marker: negative, random."""
    return -1 - secrets.randbits(62)


def _end_change(*changes: int) -> bool:
    return _script(_END_CHANGE, _new_generation(), *changes) is not None


class _Publish:
    """Step 2 of the change ``change``, run by the commit of the transaction that began it."""

    __slots__ = ("begun", "change")

    def __init__(self, change: int, begun: set[int]) -> None:
        self.change, self.begun = change, begun

    def __call__(self) -> None:
        # Redis failing here leaves the marker: nothing is remembered until it expires (module
        # docstring).
        self.begun.discard(self.change)
        _end_change(self.change)


# Per database connection, the changes it began whose transaction has not committed yet. Django runs
# no hook on a rollback, so a change found here with no commit hook waiting for it was rolled back:
# the connection's next change takes it out of the changes in flight (audit2 K2).
_begun: weakref.WeakKeyDictionary[Any, set[int]] = weakref.WeakKeyDictionary()


def invalidate_with_transaction() -> None:
    """Call inside the transaction that changes a key or an agent, before it commits: step 1 now
    (or ``Unavailable``, which rolls the change back), step 2 once it commits (module docstring)."""
    if not shared():
        return
    connection = transaction.get_connection()
    if not connection.in_atomic_block:  # a save outside any transaction has committed already
        if not invalidate():
            raise Unavailable(_UNPUBLISHED.format(int(MAX_AGE)), retry_after=_retry_after(), applied=True)
        return
    if any(isinstance(hook, _Publish) for _, hook, _ in connection.run_on_commit):
        return  # step 1 done already in this transaction; its step 2 is waiting for the commit
    begun = _begun.setdefault(connection, set())
    rolled_back = list(begun)  # begun on this connection, and no commit hook waits for them
    change = _new_change()
    if _script(_BEGIN_CHANGE, change, CHANGE_SECONDS, *rolled_back) is None:
        raise Unavailable(_REFUSED.format(_retry_after()), retry_after=_retry_after())
    begun.difference_update(rolled_back)
    begun.add(change)
    transaction.on_commit(_Publish(change, begun))


def _retry_after() -> int:
    return max(1, round(retry_seconds()))


def forget_local() -> None:
    """Drop this process's entries (Redis found down; a credentials notification; tests)."""
    global _epoch
    with _lock:
        _epoch += 1
        _entries.clear()


def _on_credentials_notice(payload: str | None) -> None:
    # A committed change of an agent or a key (any process, any role, SQL included), or the
    # listening connection (re)connected or was lost (some may have been missed).
    forget_local()


waits.on_channel(CREDENTIALS_CHANNEL, _on_credentials_notice)
