"""REST responses written by orjson (tracemem_site/renderers.py) are DRF's JSONRenderer output (issue 17)."""

from __future__ import annotations

import datetime
import decimal
import json
import uuid
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework.renderers import JSONRenderer

from tracemem_site.renderers import FastJSONRenderer

json_without_floats = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text() | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)


def both(data: Any, accepted: str | None = None) -> tuple[bytes, bytes]:
    return FastJSONRenderer().render(data, accepted, {}), JSONRenderer().render(data, accepted, {})


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), json_without_floats))
def test_same_bytes_as_drf_without_floats(data: Any) -> None:
    fast, drf = both(data)
    assert fast == drf


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(), json_values))
def test_same_values_as_drf_with_any_numbers(data: Any) -> None:
    fast, drf = both(data)
    assert json.loads(fast) == json.loads(drf)


def test_what_orjson_leaves_to_drf_is_written_by_drf() -> None:
    moment = datetime.datetime(2026, 11, 27, 16, 0, 0, 123456, tzinfo=datetime.UTC)
    data = {
        "at": moment,
        "day": moment.date(),
        "amount": decimal.Decimal("12.50"),
        "id": uuid.UUID("12345678-1234-5678-1234-567812345678"),
        "huge": 2**70,
        "line separators": "a\u2028b\u2029c",
    }
    fast, drf = both(data)
    assert fast == drf
    assert both({1: "int key"}) == (b'{"1":"int key"}', b'{"1":"int key"}')
    fast, drf = both({"a": [1, 2]}, "application/json; indent=4")
    assert fast == drf and b"\n    " in fast
    assert FastJSONRenderer().render(None) == b""
