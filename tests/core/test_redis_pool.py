"""The shared cache keeps one Redis connection pool per process (issue 17).

Django's cache handler is context-local, and the production front (tracemem_site/front.py, a2wsgi)
runs every request in a fresh copy of the event loop's context: with Django's own Redis backend each
request built a new cache object, a new pool and a new TCP connection (connect, HELLO, the command,
then a leaked socket). The profile is in docs/performance.md.
"""

from __future__ import annotations

import contextvars

import pytest
from django.core.cache import caches

pytestmark = pytest.mark.django_db


def _one_request() -> object:
    cache = caches["default"]
    cache.get("tracemem-test-pool")
    return cache._cache._get_connection_pool(False)


def test_each_request_context_reuses_one_pool_and_connection(settings):
    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.fail("this test needs REDIS_URL (the suite's Redis)")
    pools = [contextvars.Context().run(_one_request) for _ in range(5)]
    assert all(pool is pools[0] for pool in pools)
    assert pools[0]._created_connections == 1


def test_replies_are_parsed_by_hiredis(settings):
    """redis-py's C parser (``hiredis``, a dependency) reads the replies: ~35 us less CPU per
    request than its pure-Python parser (docs/performance.md section 18)."""
    from redis._parsers import _HiredisParser

    if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
        pytest.fail("this test needs REDIS_URL (the suite's Redis)")
    pool = contextvars.Context().run(_one_request)
    connection = pool.get_connection()
    try:
        assert isinstance(connection._parser, _HiredisParser)
    finally:
        pool.release(connection)
