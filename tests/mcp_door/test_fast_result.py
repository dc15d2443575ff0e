"""A tool's answer written once by orjson (issue 17) is byte for byte the answer FastMCP's conversion
and the pydantic envelope write: wherever ``tool_success_bytes`` answers, it equals that path; where
it cannot prove equality it declines (None) and that path runs."""

from __future__ import annotations

import datetime
import enum
import json
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.models import Outcome
from tracemem_site import mcp_adapter
from tracemem_site.mcp import FastPathMixin, _jsonrpc_result, tool_success_bytes


class Colour(enum.Enum):
    RED = "red"


def reference(request_id: Any, name: str, value: Any) -> bytes:
    """What the fast path wrote before: FastMCP's convert_result, the output check, the envelope."""
    tool = mcp_adapter.registered_tools()[name]
    converted = tool.fn_metadata.convert_result(value)
    return bytes(_jsonrpc_result(request_id, FastPathMixin._normalise(name, converted)).content)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.integers()  # beyond 64 bits: orjson refuses, the pydantic path answers
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.floats(allow_subnormal=True, allow_nan=False, allow_infinity=False)
    | st.text()
    | st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x3F))  # controls, quotes, slashes
    | st.text(alphabet=st.characters(min_codepoint=0x2000, max_codepoint=0x1F6FF))  # U+2028, astral
    | st.sampled_from([Colour.RED, Outcome.ALLOW, uuid.UUID(int=7), datetime.datetime(2026, 1, 2, 3, 4, 5)])
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=25,
)
objects = st.dictionaries(st.text(), values, max_size=6)
ids = st.integers(min_value=-(2**70), max_value=2**70) | st.text()


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(request_id=ids, value=objects, name=st.sampled_from(["decision_get", "decision_evaluate"]))
def test_fast_answer_equals_the_pydantic_path_byte_for_byte(request_id: Any, value: Any, name: str) -> None:
    tool = mcp_adapter.registered_tools()[name]
    fast = tool_success_bytes(request_id, tool, value)
    if fast is not None:
        assert fast == reference(request_id, name, value)


def test_what_tools_return_takes_the_fast_answer() -> None:
    tool = mcp_adapter.registered_tools()["decision_evaluate"]
    value = {
        "event_id": "evt_1",
        "policy_id": "p",
        "policy_version": 3,
        "outcome": Outcome.ALLOW,
        "rationale": {"message": 'über 100 \u2028 "quoted"\n', "rule": None},
        "allowed": True,
        "score": 0.1,
        "ids": ("a", uuid.UUID(int=1)),
        "approval_route_id": None,
    }
    fast = tool_success_bytes(12, tool, value)
    assert fast is not None
    assert fast == reference(12, "decision_evaluate", value)
    answer = json.loads(fast)
    assert answer["result"]["structuredContent"]["rationale"]["rule"] is None
    assert json.loads(answer["result"]["content"][0]["text"]) == answer["result"]["structuredContent"]


def test_values_pydantic_writes_differently_take_the_pydantic_path() -> None:
    tool = mcp_adapter.registered_tools()["decision_get"]
    for value in (
        {"at": datetime.datetime(2026, 1, 2, tzinfo=datetime.UTC)},
        {"big": 2**64},
        {"lone": "\ud800"},
        {1: "non-string key"},
        ["not", "an", "object"],
    ):
        assert tool_success_bytes(1, tool, value) is None, value
