"""The gunicorn worker class of ``scripts/serve.sh``: uvicorn's, serving ``tracemem_site.front``.

Kept apart from ``front`` so that gunicorn's master can import it without loading Django.

``proxy_headers`` off: TraceMem reads ``X-Forwarded-For`` itself, behind exactly
``TRACEMEM_TRUSTED_PROXY_COUNT`` proxies (``tracemem_site.web``), and ``X-Forwarded-Proto`` only as
``DJANGO_SECURE_PROXY_SSL_HEADER`` says; uvicorn rewriting the client address first would make
those settings count one proxy twice. No ``Server`` header (nothing to fingerprint).
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker


class Worker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        **UvicornWorker.CONFIG_KWARGS,
        "proxy_headers": False,
        "server_header": False,
        # C parser and loop, never a silent fallback to h11 and asyncio's pure-Python loop, which
        # were most of the front's CPU per request (docs/performance.md).
        "http": "httptools",
        "loop": "uvloop",
    }
