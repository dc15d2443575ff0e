"""Identifiers (tracemem_core/ids.py): a ULID's text written by a table of base-32 digit pairs
instead of python-ulid's digit-by-digit encoder (docs/performance.md section 30), the same text."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st
from ulid import ULID, base32

from tracemem_core import ids


@given(st.binary(min_size=16, max_size=16))
def test_a_ulid_is_written_as_python_ulid_writes_it(value: bytes) -> None:
    assert ids.ulid_text(value) == base32.encode(value)


def test_the_extremes_and_each_digit_position() -> None:
    for value in (
        bytes(16),
        b"\xff" * 16,
        *(bytes([0] * i + [1 << b] + [0] * (15 - i)) for i in range(16) for b in range(8)),
    ):
        assert ids.ulid_text(value) == base32.encode(value)


def test_a_new_id_is_its_prefix_and_a_current_ulid() -> None:
    before = int(time.time() * 1000)
    made = ids.new_id(ids.DECISION_PREFIX)
    after = int(time.time() * 1000)
    assert ids.has_format(made, ids.DECISION_PREFIX)
    parsed = ULID.from_str(made.removeprefix(ids.DECISION_PREFIX))
    assert before <= parsed.milliseconds <= after
    assert ids.new_id(ids.EVENT_PREFIX) != ids.new_id(ids.EVENT_PREFIX)
