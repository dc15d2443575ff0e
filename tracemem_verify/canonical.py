"""RFC 8785 canonical JSON, fast where a C encoder provably gives the same bytes.

``rfc8785.dumps`` is the reference, and pure Python: most of a chain verification's time went there
(docs/performance.md). orjson with sorted keys produces exactly the same bytes as RFC 8785 for the
JSON values a trace holds, except in three places, which :func:`canonical_json` handles:

* **floats**: RFC 8785 formats numbers as ECMAScript does (``1`` not ``1.0``, ``1e+21``, ``0`` for
  ``-0.0``); each float is therefore written by ``rfc8785.dumps`` itself and embedded verbatim
  (``orjson.Fragment``);
* **key order**: RFC 8785 sorts keys by UTF-16 code units, orjson by code points; the two orders
  agree unless a key holds a character above U+FFFF, so such an object goes to ``rfc8785``;
* **what RFC 8785 refuses** (integers beyond ±(2**53 − 1), NaN and infinities, non-string keys,
  unpaired surrogates, types other than dict/list/tuple/str/int/float/bool/None, subclasses of them):
  anything but the exact built-in types goes to ``rfc8785``, which raises its own
  ``CanonicalizationError`` as before. One exception: a **subclass of str** as a value (the server's
  own events carry Django ``TextChoices`` and ``StrEnum`` members: an event's ``type``, a policy's
  ``outcome``) is written as its exact text, ``str.__str__(value)``, which is what ``rfc8785``
  writes for it (its characters, whatever ``__str__`` a subclass defines); before, each such
  event went whole through pure-Python ``rfc8785`` (~35 us instead of ~3 us, docs/performance.md
  section 18).

Strings are escaped identically by both (``\\"``, ``\\\\``, ``\\b\\t\\n\\f\\r``, ``\\u00xx`` for the
other controls, everything else as UTF-8). tests/verify/test_canonical_fast.py checks equality with
``rfc8785.dumps`` on generated values (hypothesis) and on the edge cases above. Without orjson
installed (an auditor's bare Python) this is ``rfc8785.dumps``.
"""

from __future__ import annotations

from math import isfinite
from typing import Any

import rfc8785

try:
    import orjson
except ImportError:  # pragma: no cover - the offline verifier runs without it, only slower
    orjson = None  # type: ignore[assignment]

_INT_MAX = 2**53 - 1
_BMP_MAX = "\uffff"


class _Unsupported(Exception):
    """The value holds something orjson would write differently (or not refuse): use rfc8785."""


def _prepare(value: Any) -> Any:
    """``value`` itself when orjson writes it canonically as it is; a copy with each float replaced
    by its RFC 8785 text when it holds floats; raises :class:`_Unsupported` otherwise."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is dict:
        copy: dict[str, Any] | None = None
        for key, item in value.items():
            if type(key) is not str or (not key.isascii() and max(key) > _BMP_MAX):
                raise _Unsupported
            # The common leaves are looked at here, without a call each (most of an event's values).
            leaf = type(item)
            if leaf is str or leaf is bool or item is None or (leaf is int and -_INT_MAX <= item <= _INT_MAX):
                continue
            prepared = _prepare(item)
            if prepared is not item:
                if copy is None:
                    copy = dict(value)
                copy[key] = prepared
        return value if copy is None else copy
    if kind is list or kind is tuple:
        items: list[Any] | None = None
        for index, item in enumerate(value):
            leaf = type(item)
            if leaf is str or leaf is bool or item is None or (leaf is int and -_INT_MAX <= item <= _INT_MAX):
                continue
            prepared = _prepare(item)
            if prepared is not item:
                if items is None:
                    items = list(value)
                items[index] = prepared
        return value if items is None else items
    if isinstance(value, str):
        return str.__str__(value)  # a subclass's characters as an exact str (not its __str__)
    if kind is int:
        if -_INT_MAX <= value <= _INT_MAX:
            return value
        raise _Unsupported
    if kind is float and isfinite(value):
        return orjson.Fragment(_es_number(value))
    raise _Unsupported  # rfc8785 then refuses it (NaN, infinities) as it always did


def _es_number(value: float) -> bytes:
    """RFC 8785's number text (ECMAScript's Number::toString) of a finite float. Python's ``repr``
    has the same shortest digits, and where it writes them without an exponent (1e-4 ≤ |value| <
    1e16) so does ECMAScript, an integral value without its ``.0``; elsewhere ``rfc8785`` writes it."""
    text = repr(value)
    if "e" in text or value == 0:  # an exponent, or -0.0 ("0" in ECMAScript)
        return rfc8785.dumps(value)
    return (text[:-2] if text.endswith(".0") else text).encode()


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical JSON of ``value`` (bytes equal to ``rfc8785.dumps(value)``)."""
    if orjson is None:
        return rfc8785.dumps(value)
    try:
        prepared = _prepare(value)
        return orjson.dumps(prepared, option=orjson.OPT_SORT_KEYS)
    except (_Unsupported, orjson.JSONEncodeError, RecursionError):
        return rfc8785.dumps(value)
