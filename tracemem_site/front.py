"""The production web server's application: Django (WSGI, in a fixed pool of threads) behind a small
asyncio front that waits for ``decision_wait`` without holding any thread.

Why (issue 16, docs/mcp.md "decision_wait and the server"): a wait lasts up to 50 s. Under a
thread-per-request server (gunicorn gthread: 2 workers × 8 threads) sixteen waiting agents would
hold every thread and everyone else would queue behind them. Running all of Django under ASGI
instead would put every request on a new thread with a new database connection. So Django stays
exactly as it is — synchronous views on a fixed pool of threads (a2wsgi's, ``TRACEMEM_WEB_THREADS``),
keeping their persistent database connections — and this front, run by uvicorn workers under
gunicorn (scripts/serve.sh), does one more thing than pass requests through:

A request that may wait (``GET /api/v1/decisions/{id}/wait``, ``POST /mcp``) runs with a
:class:`~tracemem_core.waits.ParkingSlot` in its context. If the decision is still pending, the
door (REST view or MCP fast path) does not block: it hands its subscription to the slot and
returns a placeholder at once, freeing its thread. The front drops the placeholder, awaits the
subscription in the event loop (a wake-up from the approval's commit, the approval's expiry, or
the deadline) and then replays the same request with the deadline in the slot; the door looks
again and answers or parks again. Every look is a full pass through Django (authentication,
permissions, the same selector as ``decision_get``), so nothing about the answer is decided here.
A client that disconnects while parked ends its wait.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import build_environ
from django.conf import settings

from tracemem_core import waits
from tracemem_site import agent_door
from tracemem_site.wsgi import application as django_wsgi  # Django, wrapped by OpenTelemetry when set

logger = logging.getLogger(__name__)

WAIT_PATH = re.compile(r"^/api/v1/decisions/[^/]+/wait/?$")
MCP_PATH = "/mcp"
THREADS = int(os.environ.get("TRACEMEM_WEB_THREADS") or 8)

# Typed loosely: a2wsgi's ASGI types are stricter than the plain dicts passed around here.
# a2wsgi serves what does not fit in memory (a body over the upload limit, a response over
# BUFFER_LIMIT); its thread pool is the one every request runs on.
_streaming: Any = WSGIMiddleware(django_wsgi, workers=THREADS)  # type: ignore[arg-type]
_pool = _streaming.executor

_T = TypeVar("_T")

# A response up to this size is sent whole once Django is done; a larger one piece by piece.
BUFFER_LIMIT = 4 * 1024 * 1024


class _Answer:
    """One pass of Django in a pool thread, held whole: status, headers, body pieces, and — when the
    body outgrew BUFFER_LIMIT — the rest of Django's iterable, still open."""

    def __init__(self) -> None:
        self.status = 500
        self.headers: list[tuple[bytes, bytes]] = []
        self.pieces: list[bytes] = []
        self.rest: Iterator[bytes] | None = None
        self.iterable: Any = None

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(k.strip().lower().encode("latin1"), v.strip().encode("latin1")) for k, v in headers]
        return self.pieces.append  # WSGI's write(): nothing here uses it, but it must work

    def run(self, environ: dict[str, Any]) -> None:
        self.iterable = django_wsgi(environ, self.start_response)
        chunks = iter(self.iterable)
        size = sum(len(p) for p in self.pieces)
        for piece in chunks:
            self.pieces.append(piece)
            size += len(piece)
            if size > BUFFER_LIMIT:
                self.rest = chunks
                return
        self.close()

    def close(self) -> None:
        # Django's close() sends request_finished (its connection housekeeping) in this thread.
        getattr(self.iterable, "close", lambda: None)()


