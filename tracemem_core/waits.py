"""Waiting for a decision to change, without a sleep loop and without holding a worker (issue 16).

``decision_wait`` must return within moments of the commit that resolves an approval, and 200 agents
waiting at once must not slow anyone else down. Three pieces:

* **Wake-ups come from the commit.** A trigger on ``decisions_decision`` (decisions migration 0006)
  sends ``NOTIFY tracemem_decision, '<decision_id>'`` when a decision's status or approval changes;
  PostgreSQL delivers it when that transaction commits. One thread per process LISTENs on one
  connection of its own (:class:`Hub`) and wakes the :class:`Subscription` of each waiter of that
  decision. When the listening connection is down (or the database is SQLite, which has no NOTIFY),
  waiters re-check every ``FALLBACK_SECONDS`` instead: slower, never stuck. Each (re)connection
  wakes every waiter once, since notifications sent while nobody listened are lost.
* **A waiter re-checks, it never trusts the message.** A notification only says "look again"; the
  door re-reads the decision (the same selector as ``decision_get``) and either answers or waits on.
  A subscription is taken *before* each check, so a commit between the check and the wait still
  wakes it.
* **Parking.** Under the production server (``tracemem_site.front``, see docs/mcp.md "decision_wait
  and the server"), a request that has to wait hands its subscription to the front's event loop
  (:func:`park`) and frees its worker thread at once; the front waits without a thread and replays
  the request when woken or at the deadline. Without the front (``runserver``, a plain WSGI server,
  the test server) the request waits in its thread (:meth:`Subscription.wait`).

The same listening connection serves other **channels** an app registers (:func:`on_channel`):
``agents.keycache`` forgets the keys it remembers on ``tracemem_credentials``. Such a handler is
called for each notification, and also on each (re)connection and each loss of the connection, since
notifications sent while nobody listened are lost.

This module is plumbing: it knows decision ids as strings and nothing of the apps.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

CHANNEL = "tracemem_decision"
LISTENER_NAME = "tracemem-wait-listener"
# How often a waiter re-checks while no notification can reach it (listener down, SQLite).
FALLBACK_SECONDS = 2.0
SQLITE_FALLBACK_SECONDS = 1.0
# The listening connection proves it is alive this often (a half-open TCP connection would
# otherwise leave every waiter on the fallback without anyone noticing).
HEALTH_CHECK_SECONDS = 20.0
RECONNECT_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)
# How often the listener looks up from its connection to see whether it should stop.
STOP_SECONDS = 1.0


# Other channels this process listens on, and what each notification (or a (re)connection, or the
# loss of the connection: ``None``) on them calls. Registered at import, before the listener starts.
_channels: dict[str, Callable[[str | None], None]] = {}


def on_channel(channel: str, handler: Callable[[str | None], None]) -> None:
    """Call ``handler(payload)`` on each notification on ``channel`` and ``handler(None)`` whenever
    some may have been missed (the listening connection (re)connected or was lost). A listener
    already connected picks the channel up when it next connects: register at import."""
    if not channel.isidentifier():
        raise ValueError(f"not a channel name: {channel!r}")
    _channels[channel] = handler


def _tell_channels(payload_by_channel: dict[str, str | None]) -> None:
    for channel, payload in payload_by_channel.items():
        handler = _channels.get(channel)
        if handler is not None:
            try:
                handler(payload)
            except Exception:  # a handler's failure must not stop the listener
                logger.exception("notification handler for %s failed", channel)


class Subscription:
    """Notifications for one decision since the last :meth:`clear`; waitable from a thread or a loop."""

    def __init__(self, hub: Hub, key: str, owner: str | None = None) -> None:
        self.hub, self.key, self.owner = hub, key, owner
        self._flag = threading.Event()
        self._lock = threading.Lock()
        self._loop_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self.closed = False

    def notify(self) -> None:
        self._flag.set()
        with self._lock:
            waiters, self._loop_waiters = self._loop_waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def clear(self) -> None:
        self._flag.clear()

    def _slice(self, seconds: float) -> float:
        return max(0.0, min(seconds, self.hub.fallback_seconds() or seconds))

    def wait(self, seconds: float) -> bool:
        """Block this thread until notified or ``seconds`` pass (less while on the fallback)."""
        return self._flag.wait(self._slice(seconds))

    async def wait_async(self, seconds: float) -> bool:
        """The same, in an event loop, holding no thread."""
        if self._flag.is_set():
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._loop_waiters.append((loop, future))
        if self._flag.is_set():  # notified between the check and the registration
            _resolve(future)
        try:
            await asyncio.wait_for(asyncio.shield(future), self._slice(seconds))
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._loop_waiters = [(lo, fu) for lo, fu in self._loop_waiters if fu is not future]
        return self._flag.is_set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub._unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class TooManyWaits(Exception):  # noqa: N818 - the door words it (a 429 there)
    """An owner already holds as many waits as it may."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit} waits at once")
        self.limit = limit


