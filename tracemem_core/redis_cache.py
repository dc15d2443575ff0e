"""Django's Redis cache with one connection pool per process (settings.CACHES, issue 17).

Django's cache handler is context-local and the production front runs each request in a fresh copy
of the event loop's context (tracemem_site/front.py, a2wsgi), so Django's own backend built a new
cache object, a new connection pool and a new connection for every request: a TCP connect and the
protocol handshake before each command (docs/performance.md). Here the cache objects stay
per-context as Django expects, but they share the process's pools and clients, one per server and
options.
redis-py pools are thread-safe and reset themselves in a forked child.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_shared: dict[str, tuple[Any, Any]] = {}  # pool and client, by server and options
_lock = threading.Lock()


class SharedPoolClient(RedisCacheClient):
    def _shared(self, write: bool) -> tuple[Any, Any]:
        this: Any = self  # Django's attributes, which django-stubs does not declare
        index = this._get_connection_pool_index(write)
        server, options = this._servers[index], this._pool_options
        key = repr((server, sorted(options.items(), key=lambda kv: kv[0])))
        found = _shared.get(key)
        if found is None:
            with _lock:
                found = _shared.get(key)
                if found is None:
                    pool = this._pool_class.from_url(server, **options)
                    found = _shared[key] = (pool, this._client(connection_pool=pool))
        return found

    def _get_connection_pool(self, write: bool) -> Any:
        return self._shared(write)[0]

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # One client object too: redis-py builds its option and callback tables in each new one.
        return self._shared(write)[1]


class SharedPoolRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedPoolClient
