"""Redaction and minimisation (docs/contract/redaction.md): property tests with hypothesis plus one example per rule."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents import keys
from tracemem_core.errors import InvalidArgument
from tracemem_core.redaction import MAX_DEPTH_MARKER, REDACTED, is_secret_key, redact

SPEC_KEYS = [
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "api_key",
    "apikey",
    "authorization",
    "auth",
    "credential",
    "private_key",
    "cookie",
    "session",
    "ssn",
    "card_number",
    "cvv",
]

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7v\n-----END RSA PRIVATE KEY-----"
SECRET_VALUES = {
    "tmem": keys.generate(keys.AGENT_KEY_PREFIX),
    "tmpat": keys.generate(keys.PERSONAL_TOKEN_PREFIX),
    "openai": "sk-proj-abcdefghijklmnopqrstuvwxyz012345",
    "github": "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "slack_bot": "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
    "slack_user": "xoxp-123456789012-1234567890123-AbCdEfGhIjKlMnOp",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "jwt": JWT,
    "pem": PEM,
}

# --- strategies -------------------------------------------------------------------------------

# U+0000 is refused outright (PostgreSQL cannot store it): see test_prod_doors' NUL test.
_plain_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"), max_size=30
)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    _plain_text,
    st.text(alphabet="ab ", min_size=990, max_size=1500),  # around the truncation limit
)


@st.composite
def secret_strings(draw: st.DrawFn) -> str:
    """A known secret, optionally embedded in surrounding text."""
    secret = draw(st.sampled_from(sorted(SECRET_VALUES.values())))
    before = draw(st.sampled_from(["", "key: ", "export TRACEMEM_API_KEY=", "x_", "use (", "\n"]))
    after = draw(st.sampled_from(["", " now", ")", "\n", "; done"]))
    return before + secret + after


@st.composite
def secret_keys(draw: st.DrawFn) -> str:
    """A docs/contract/redaction.md key in random case, maybe with words around it."""
    word = draw(st.sampled_from(SPEC_KEYS))
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in word)
    prefix = draw(st.sampled_from(["", "db_", "x-", "user.", "my "]))
    suffix = draw(st.sampled_from(["", "_value", "-header", ".raw", " 2"]))
    return prefix + cased + suffix


_keys = st.one_of(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12), secret_keys())
json_values = st.recursive(
    st.one_of(_scalars, secret_strings()),
    lambda children: st.one_of(
        st.lists(children, max_size=120), st.dictionaries(_keys, children, max_size=6)
    ),
    max_leaves=200,
)


def _deeply_nested(depth: int) -> Any:
    value: Any = {"leaf": "bottom"}
    for i in range(depth):
        value = {"level": value} if i % 2 else [value]
    return value


def _container_depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_container_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_container_depth(v) for v in value), default=0)
    return 0


def _walk(value: Any, key: str | None = None) -> Any:
    """Yield (key, value) for every value in a JSON tree (key is the nearest object key)."""
    yield key, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _walk(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _walk(v, key)


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(json_values)
def test_no_secret_survives_and_every_limit_holds(value: Any) -> None:
    out = redact({"root": value})
    for key, item in _walk(out):
        if key is not None and is_secret_key(key):
            assert item == REDACTED
        if isinstance(item, str):
            assert not any(secret in item for secret in SECRET_VALUES.values())
            assert "PRIVATE KEY-----" not in item
            if len(item) > 1000:
                assert item[1000:].startswith("…[truncated ")
                assert item.endswith(" chars]")
        if isinstance(item, list):
            assert len(item) <= 101
            if len(item) == 101:
                assert isinstance(item[-1], str) and item[-1].startswith("[+")
    assert _container_depth(out) <= 10


@settings(max_examples=100, deadline=None)
@given(secret_keys(), st.one_of(_scalars, st.lists(_plain_text), st.dictionaries(_plain_text, _plain_text)))
def test_any_value_under_a_secret_like_key_is_redacted(key: str, value: Any) -> None:
    assert redact({key: value, "kept": "ok"}) == {key: REDACTED, "kept": "ok"}


@settings(max_examples=100, deadline=None)
@given(secret_strings())
def test_a_secret_looking_value_is_redacted_under_any_key(text: str) -> None:
    # Only the secret is replaced; the text around it survives (issue 13).
    kept = text
    for secret in SECRET_VALUES.values():
        kept = kept.replace(secret, REDACTED)
    assert redact({"note": text, "items": [text]}) == {"note": kept, "items": [kept]}


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1001, max_value=5000))
def test_long_strings_are_cut_to_1000_with_a_marker(length: int) -> None:
    out = redact({"text": "a" * length})["text"]
    assert out == "a" * 1000 + f"…[truncated {length - 1000} chars]"


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=400))
def test_arrays_keep_100_items_plus_a_marker(count: int) -> None:
    out = redact(list(range(count)))
    if count <= 100:
        assert out == list(range(count))
    else:
        assert out == [*range(100), f"[+{count - 100} more items]"]


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=1, max_value=40))
def test_nesting_deeper_than_10_is_replaced(depth: int) -> None:
    out = redact(_deeply_nested(depth))
    assert _container_depth(out) <= 10
    if depth + 1 <= 10:
        assert out == _deeply_nested(depth)  # shallow enough: unchanged
    else:
        assert MAX_DEPTH_MARKER in str(out)


# --- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", SPEC_KEYS + ["API_KEY", "Private-Key", "cardNumber", "X-Auth", "userSSN"])
def test_each_spec_key_is_redacted(key: str) -> None:
    assert redact({key: "hunter2", "name": "visible"}) == {key: REDACTED, "name": "visible"}


@pytest.mark.parametrize("name", sorted(SECRET_VALUES))
def test_each_spec_secret_pattern_is_redacted(name: str) -> None:
    secret = SECRET_VALUES[name]
    assert redact({"note": f"here it is: {secret}"}) == {"note": f"here it is: {REDACTED}"}
    assert redact({"note": f"KEY_{secret}"}) == {"note": f"KEY_{REDACTED}"}
    assert redact({"note": secret}) == {"note": REDACTED}


@pytest.mark.parametrize(
    "harmless",
    ["author", "description", "task-scheduler-for-the-reporting-service", "desk-booking", "AKIA"],
)
def test_ordinary_keys_and_values_are_kept(harmless: str) -> None:
    assert redact({harmless: harmless}) == {harmless: harmless}


def test_depth_limit_is_exactly_ten_levels() -> None:
    ten = _deeply_nested(9)  # 9 wrappers + the leaf object = 10 containers
    assert redact(ten) == ten
    eleven = redact(_deeply_nested(10))
    assert _container_depth(eleven) == 10
    assert MAX_DEPTH_MARKER in str(eleven)


def test_input_is_not_modified() -> None:
    original = {"password": "x", "items": list(range(150))}
    redact(original)
    assert original == {"password": "x", "items": list(range(150))}


@pytest.mark.parametrize("bad", [2**60, float("nan"), float("inf")])
def test_values_json_cannot_hash_are_refused_naming_the_field(bad: Any) -> None:
    with pytest.raises(InvalidArgument) as info:
        redact({"a": {"b": bad}}, field="context")
    assert info.value.code == "invalid_argument"
    assert info.value.details["field"] == "context.a.b"