class Hub:
    """The process's one LISTEN connection and the subscriptions it wakes."""

    def __init__(self, connect: Callable[[], Any] | None = None) -> None:
        self._connect = connect or _django_listen_connection
        self._lock = threading.Lock()
        self._subscriptions: dict[str, set[Subscription]] = defaultdict(set)
        self._owned: dict[str, int] = defaultdict(int)
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()
        self._stopping = threading.Event()
        self._vendor: str | None = None

    # -- subscriptions --------------------------------------------------------------------
    def subscribe(self, key: str, owner: str | None = None, limit: int | None = None) -> Subscription:
        """A subscription to ``key``; at most ``limit`` at once for one ``owner`` (in this process:
        a waiting agent holds one for as long as its wait lasts, parked or not)."""
        self._ensure_listener()
        subscription = Subscription(self, key, owner)
        with self._lock:
            if owner is not None:
                if limit is not None and self._owned[owner] >= limit:
                    raise TooManyWaits(limit)
                self._owned[owner] += 1
            self._subscriptions[key].add(subscription)
        return subscription

    def _unsubscribe(self, subscription: Subscription) -> None:
        with self._lock:
            if subscription.owner is not None:
                self._owned[subscription.owner] -= 1
                if self._owned[subscription.owner] <= 0:
                    del self._owned[subscription.owner]
            waiting = self._subscriptions.get(subscription.key)
            if waiting is not None:
                waiting.discard(subscription)
                if not waiting:
                    del self._subscriptions[subscription.key]

    def waiting(self) -> int:
        with self._lock:
            return sum(len(s) for s in self._subscriptions.values())

    def dispatch(self, key: str) -> None:
        with self._lock:
            targets = list(self._subscriptions.get(key, ()))
        for subscription in targets:
            subscription.notify()

    def wake_all(self) -> None:
        with self._lock:
            targets = [s for subs in self._subscriptions.values() for s in subs]
        for subscription in targets:
            subscription.notify()

    def listening(self) -> bool:
        return self._listening.is_set()

    def fallback_seconds(self) -> float | None:
        """How long a waiter may sleep before re-checking by itself; None while notifications flow."""
        if self._listening.is_set():
            return None
        return SQLITE_FALLBACK_SECONDS if self._vendor not in (None, "postgresql") else FALLBACK_SECONDS

    # -- the listener ---------------------------------------------------------------------
    def _ensure_listener(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            from django.db import connections

            self._vendor = connections["default"].vendor
            if self._vendor != "postgresql":
                return  # SQLite: waiters use the fallback
            self._stopping.clear()
            self._thread = threading.Thread(target=self._run, name="tracemem-wait-listener", daemon=True)
            self._thread.start()

    def start(self) -> None:
        """Start listening in this process if nothing does (see :meth:`listening`)."""
        self._ensure_listener()

    def wait_until_listening(self, timeout: float) -> bool:
        self._ensure_listener()
        return self._listening.wait(timeout)

    def stop(self, join: float = 0) -> None:
        """Stop listening (the thread ends within ``STOP_SECONDS``; ``join`` waits for it)."""
        self._stopping.set()
        thread = self._thread
        if join and thread is not None:
            thread.join(join)

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                with self._connect() as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    channels = dict.fromkeys(_channels)
                    for channel in channels:
                        conn.execute(f"LISTEN {channel}")
                    _tell_channels(channels)  # whatever was sent while nobody listened
                    self._listening.set()
                    if failures:
                        logger.warning("decision_wait: listening for notifications again")
                    failures = 0
                    self.wake_all()  # whatever was sent while nobody listened
                    checked = time.monotonic()
                    while not self._stopping.is_set():
                        for note in conn.notifies(timeout=STOP_SECONDS):
                            if note.channel == CHANNEL:
                                self.dispatch(note.payload)
                            else:
                                _tell_channels({note.channel: note.payload})
                        if time.monotonic() - checked > HEALTH_CHECK_SECONDS:
                            conn.execute("SELECT 1")
                            checked = time.monotonic()
            except Exception as exc:  # any failure: fall back, reconnect with backoff
                was_listening = self._listening.is_set()
                self._listening.clear()
                _tell_channels(dict.fromkeys(_channels))
                self.wake_all()
                if was_listening or failures == 0:
                    logger.warning(
                        "decision_wait: cannot listen for notifications (%s); waiters re-check every %.0f s",
                        type(exc).__name__,
                        FALLBACK_SECONDS,
                    )
                delay = RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)]
                failures += 1
                self._stopping.wait(delay)
        self._listening.clear()
        _tell_channels(dict.fromkeys(_channels))


def _django_listen_connection() -> Any:
    """A connection of its own (autocommit) to the database Django uses, as the same role."""
    import psycopg
    from django.db import connections

    params = dict(connections["default"].get_connection_params())
    params.pop("cursor_factory", None)
    params.pop("prepare_threshold", None)  # only the hot statements are prepared (docs/performance.md §19)
    params["connect_timeout"] = params.get("connect_timeout") or 5
    params["application_name"] = LISTENER_NAME  # so operators can tell it in pg_stat_activity
    return psycopg.connect(autocommit=True, **params)


_hub: Hub | None = None
_hub_lock = threading.Lock()


def hub() -> Hub:
    global _hub
    if _hub is None:
        with _hub_lock:
            if _hub is None:
                _hub = Hub()
    return _hub


# --- parking: waiting in the front's event loop instead of a worker thread --------------------


@dataclass
class Parked:
    """What a door hands to the front: wait on ``subscription`` until ``wake_at`` (monotonic)."""

    subscription: Subscription
    wake_at: float
    deadline: float


@dataclass
class ParkingSlot:
    """Set by the front for the request it runs (a context variable: a client cannot forge it).
    ``deadline`` is the wait's deadline when the front replays a parked request."""

    deadline: float | None = None
    parked: Parked | None = field(default=None)


_slot: contextvars.ContextVar[ParkingSlot | None] = contextvars.ContextVar("tracemem_wait_slot", default=None)
# Set by a door that can answer a parked request with a placeholder (the REST view, the MCP fast
# path); a door that cannot (the stock MCP transport) waits in its thread even under the front.
_door_parks: contextvars.ContextVar[bool] = contextvars.ContextVar("tracemem_wait_door_parks", default=False)


def parking_slot() -> ParkingSlot | None:
    return _slot.get()


class _DoorParks:
    # A class, not @contextmanager: half the calls, on every MCP tool call (docs/performance.md §25).
    __slots__ = ("token",)

    def __enter__(self) -> None:
        self.token = _door_parks.set(True)

    def __exit__(self, *exc_info: object) -> None:
        _door_parks.reset(self.token)


def door_parks() -> _DoorParks:
    """Inside: the door answers a parked request with a placeholder (it can)."""
    return _DoorParks()


@contextmanager
def slot_for_request(slot: ParkingSlot) -> Iterator[ParkingSlot]:
    token = _slot.set(slot)
    try:
        yield slot
    finally:
        _slot.reset(token)


class ParkRequest(Exception):  # noqa: N818 - a signal to the door, not an error
    """Raised by a door's wait when the front will do the waiting; the door answers a placeholder."""


# --- the wait loop every door uses ------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True)
class Pending:
    """A check's answer when there is nothing to report yet: check again at ``wake_at`` (monotonic)
    or when notified; the wait ends at ``deadline``."""

    wake_at: float
    deadline: float


def wait_for(
    key: str,
    check: Callable[[float | None], T | Pending],
    *,
    owner: str | None = None,
    limit: int | None = None,
) -> T:
    """Run ``check(deadline)`` until it answers something other than :class:`Pending`.

    ``check`` gets ``None`` the first time (it computes the deadline from its timeout) and the
    deadline afterwards. Between checks this waits for a notification about ``key`` — in this
    thread, or, under the front, by parking (raises :class:`ParkRequest`). ``owner`` may hold at
    most ``limit`` waits at once (raises :class:`TooManyWaits`)."""
    slot = parking_slot()
    deadline = slot.deadline if slot is not None else None
    if not _door_parks.get():
        slot = None
    subscription = hub().subscribe(key, owner, limit)
    try:
        while True:
            subscription.clear()
            answer = check(deadline)
            if not isinstance(answer, Pending):
                return answer
            deadline = answer.deadline
            if slot is not None:
                slot.parked = Parked(subscription, answer.wake_at, answer.deadline)
                subscription = None  # type: ignore[assignment]  # the front owns it now
                raise ParkRequest()
            subscription.wait(answer.wake_at - time.monotonic())
    finally:
        if subscription is not None:
            subscription.close()
