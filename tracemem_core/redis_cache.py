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

from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.module_loading import import_string

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


_default: tuple[Any, BaseCache | None] | None = None  # (the cache settings it was built from, it)


def default_backend() -> BaseCache:
    """``caches["default"]``, except that when it is a :class:`SharedPoolRedisCache` it is one object
    per process, built as Django builds it, again when the cache settings change.

    Django's handler builds a new backend in each context and the front runs every request in a fresh
    one: ~7 exceptions in asgiref's ``Local`` and a backend with its options parsed and its client made
    again for the one use the key check has for it (docs/performance.md section 30). This one's pools
    and client are the process's anyway, and it holds nothing else: ``close()`` does nothing."""
    global _default
    handler_settings = caches.settings  # replaced whole when CACHES changes (Django's test signal)
    found = _default
    if found is None or found[0] is not handler_settings:
        shared = issubclass(import_string(handler_settings["default"]["BACKEND"]), SharedPoolRedisCache)
        found = _default = (handler_settings, caches.create_connection("default") if shared else None)
    return found[1] if found[1] is not None else caches["default"]


def run_script(backend: RedisCache, script: str, keys: list[str], *args: Any) -> Any:
    """``EVAL script`` on ``backend``'s Redis with ``keys`` (already the backend's full names) and
    ``args``: one round trip, for what must happen atomically (the key check's generation and rate
    count, a credentials change's steps). Raises what redis-py raises; callers guard it."""
    return backend._cache.get_client(keys[0], write=True).eval(script, len(keys), *keys, *args)
