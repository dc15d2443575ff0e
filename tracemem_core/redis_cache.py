"""Django's Redis cache with one connection pool per process (settings.CACHES, issue 17).

Django's cache handler is context-local and the production front runs each request in a fresh copy
of the event loop's context (tracemem_site/front.py, a2wsgi), so Django's own backend built a new
cache object, a new connection pool and a new connection for every request: a TCP connect and the
protocol handshake before each command (docs/performance.md). Here the cache objects stay
per-context as Django expects, but they share the process's pools, one per server and options.
redis-py pools are thread-safe and reset themselves in a forked child.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_pools: dict[str, Any] = {}
_lock = threading.Lock()


class SharedPoolClient(RedisCacheClient):
    def _get_connection_pool(self, write: bool) -> Any:
        this: Any = self  # Django's attributes, which django-stubs does not declare
        index = this._get_connection_pool_index(write)
        server, options = this._servers[index], this._pool_options
        key = repr((server, sorted(options.items(), key=lambda kv: kv[0])))
        pool = _pools.get(key)
        if pool is None:
            with _lock:
                pool = _pools.get(key)
                if pool is None:
                    pool = _pools[key] = this._pool_class.from_url(server, **options)
        return pool


class SharedPoolRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedPoolClient
