"""Django's look-ups of a thread's database connection, and its "not from async code" checks, without
raising and catching an exception each time (issue 17, docs/performance.md section 30).

Every ``django.db.connection.<anything>`` and ``connections[alias]`` goes through asgiref's
thread-critical ``Local``, which asks ``asyncio.get_running_loop()`` on every read: in a thread with
no event loop (each of the front's pool threads, Celery's workers, management commands) that raises a
``RuntimeError``, caught at once. Each read also first fails Python's ordinary attribute look-up on
the ``Local`` and on ``ConnectionProxy``, formatting an ``AttributeError`` message nobody reads,
before their ``__getattr__`` runs. Django's ``async_unsafe`` methods of the connection
(``ensure_connection``, ``cursor``, ``commit``...) ask the same way. A ``decision_evaluate`` through
the agent door raised ~60 exceptions this way (``bench.front_calls exceptions``).

Here the same questions are asked without raising: ``asyncio._get_running_loop()`` returns the loop
or None where ``get_running_loop()`` returns it or raises, so each answer is the library's own:

- ``ConnectionHandler.__getitem__`` and ``.all()`` (``django.db.connections``): outside a running
  event loop, the thread's ``threading.local`` that asgiref's ``_ThreadCriticalLocal._get_storage``
  returns there; inside one, and whenever the alias is not set up yet, Django's own code.
- ``ConnectionProxy`` (``django.db.connection``, ``django.core.cache.cache``): a name the proxy has
  itself (its class's or its instance's) is looked up as before; any other goes straight to what its
  ``__getattr__`` returns.
- :func:`async_unsafe`: Django's decorator's check, for :class:`tracemem_core.postgresql.base.DatabaseWrapper`
  (:func:`without_raising` re-wraps the methods Django decorated, with the same function and message;
  ``ensure_connection``, the most frequent, has its own there).

These read asgiref's and Django's internals, so they are installed only on the versions they were
written against (:data:`PINNED`); on any other they are left out and Django runs as it is.
``tests/core/test_db_locals.py`` fails when either library changes the code these stand in for.
"""

from __future__ import annotations

import functools
import os
from asyncio import _get_running_loop
from collections.abc import Callable
from typing import Any, TypeVar

import asgiref
import django
from asgiref.local import _ThreadCriticalLocal
from django.core.exceptions import SynchronousOnlyOperation
from django.db.utils import ConnectionHandler
from django.utils import asyncio as django_asyncio
from django.utils.connection import BaseConnectionHandler, ConnectionProxy

PINNED = {"asgiref": "3.13.0", "django": "5.2.19"}

_F = TypeVar("_F", bound=Callable[..., Any])

_django_getitem = BaseConnectionHandler.__getitem__
_django_all = BaseConnectionHandler.all


def versions() -> dict[str, str]:
    return {"asgiref": asgiref.__version__, "django": django.get_version()}


def _getitem(self: Any, alias: str) -> Any:
    local = self._connections
    if _get_running_loop() is None and type(local) is _ThreadCriticalLocal:
        # What the thread-critical Local reads in a thread without a running loop: the thread's own.
        try:
            return getattr(local._storage, alias)
        except AttributeError:  # not set up in this thread yet: Django makes it
            pass
    return _django_getitem(self, alias)


def _all(self: Any, initialized_only: bool = False) -> Any:
    local = self._connections
    if _get_running_loop() is not None or type(local) is not _ThreadCriticalLocal:
        return _django_all(self, initialized_only)
    return [self[alias] for alias in self if not initialized_only or hasattr(local._storage, alias)]


# Every name ordinary look-up finds on a proxy: its class's (and object's), and the two its __init__
# puts in the instance's __dict__.
_PROXY_OWN = frozenset(dir(ConnectionProxy)) | {"_connections", "_alias"}
_object_getattribute = object.__getattribute__


def _proxy_getattribute(self: Any, item: str) -> Any:
    if item in _PROXY_OWN:
        return _object_getattribute(self, item)
    own = _object_getattribute(self, "__dict__")
    if item in own:
        return own[item]
    # What ConnectionProxy.__getattr__ returns, without the failed ordinary look-up before it.
    return getattr(own["_connections"][own["_alias"]], item)


def async_unsafe(func: _F, message: str) -> _F:
    """Django's ``async_unsafe(message)(func)``, asking for a running loop without raising."""

    @functools.wraps(func)
    def inner(*args: Any, **kwargs: Any) -> Any:
        if _get_running_loop() is not None and not os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE"):
            raise SynchronousOnlyOperation(message)
        return func(*args, **kwargs)

    return inner  # type: ignore[return-value]


_DJANGO_INNER = django_asyncio.async_unsafe(lambda: None).__code__
DEFAULT_MESSAGE = "You cannot call this from an async context - use a thread or sync_to_async."


def unwrapped(method: Any) -> tuple[Any, str] | None:
    """The function and message Django's ``async_unsafe`` wrapped in ``method``, or None."""
    if getattr(method, "__code__", None) is not _DJANGO_INNER:
        return None
    cells = dict(zip(method.__code__.co_freevars, method.__closure__ or (), strict=True))
    return cells["func"].cell_contents, cells["message"].cell_contents


def without_raising(cls: type) -> type:
    """Re-wrap every method of ``cls`` (and its bases) that Django's ``async_unsafe`` wrapped with
    :func:`async_unsafe`, in ``cls`` itself; nothing on other versions (:func:`installable`)."""
    if not installable():
        return cls
    for name in dir(cls):
        if name in vars(cls) and unwrapped(vars(cls)[name]) is None:
            continue  # cls's own (tracemem_core.postgresql's ensure_connection)
        found = unwrapped(getattr(cls, name, None))
        if found is not None:
            setattr(cls, name, async_unsafe(*found))
    return cls


def installable() -> bool:
    return versions() == PINNED


def install() -> bool:
    """Put the look-ups above in place (once per process, from ``TracememSiteConfig.ready``); False
    when the libraries are not the pinned versions (then Django's own stay)."""
    if not installable():
        return False
    ConnectionHandler.__getitem__ = _getitem  # type: ignore[method-assign]
    ConnectionHandler.all = _all  # type: ignore[method-assign]
    ConnectionProxy.__getattribute__ = _proxy_getattribute  # type: ignore[method-assign]
    return True
