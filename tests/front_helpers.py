"""One request through the production front (``tracemem_site.front.application``) in this process,
as uvicorn hands it over: the ASGI scope, the body in pieces, every message the front sends back.

The front runs Django (or the agent door) in its thread pool; tests using this need
``pytest.mark.django_db(transaction=True)`` so those threads see the test's rows."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import connections

from tracemem_site import front


@contextmanager
def own_pool(monkeypatch: Any) -> Iterator[concurrent.futures.ThreadPoolExecutor]:
    """The front's thread pool for one test: a single thread, its database connection closed after."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    monkeypatch.setattr(front, "_pool", pool)
    monkeypatch.setattr(front._streaming, "executor", pool)
    yield pool
    pool.submit(connections.close_all).result()
    pool.shutdown()


@dataclass
class Sent:
    """What the front sent: the status, the headers in order (repeats kept), the body, and how many
    body messages carried it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    body_messages: int


def through_front(
    method: str,
    path: str,
    body: bytes = b"",
    headers: list[tuple[str, str]] | None = None,
    *,
    query: str = "",
    scheme: str = "http",
    chunk: int = 0,
    content_length: bool = True,
) -> Sent:
    """``chunk``: send the body in pieces of that size; ``content_length`` False: no Content-Length
    header (a chunked upload, as uvicorn passes one on). A Host of ``testserver`` unless given."""
    headers = list(headers or [])
    names = {k.lower() for k, _ in headers}
    if "host" not in names:
        headers.insert(0, ("host", "testserver"))
    if body and content_length and "content-length" not in names:
        headers.append(("content-length", str(len(body))))
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk and body else [body]
    messages = [
        {"type": "http.request", "body": p, "more_body": i < len(pieces) - 1} for i, p in enumerate(pieces)
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 443 if scheme == "https" else 80),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(front.application(scope, receive, send))
    [start] = [m for m in sent if m["type"] == "http.response.start"]
    pieces_sent = [m for m in sent if m["type"] == "http.response.body"]
    assert sent[-1]["type"] == "http.response.body" and not sent[-1].get("more_body")
    return Sent(
        start["status"],
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in start["headers"]],
        b"".join(m.get("body", b"") for m in pieces_sent),
        len(pieces_sent),
    )
