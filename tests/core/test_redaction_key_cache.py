"""The last line of defence remembers what it made of short keys (issue 17): every key still reads
exactly as ``redact_text`` makes it, the first time and every time after, short or long, and a
secret written as a key never reaches a trace."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from decisions.models import TraceEvent
from tracemem_core.redaction import REDACTED, redact_strings, redact_text

SECRET_KEYS = [
    "password=hunter2hunter2",
    "sk_live_abcdefghijklmnop",
    "ghp_abcdefghijklmnopqrstuvwxyz",
    "postgres://app:s3cret@db/x",
    "4111 1111 1111 1111",
    "Bearer abcdefghijklmnopqrstuvwxyz",
    "x" * 150 + " password=hunter2hunter2",  # beyond the cached length
]
keys = st.sampled_from(SECRET_KEYS) | st.text(max_size=120) | st.sampled_from(["policy_id", "outcome", "now"])


def reference(value: Any) -> Any:
    """redact_strings as it was: redact_text on every key, every time."""
    if isinstance(value, str):
        return redact_text(value, colon_pairs=False)
    if isinstance(value, dict):
        return {
            (redact_text(k, colon_pairs=False) if isinstance(k, str) else k): reference(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [reference(v) for v in value]
    return redact_strings(value)  # integers (cards) and other scalars: unchanged code


@settings(max_examples=400, deadline=None)
@given(st.recursive(st.text() | st.integers(), lambda c: st.dictionaries(keys, c, max_size=4), max_leaves=12))
def test_keys_read_as_redact_text_makes_them_every_time(value: Any) -> None:
    assert redact_strings(value) == reference(value)
    assert redact_strings(value) == reference(value)  # the second time from memory


def test_secret_keys_are_redacted_from_memory_too() -> None:
    for _ in range(2):
        out = redact_strings({key: 1 for key in SECRET_KEYS})
        assert all(REDACTED in key for key in out), out


@pytest.mark.django_db
def test_a_secret_written_as_a_key_never_reaches_the_trace(make_agent: Any, client: Any) -> None:
    _, key = make_agent()
    auth = {"HTTP_AUTHORIZATION": f"Agent {key}"}
    created = client.post(
        "/api/v1/decisions",
        json.dumps({"intent": "a.b.c", "automation_mode": "autonomous"}),
        content_type="application/json",
        **auth,
    ).json()
    did = created["decision_id"]
    for _ in range(2):  # the second append finds the keys remembered
        response = client.post(
            f"/api/v1/decisions/{did}/context",
            json.dumps({"context": {k: "v" for k in SECRET_KEYS}}),
            content_type="application/json",
            **auth,
        )
        assert response.status_code == 201, response.content
    stored = [e.payload for e in TraceEvent.objects.filter(decision_id=did, type="context").order_by("seq")]
    assert len(stored) == 2
    text = json.dumps(stored)
    for secret in ("hunter2hunter2", "abcdefghijklmnop", "s3cret", "4111 1111 1111 1111"):
        assert secret not in text