async def _in_pool(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` in a pool thread, in a copy of this context (waits.slot_for_request relies on
    it): what ``loop.run_in_executor`` does, without its second future chained to the pool's
    (``wrap_future``: the state copied across by callbacks, a check that ``fn`` is not a coroutine
    function), ~30 % of the trip's CPU (docs/performance.md). Cancelled before it starts, it never
    runs, as there."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()
    context = contextvars.copy_context()

    def run() -> None:
        try:
            result = context.run(fn, *args)
        except BaseException as exc:  # as the pool's own future would hold it
            loop.call_soon_threadsafe(_settle, future, None, exc)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    work = _pool.submit(run)
    try:
        return await future
    except asyncio.CancelledError:
        work.cancel()
        raise


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is None:
        future.set_result(result)
    else:
        future.set_exception(exc)


def _next_piece(answer: _Answer) -> bytes | None:
    try:
        return next(answer.rest) if answer.rest is not None else None
    except StopIteration:
        return None
    except BaseException:
        answer.close()
        raise


async def _django(scope: dict[str, Any], receive: Any, send: Any, *, door: bool = True) -> None:
    """Django for one request: the body read here first, then one trip into a pool thread and back.
    ``door``: whether the agent door may answer it (False: it declined already).

    a2wsgi alone crossed between the loop and the thread for the body and for each part of the
    response, and each crossing waits for the other thread to get the GIL (docs/performance.md).
    """
    body, complete = await _read_body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if not complete:  # too large or cut short: streamed as it comes, and Django answers it
        await _streaming(scope, _Replay(body, complete, receive), send)
        return
    if door and await _door(scope, body, send):
        return
    environ: Any = build_environ(scope, io.BytesIO(body))  # type: ignore[arg-type]
    answer = _Answer()
    # The request's context goes with it into the thread (waits.slot_for_request relies on it).
    await _in_pool(answer.run, environ)
    await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
    if answer.rest is None:
        await send({"type": "http.response.body", "body": b"".join(answer.pieces)})
        return
    loop = asyncio.get_running_loop()
    try:
        await send({"type": "http.response.body", "body": b"".join(answer.pieces), "more_body": True})
        while (piece := await loop.run_in_executor(_pool, _next_piece, answer)) is not None:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
    finally:
        await loop.run_in_executor(_pool, answer.close)


async def _door(scope: dict[str, Any], body: bytes, send: Any) -> bool:
    """An agent's hot call, answered by the agent door without Django's middleware and DRF, and
    sent; False when the door does not answer it (Django does)."""
    call = agent_door.route(scope, body)
    if call is None:
        return False
    answered = await _in_pool(agent_door.answer, call, body)
    if answered is None:
        return False
    status, headers, content = answered
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
    return True


def _may_wait(scope: dict[str, Any]) -> bool:
    path, method = scope.get("path", ""), scope.get("method", "")
    return (method == "GET" and WAIT_PATH.match(path) is not None) or (method == "POST" and path == MCP_PATH)


async def _read_body(receive: Any, limit: int) -> tuple[bytes, bool]:
    """The whole body, or what was read up to ``limit`` and False (then it is passed on as is)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), False
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body"):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


class _Replay:
    """``receive`` for one pass through Django: the buffered body, then the client's own messages."""

    def __init__(self, body: bytes, complete: bool, receive: Any) -> None:
        self.body, self.complete, self.receive, self.sent = body, complete, receive, False

    async def __call__(self) -> dict[str, Any]:
        if not self.sent:
            self.sent = True
            return {"type": "http.request", "body": self.body, "more_body": not self.complete}
        return await self.receive()


class _Gate:
    """``send`` for one pass: forwards the response unless the pass parked (then drops it)."""

    def __init__(self, send: Any, slot: waits.ParkingSlot) -> None:
        self.send, self.slot = send, slot

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.slot.parked is None:
            await self.send(message)


async def _wait_parked(parked: waits.Parked, receive: Any) -> bool:
    """Wait in this loop until woken or ``wake_at``; False if the client went away meanwhile."""
    disconnect = asyncio.ensure_future(receive())
    woken = asyncio.ensure_future(parked.subscription.wait_async(parked.wake_at - time.monotonic()))
    try:
        done, _ = await asyncio.wait({disconnect, woken}, return_when=asyncio.FIRST_COMPLETED)
        if disconnect in done and disconnect.result().get("type") == "http.disconnect":
            return False
        if woken not in done:
            await woken
        return True
    finally:
        for task in (disconnect, woken):
            if not task.done():
                task.cancel()
        parked.subscription.close()


async def _serve_waitable(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body, complete = await _read_body(receive, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if not complete:  # too large or cut short: Django answers it, without parking
        await _streaming(scope, _Replay(body, complete, receive), send)
        return
    # The agent door's calls never wait (an MCP tools/call of a hot tool): answered without the
    # parking slot, the replay and the gate (docs/performance.md §25).
    if await _door(scope, body, send):
        return
    deadline: float | None = None
    while True:
        slot = waits.ParkingSlot(deadline=deadline)
        with waits.slot_for_request(slot):  # a2wsgi copies this context into the Django thread
            await _django(scope, _Replay(body, True, receive), _Gate(send, slot), door=False)
        if slot.parked is None:
            return
        deadline = slot.parked.deadline
        if not await _wait_parked(slot.parked, receive):
            return


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            waits.hub().stop()
            await send({"type": "lifespan.shutdown.complete"})
            return


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http" and _may_wait(scope):
        await _serve_waitable(scope, receive, send)
    else:
        await _django(scope, receive, send)
