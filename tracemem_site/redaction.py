"""Redaction and minimisation (SPEC §6), applied by services before anything is stored or shown.

One function, :func:`redact`, used for metadata, context, inputs, summaries, reasons and approval
requests. It also refuses values that JSON cannot carry faithfully through the hash chain
(integers beyond ±2^53, NaN, infinities) with an ``invalid_argument`` naming the field, rather than
storing something different from what the agent sent.
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any

from django.conf import settings

from tracemem_site.errors import InvalidArgument
from tracemem_site.validation import storable

REDACTED = "[redacted]"
MAX_DEPTH_MARKER = "[max depth]"
MAX_STRING = 1000
MAX_ITEMS = 100
MAX_DEPTH = 10
_SAFE_INT = 2**53 - 1

# Secret-like keys (SPEC §6). A key matches when one of its words (after splitting camelCase,
# dashes, dots and spaces into snake_case) is one of these...
_SECRET_WORDS = {
    "token",
    "tokens",
    "secret",
    "secrets",
    "password",
    "passwords",
    "passwd",
    "pwd",
    "apikey",
    "authorization",
    "auth",
    "credential",
    "credentials",
    "cookie",
    "cookies",
    "session",
    "sessions",
    "ssn",
    "cvv",
    "cvc",
}
# ...or two adjacent words are one of these...
_SECRET_PAIRS = {"api_key", "private_key", "card_number", "access_key", "secret_key", "client_secret"}
# ...or the key with separators removed contains one of these (catches "githubtoken", "dbpassword").
_SECRET_FRAGMENTS = (
    "password",
    "passwd",
    "secret",
    "apikey",
    "privatekey",
    "cardnumber",
    "credential",
    "token",
)

# Values that look like secrets whatever their key.
# A token starts where no letter or digit precedes it. Not ``\b``: that would let a secret glued
# to an underscore ("KEY_tmem_…", "x_ghp_…") slip through, since "_" counts as a word character.
_START = r"(?<![A-Za-z0-9])"
_SECRET_VALUE_PATTERNS = [
    _START + r"tmem_[A-Za-z0-9]{20,}",
    _START + r"tmpat_[A-Za-z0-9]{20,}",
    _START + r"sk-[A-Za-z0-9_-]{16,}",
    _START + r"[sr]k_(?:live|test)_[A-Za-z0-9]{10,}",
    _START + r"gh[pousr]_[A-Za-z0-9]{20,}",
    _START + r"github_pat_[A-Za-z0-9_]{20,}",
    _START + r"xox[abprs]-[A-Za-z0-9-]{10,}",
    _START + r"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])",
    _START + r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
    r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----",
    r"\b[Bb]earer\s+[A-Za-z0-9._~+/=-]{16,}",
    r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+",
    r"\bAIza[0-9A-Za-z_-]{35}\b",
]

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


@lru_cache(maxsize=1)
def _extra_rules() -> tuple[frozenset[str], re.Pattern[str]]:
    extra_keys = frozenset(k.strip().lower() for k in getattr(settings, "TRACEMEM_REDACT_EXTRA_KEYS", []))
    patterns = list(_SECRET_VALUE_PATTERNS) + list(getattr(settings, "TRACEMEM_REDACT_EXTRA_PATTERNS", []))
    return extra_keys, re.compile("|".join(f"(?:{p})" for p in patterns))


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    # Matching is case-insensitive (SPEC §6), so the key is split both as camelCase and as plain
    # lowercase: camel splitting alone would cut "x_PwD" into "pw" + "d" and miss it.
    extra_keys, _ = _extra_rules()
    if key.lower() in extra_keys:
        return True
    return _secret_words([w for w in _SEPARATORS.split(_CAMEL.sub("_", key).lower()) if w]) or _secret_words(
        [w for w in _SEPARATORS.split(key.lower()) if w]
    )


def _secret_words(words: list[str]) -> bool:
    if not words:
        return False
    extra_keys, _ = _extra_rules()
    joined = "_".join(words)
    if joined in extra_keys:
        return True
    if any(w in _SECRET_WORDS for w in words):
        return True
    if any(f"{a}_{b}" in _SECRET_PAIRS for a, b in zip(words, words[1:], strict=False)):
        return True
    compact = "".join(words)
    return any(fragment in compact for fragment in _SECRET_FRAGMENTS)


def looks_like_secret(value: str) -> bool:
    return _extra_rules()[1].search(value) is not None


def redact(value: Any, *, field: str = "value", max_string: int = MAX_STRING) -> Any:
    """Return a redacted, minimised copy of a JSON value (the input is not modified).

    Strings longer than ``max_string`` are cut with a marker (SPEC §6: 1000). A caller whose text is
    the point (decision records) passes a larger limit and refuses longer input itself.
    """
    return _redact(value, field, 0, max_string)


def _cut(text: str, limit: int) -> str:
    return f"{text[:limit]}…[truncated {len(text) - limit} chars]"


def _redact(value: Any, path: str, depth: int, max_string: int) -> Any:
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            return MAX_DEPTH_MARKER
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidArgument(
                    f"{path} has a non-string key {key!r}; JSON object keys are strings", field=path
                )
            storable(key, path, where=f"{path} (an object key)")
            if looks_like_secret(key):
                # A token pasted as a key would survive in the key itself: replace both.
                out[f"[redacted key {len(out) + 1}]"] = REDACTED
                continue
            child = f"{path}.{key}"
            stored_key = key if len(key) <= max_string else _cut(key, max_string)
            out[stored_key] = REDACTED if is_secret_key(key) else _redact(item, child, depth + 1, max_string)
        return out
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return MAX_DEPTH_MARKER
        kept = [
            _redact(item, f"{path}[{i}]", depth + 1, max_string) for i, item in enumerate(value[:MAX_ITEMS])
        ]
        if len(value) > MAX_ITEMS:
            kept.append(f"[+{len(value) - MAX_ITEMS} more items]")
        return kept
    if isinstance(value, str):
        storable(value, path)
        if looks_like_secret(value):
            return REDACTED
        if len(value) > max_string:
            return _cut(value, max_string)
        return value
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if abs(value) > _SAFE_INT:
            raise InvalidArgument(
                f"{path} is an integer outside ±2^53-1; send it as a string to keep every digit", field=path
            )
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{path} is not a finite number; NaN and Infinity are not JSON", field=path)
        return value
    raise InvalidArgument(f"{path} has a value of type {type(value).__name__}, which is not JSON", field=path)
