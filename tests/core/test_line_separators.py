"""``rawjson.escape_line_separators``: the REST renderer's and the trace page's U+2028/U+2029 escape.

Its quick answer ("no A8 or A9 byte, so neither separator") must never skip a text that holds one:
compared with the plain replacement on generated text, including characters whose UTF-8 has A8/A9
continuation bytes (¨ U+00A8, © U+00A9, 訨 U+8A28...) next to the separators themselves.
"""

from __future__ import annotations

import json

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tracemem_core.rawjson import escape_line_separators

_TRICKY = '\u2028\u2029\u00a8\u00a9\u8a28\u2027\u202a\u0428\U0001f028abc"\\'


def _reference(text: bytes) -> bytes:
    return text.replace(b"\xe2\x80\xa8", b"\\u2028").replace(b"\xe2\x80\xa9", b"\\u2029")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.one_of(st.sampled_from(_TRICKY), st.characters(codec="utf-8"))))
def test_it_escapes_exactly_what_the_plain_replacement_does(value: str) -> None:
    text = orjson.dumps({"v": value})
    escaped = escape_line_separators(text)
    assert escaped == _reference(text)
    assert b"\xe2\x80\xa8" not in escaped and b"\xe2\x80\xa9" not in escaped
    assert json.loads(escaped) == {"v": value}


def test_a_text_with_continuation_bytes_but_no_separator_is_returned_as_it_is() -> None:
    text = "¨ © 訨 — “quotes”".encode()
    assert b"\xa8" in text and b"\xa9" in text
    assert escape_line_separators(text) is text


def test_both_separators_are_escaped() -> None:
    assert escape_line_separators("a\u2028b\u2029c".encode()) == b"a\\u2028b\\u2029c"
