"""Redaction and minimisation (docs/contract/redaction.md), applied by services before anything is stored or shown.

One function, :func:`redact`, used for metadata, context, inputs, summaries, reasons and approval
requests. It also refuses values that JSON cannot carry faithfully through the hash chain
(integers beyond ±2^53, NaN, infinities) with an ``invalid_argument`` naming the field, rather than
storing something different from what the agent sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from django.conf import settings

from tracemem_core.errors import InvalidArgument
from tracemem_core.validation import storable

REDACTED = "[redacted]"
MAX_DEPTH_MARKER = "[max depth]"
MAX_STRING = 1000
MAX_ITEMS = 100
MAX_DEPTH = 10
_SAFE_INT = 2**53 - 1

# Secret-like keys (docs/contract/redaction.md). A key matches when one of its words (after splitting camelCase,
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
    "passphrase",
    "passcode",
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
# ...or its LAST word is one of these: "db_pass", "smtpPass", "ssh_private" are secrets, while
# "pass_count", "private_notes" and "private_channel" are not ("passenger", "bypass" and "privacy"
# are other words altogether)...
_SECRET_LAST_WORDS = {"pass", "private"}
# ...or two adjacent words are one of these...
_SECRET_PAIRS = {"api_key", "private_key", "card_number", "access_key", "secret_key", "client_secret"}
# ...or the key with separators removed contains one of these (catches "githubtoken", "dbpassword").
_SECRET_FRAGMENTS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "apikey",
    "privatekey",
    "cardnumber",
    "credential",
    "token",
)

# Values that look like secrets whatever their key. Only the secret is replaced, so the rest of a
# longer text survives; a pattern's group "s" (when it has one) is the part replaced.
# A token starts where no letter or digit precedes it. Not ``\b``: that would let a secret glued
# to an underscore ("KEY_tmem_…", "x_ghp_…") slip through, since "_" counts as a word character.
_START = r"(?<![A-Za-z0-9])"
# The value after "password=" or "password: ": quoted, already redacted, or up to a delimiter
# (a closing bracket stays: "(KEY=abc)" keeps its ")").
_VALUE = r"""(?P<s>\[redacted\]|"[^"]*"|'[^']*'|[^\s&;,()\[\]{}<>"']+)"""
# "password: hunter2" in pasted config text. Not used by the net over text without a field of its own
# (redact_strings): there "password: too long" is a message naming the field "password".
_COLON_PAIR = r"(?i)(?<![A-Za-z0-9])[A-Za-z0-9_.-]*(?:password|passwd|passphrase|secret)\s*:\s+" + _VALUE
# Each pattern with the texts one of which must occur in a string for it to match at all (a
# necessary condition, read off the pattern: its literal start, or the "=" / "://" it cannot match
# without). A string holding none is skipped without running the pattern: most strings hold no
# secret, and running every pattern over every string of every trace payload was a third of an
# append's CPU (issue 17, docs/performance.md section 18). None: always run.
# tests/core/test_redaction_guards.py checks on generated text that the guards change nothing.
_SECRET_VALUE_RULES: list[tuple[str, tuple[str, ...] | None]] = [
    (_START + r"tmem_[A-Za-z0-9]{20,}", ("tmem_",)),
    (_START + r"tmpat_[A-Za-z0-9]{20,}", ("tmpat_",)),
    (_START + r"tmwh_[A-Za-z0-9]{20,}", ("tmwh_",)),
    (_START + r"sk-[A-Za-z0-9_-]{16,}", ("sk-",)),
    (_START + r"[sr]k_(?:live|test)_[A-Za-z0-9]{10,}", ("k_live_", "k_test_")),
    (_START + r"gh[pousr]_[A-Za-z0-9]{20,}", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    (_START + r"github_pat_[A-Za-z0-9_]{20,}", ("github_pat_",)),
    (_START + r"xox[abprs]-[A-Za-z0-9-]{10,}", ("xox",)),
    (_START + r"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Z])", ("AKIA", "ASIA")),
    (_START + r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*", ("eyJ",)),
    # The whole key block, up to its END line (or the end of the text when that was cut off).
    (
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|.*)",
        ("-----BEGIN ",),
    ),
    (r"\b[Bb]earer\s+(?P<s>[A-Za-z0-9._~+/=-]{16,})", ("earer",)),
    (r"https://hooks\.slack\.com/services/[A-Za-z0-9/]+", ("https://hooks.slack.com/services/",)),
    (r"\bAIza[0-9A-Za-z_-]{35}\b", ("AIza",)),
    # URL/DSN userinfo: only the password (up to the last "@" of the authority) is replaced.
    (_START + r"[A-Za-z][A-Za-z0-9+.-]*://[^\s/?#@:\[\]]*:(?P<s>[^\s/?#]+)(?=@)", ("://",)),
    # key=value in DSNs, environment lines and query strings; "key: value" for the password family.
    (
        r"(?i)(?<![A-Za-z0-9])[A-Za-z0-9_.-]*(?:password|passwd|pwd|passphrase|secret|token|api_?key)"
        r"(?:\s*=\s*|=)" + _VALUE,
        ("=",),
    ),
    (_COLON_PAIR, (":",)),
]
_SECRET_VALUE_PATTERNS = [pattern for pattern, _ in _SECRET_VALUE_RULES]
# Card numbers (PAN): 13–19 digits of a major network (first digit 2–6), Luhn-valid, written
# plain or in groups separated by single spaces or dashes. Only Luhn-valid numbers are replaced,
# so order numbers, phone numbers and timestamps survive.
_CARD_RUN = re.compile(r"(?<![A-Za-z0-9])(?:\d{13,19}|\d{3,6}(?:[ -]\d{3,6})+)(?![A-Za-z0-9])")
_GROUP = re.compile(r"\d+")

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


_Rule = tuple[re.Pattern[str], tuple[str, ...] | None]


@lru_cache(maxsize=1)
def _extra_rules() -> tuple[frozenset[str], tuple[_Rule, ...]]:
    """Extra secret keys, and every value pattern with its guard (an operator's own always run)."""
    extra_keys = frozenset(k.strip().lower() for k in getattr(settings, "TRACEMEM_REDACT_EXTRA_KEYS", []))
    rules = list(_SECRET_VALUE_RULES) + [
        (p, None) for p in getattr(settings, "TRACEMEM_REDACT_EXTRA_PATTERNS", [])
    ]
    return extra_keys, tuple((re.compile(p, re.DOTALL), guards) for p, guards in rules)


@lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    # Matching is case-insensitive (docs/contract/redaction.md), so the key is split both as camelCase and as plain
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
    if any(w in _SECRET_WORDS for w in words) or words[-1] in _SECRET_LAST_WORDS:
        return True
    if any(f"{a}_{b}" in _SECRET_PAIRS for a, b in zip(words, words[1:], strict=False)):
        return True
    compact = "".join(words)
    return any(fragment in compact for fragment in _SECRET_FRAGMENTS)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _is_card(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def _card_span(run: str) -> tuple[int, int] | None:
    """Where in a run of digit groups a card number sits (whole groups only), if anywhere: the
    longest from the first group that starts one, since a 19-digit number's first 16 digits can be
    Luhn-valid too (and would leave its last group behind)."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    for first in range(len(groups)):
        digits, found = "", None
        for last in range(first, len(groups)):
            digits += run[groups[last][0] : groups[last][1]]
            if len(digits) > 19:
                break
            if _is_card(digits):
                found = groups[first][0], groups[last][1]
        if found is not None:
            return found
    return None


def _redact_cards(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        run = match.group(0)
        span = _card_span(run)
        while span is not None:
            run = run[: span[0]] + REDACTED + run[span[1] :]
            span = _card_span(run)
        return run

    return _CARD_RUN.sub(replace, text)


def _replace_secret(match: re.Match[str]) -> str:
    if "s" in match.re.groupindex and match.group("s") is not None:
        whole, start, end = match.group(0), match.start("s") - match.start(), match.end("s") - match.start()
        return whole[:start] + REDACTED + whole[end:]
    return REDACTED


def redact_text(text: str, *, colon_pairs: bool = True) -> str:
    """``text`` with every secret-looking part replaced by ``[redacted]`` and the rest kept.

    Idempotent: ``[redacted]`` matches no pattern. Used by :func:`redact` for every string and by
    the notification channels on everything they send (approvals/services/channels.py). Without
    ``colon_pairs`` a "password: …" pair is left alone (see :func:`redact_strings`).
    """
    for pattern, guards in _extra_rules()[1]:
        if guards is not None:
            for guard in guards:  # a loop, not any(): a generator per pattern cost more than the check
                if guard in text:
                    break
            else:
                continue  # it cannot match (see _SECRET_VALUE_RULES)
        if colon_pairs or pattern.pattern != _COLON_PAIR:
            text = pattern.sub(_replace_secret, text)
    return _redact_cards(text)


def redact_strings(value: Any) -> Any:
    """A copy of ``value`` with :func:`redact_text` applied to every string (keys included) and
    card-number integers replaced; nothing else changes (no cuts, no key rules, other types kept).
    "password: …" pairs are left alone: in an error message that is a field name and its problem
    ("password: too long"); "password=…", URL passwords, tokens and cards are still caught.

    The last line of defence for text that has no field of its own to redact by: every trace
    event's payload (``decisions.services.trace_append``) and every ``DomainError``'s message and
    details (an error quoting what the caller sent). Idempotent like :func:`redact_text`.
    """
    if isinstance(value, str):
        return redact_text(value, colon_pairs=False)
    if isinstance(value, dict):
        return {
            (_redact_key(k) if isinstance(k, str) else k): redact_strings(item) for k, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_strings(item) for item in value]
    if isinstance(value, int) and not isinstance(value, bool) and value > 0 and _is_card(str(value)):
        return REDACTED
    return value


_KEY_CACHED_UP_TO = 100  # characters; a longer key is redacted afresh each time


@lru_cache(maxsize=4096)
def _redact_key_cached(key: str) -> str:
    return redact_text(key, colon_pairs=False)


def _redact_key(key: str) -> str:
    """``redact_text(key, colon_pairs=False)``, remembered per process for short keys (like
    :func:`is_secret_key`): trace payloads repeat the same few dozen field names, and running every
    pattern over each of them was most of a ``decision_evaluate`` event's redaction (issue 17,
    docs/performance.md §10). The patterns are fixed for the life of the process (``_extra_rules``)."""
    if len(key) > _KEY_CACHED_UP_TO:
        return redact_text(key, colon_pairs=False)
    return _redact_key_cached(key)


def looks_like_secret(value: str) -> bool:
    return redact_text(value) != value


def redact(value: Any, *, field: str = "value", max_string: int = MAX_STRING) -> Any:
    """Return a redacted, minimised copy of a JSON value (the input is not modified).

    Strings longer than ``max_string`` are cut with a marker (docs/contract/redaction.md: 1000). A caller whose text is
    the point (decision records) passes a larger limit and refuses longer input itself.
    """
    return _redact(value, field, 0, max_string)


_CUT_MARKER = re.compile(r"…\[truncated \d+ chars\]\Z")
_MORE_ITEMS = re.compile(r"\[\+\d+ more items\]\Z")


def _limit(text: str, limit: int, clean: Callable[[str], str]) -> str:
    """``clean(text)`` cut to ``limit`` characters with a marker, so that doing it twice changes
    nothing: a text cut before keeps its marker, and the cut end is cleaned once more (a cut can
    turn the tail of a redacted secret into something that looks like a new one)."""
    marker = _CUT_MARKER.search(text)
    if marker is not None and marker.start() <= limit + len(REDACTED):
        return clean(text[: marker.start()]) + marker.group()
    cleaned = clean(text)
    if len(cleaned) <= limit:
        return cleaned
    return clean(cleaned[:limit]) + f"…[truncated {len(cleaned) - limit} chars]"


def _same(text: str) -> str:
    return text


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
            stored_key = _limit(key, max_string, _same)
            out[stored_key] = REDACTED if is_secret_key(key) else _redact(item, child, depth + 1, max_string)
        return out
    if isinstance(value, list | tuple):
        if depth >= MAX_DEPTH:
            return MAX_DEPTH_MARKER
        already_cut = (
            len(value) == MAX_ITEMS + 1
            and isinstance(value[-1], str)
            and _MORE_ITEMS.match(value[-1]) is not None
        )
        kept = [
            _redact(item, f"{path}[{i}]", depth + 1, max_string) for i, item in enumerate(value[:MAX_ITEMS])
        ]
        if already_cut:
            kept.append(value[-1])
        elif len(value) > MAX_ITEMS:
            kept.append(f"[+{len(value) - MAX_ITEMS} more items]")
        return kept
    if isinstance(value, str):
        storable(value, path)
        return _limit(value, max_string, redact_text)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        if abs(value) > _SAFE_INT:
            raise InvalidArgument(
                f"{path} is an integer outside ±2^53-1; send it as a string to keep every digit", field=path
            )
        return REDACTED if value > 0 and _is_card(str(value)) else value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidArgument(f"{path} is not a finite number; NaN and Infinity are not JSON", field=path)
        return value
    raise InvalidArgument(f"{path} has a value of type {type(value).__name__}, which is not JSON", field=path)
