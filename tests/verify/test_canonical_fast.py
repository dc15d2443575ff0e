"""The fast canonical JSON (tracemem_verify.canonical) is byte-for-byte RFC 8785 (issue 17).

Every trace hash, receipt and policy hash goes through it, so it must equal ``rfc8785.dumps`` on
everything: equal bytes where rfc8785 answers, the same refusal where it refuses.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tracemem_verify import canonical
from tracemem_verify.chain import ChainVerifier, event_hash

SAFE = 2**53 - 1

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-SAFE, max_value=SAFE)
    | st.integers()  # beyond ±(2**53 - 1) too: rfc8785 refuses those
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True)
    | st.text()
    | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x3F))  # controls, quotes, slashes
    | st.text(alphabet=st.characters(min_codepoint=0xD000, max_codepoint=0x1F6FF))  # BMP top and beyond
)
keys = (
    st.text()
    | st.text(alphabet=st.characters(min_codepoint=0xDFF0, max_codepoint=0x10100), max_size=4)
    | st.sampled_from(["", "a", "b", "\ue000", "\U00010000", "\U0001f680", "é", "Z", "aa"])
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=6)
        | st.tuples(children, children)
        | st.dictionaries(keys, children, max_size=6)
    ),
    max_leaves=40,
)


def outcome(fn: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(value)
    except (
        Exception
    ) as exc:  # rfc8785 refuses with CanonicalizationError, or UnicodeEncodeError for some keys
        return "refused", type(exc)


def assert_same(value: Any) -> None:
    assert outcome(canonical.canonical_json, value) == outcome(rfc8785.dumps, value)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(json_values)
def test_fast_canonical_json_equals_rfc8785_on_any_json_value(value: Any) -> None:
    assert_same(value)


actors = st.fixed_dictionaries(
    {"kind": st.sampled_from(["agent", "user", "system"]), "id": st.text(), "name": st.text()}
)
events = st.fixed_dictionaries(
    {
        "decision_id": st.text(min_size=1),
        "event_id": st.text(min_size=1),
        "seq": st.integers(min_value=1, max_value=SAFE),
        "type": st.sampled_from(["created", "context", "read", "write", "evaluate", "close"]),
        "timestamp": st.text(),
        "actor": actors,
        "payload": st.dictionaries(keys, json_values, max_size=8),
        "prev_hash": st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    }
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(events)
def test_event_hash_is_sha256_of_rfc8785_on_generated_events(event: dict[str, Any]) -> None:
    try:
        expected: Any = hashlib.sha256(rfc8785.dumps(event)).hexdigest()
    except Exception as exc:
        expected = type(exc)
    try:
        got: Any = event_hash(event)
    except Exception as exc:
        got = type(exc)
    assert got == expected


@pytest.mark.parametrize(
    "value",
    [
        # numbers: ECMAScript forms, not Python's or orjson's
        1.0,
        -0.0,
        0.1,
        1e21,
        1e20,
        1e-7,
        1e-6,
        # where Python's repr and ECMAScript part ways: exponents, an integral value's ".0"
        1e-4,
        9.999999999999999e-05,
        0.00012345,
        1e15,
        1e16,
        9007199254740992.0,
        123.0,
        -7.0,
        1e15 + 0.5,
        0.8125,
        123456789012345680000.0,
        5e-324,
        1.7976931348623157e308,
        [1.0, {"x": 2.5, "y": [0.0, -1.5e-10]}],
        SAFE,
        -SAFE,
        SAFE + 1,
        -SAFE - 1,
        float("nan"),
        float("inf"),
        float("-inf"),
        # key order: UTF-16 code units, not code points
        {"\ue000": 1, "\U00010000": 2, "a": 3},
        {"\U0001f680": 1, "\uffff": 2},
        {"é": 1, "e": 2, "z": 3, "Z": 4, "": 5},
        # strings: escapes and what is not escaped
        "".join(chr(i) for i in range(0x80)),
        "\u2028\u2029\ufeff\x7f</script>&'",
        "naïve → 中文 🚀",
        # refused alike
        "\ud800",
        {"\udc00": 1},
        {1: "non-string key"},
        {"set": {1, 2}},
        b"bytes",
    ],
)
def test_fast_canonical_json_edge_cases_equal_rfc8785(value: Any) -> None:
    assert_same(value)


def test_very_deep_nesting_falls_back_to_rfc8785() -> None:
    value: Any = 1
    for _ in range(300):  # orjson refuses more than 255 levels
        value = {"a": [value]}
    assert canonical.canonical_json(value) == rfc8785.dumps(value)


def test_subclasses_of_json_types_are_written_as_rfc8785_writes_them() -> None:
    import enum

    class Kind(enum.StrEnum):
        CONTEXT = "context"

    class Level(enum.IntEnum):
        HIGH = 3

    class Ratio(float):
        pass

    class Shouting(str):
        def __str__(self) -> str:
            return self.upper()

    value = {
        "type": Kind.CONTEXT,
        "level": Level.HIGH,
        "ratio": Ratio(0.5),
        "flag": True,
        "shout": Shouting("quiet"),
        "list": [Kind.CONTEXT, Shouting("ü")],
    }
    assert_same(value)
    assert b'"quiet"' in canonical.canonical_json(value)


def test_a_server_event_with_text_choices_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server's events carry ``TextChoices`` members (``type``, a policy's ``outcome``): written
    by orjson as their text, not by pure-Python rfc8785 (issue 17)."""
    from decisions.models import EventType
    from policies.models import Outcome

    calls: list[Any] = []
    real = rfc8785.dumps
    monkeypatch.setattr(canonical.rfc8785, "dumps", lambda value: calls.append(value) or real(value))
    event = {"seq": 3, "type": EventType.EVALUATE, "payload": {"outcome": Outcome.ALLOW, "n": 1}}
    assert canonical.canonical_json(event) == real(event)
    assert calls == []


def test_the_verifier_still_reports_an_event_it_cannot_hash() -> None:
    event = {
        "decision_id": "TMEM_X",
        "event_id": "evt_X",
        "seq": 1,
        "type": "context",
        "timestamp": "2026-11-27T00:00:00.000000Z",
        "actor": {"kind": "agent", "id": "a", "name": "a"},
        "payload": {"n": 2**60},
        "prev_hash": "0" * 64,
        "hash": "0" * 64,
    }
    broken = ChainVerifier("TMEM_X").feed([event])
    assert broken is not None and broken.seq == 1
    assert broken.reason.startswith("event cannot be hashed")


def test_a_typical_event_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    real = rfc8785.dumps

    def counting(value: Any) -> bytes:
        calls.append(value)
        return real(value)

    monkeypatch.setattr(canonical.rfc8785, "dumps", counting)
    event = {
        "decision_id": "TMEM_X",
        "seq": 7,
        "actor": {"kind": "agent", "id": "agent_1", "name": "bot"},
        "payload": {
            "context": {"step": "naïve 🚀", "files": ["a.py"], "ok": True, "none": None, "ratio": 0.25}
        },
    }
    assert canonical.canonical_json(event) == real(event)
    # orjson wrote it all; the float's text is Python's repr, which ECMAScript's equals here
    assert calls == []
