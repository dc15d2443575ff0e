"""All the tools through both doors with the same good and bad inputs: the same results, the same
refusals word for word (issue 16: each operation's input is declared once, in ``<app>/inputs.py``).

MCP calls go through the official ``mcp`` client over real HTTP; REST calls through the Django test
client. A path parameter of the REST route (``decision_id``, ``product``) goes into the path,
the rest into the body (POST) or the query string (GET), as ``tests/mcp_helpers.REST_ROUTES`` says.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from typing import Any, get_args

import jsonschema
import pytest
from django.test import Client, override_settings

from agents.models import Agent
from decisions import receipts
from decisions import services as decision_services
from decisions.inputs import Category, DecisionRecord, Mode, SearchStatus
from decisions.models import AutomationMode, Decision, RecordCategory, TraceEvent
from decisions.records import SEARCH_STATUSES
from products import demo as product_demo
from products.demo import demo_tables_create
from tests.mcp_door.test_official_client import SPEC_TOOLS
from tests.mcp_helpers import REST_ROUTES, VOLATILE_KEYS, error_code, jsonrpc, mcp_calls, rest_call, shape
from tests.ui_scenario import make_route, publish_refund_policy
from tracemem_core.actor import Actor
from tracemem_core.inputs import tool_schema

SYSTEM = Actor.system("test")
# Values that differ between two decisions made one after the other.
VOLATILE = VOLATILE_KEYS | {
    "data_ref",
    "approval_id",
    "pending_approval_id",
    "expires_at",
    "signature",
    "signed_at",
    "event_count",
    "inclusion_reason",  # names the decision's own leaf in the receipt log
}


@pytest.fixture
def world(transactional_db: Any, make_agent: Any) -> Iterator[tuple[Agent, str]]:
    agent, key = make_agent("contract-agent")
    demo_tables_create(reset=True)
    product_demo.products_seed_demo(actor=SYSTEM, agent=agent)
    publish_refund_policy(agent)
    make_route()
    receipts._load_signing_key.cache_clear()
    with override_settings(TRACEMEM_RECEIPT_KEY=base64.b64encode(bytes(range(1, 33))).decode()):
        yield agent, key
    receipts._load_signing_key.cache_clear()


def _open(agent: Agent) -> str:
    return decision_services.decision_create(
        actor=Actor.for_agent(agent), intent="customer.refund", automation_mode="autonomous"
    ).decision_id


RECORD = {
    "title": "Cache capabilities per key",
    "category": "architecture",
    "context": "capabilities_get is called on every session start.",
    "decision": "Cache it in Redis for a minute.",
    "rationale": "Memoizing avoids repeated grant queries on hot paths.",
    "alternatives_considered": ["no cache", {"option": "per-process cache"}],
    "tags": ["cache", "mcp"],
}

# Each step: tool → arguments given the door's own decision id.
GOOD: list[tuple[str, Callable[[str], dict[str, Any]]]] = [
    ("capabilities_get", lambda d: {}),
    ("products_list", lambda d: {"purpose": "order_processing"}),
    ("product_get", lambda d: {"product": "pg_customers_v1"}),
    ("decision_add_context", lambda d: {"decision_id": d, "payload": {"step": "look up the customer"}}),
    ("decision_get", lambda d: {"decision_id": d}),
    (
        "decision_read",
        lambda d: {
            "decision_id": d,
            "product": "pg_customers_v1",
            "purpose": "customer_support",
            "query": {"customer_id": 1},
            "allow_multiple": False,
            "result_mode": "single",  # the same thing said twice is fine
        },
    ),
    (
        "decision_write",
        lambda d: {
            "decision_id": d,
            "product": "pg_orders_update_v1",
            "purpose": "order_processing",
            "keys": {"order_id": 2},
            "mutation": {"fields": {"status": "shipped"}},
            "idempotency_key": "retry-1",
        },
    ),
    ("decision_evaluate", lambda d: {"decision_id": d, "policy": "refund_policy", "inputs": {"amount": 250}}),
    ("decision_request_approval", lambda d: {"decision_id": d, "title": "Refund 250 EUR", "message": "T-42"}),
    ("decision_wait", lambda d: {"decision_id": d, "timeout_seconds": 0}),
    ("decision_trace", lambda d: {"decision_id": d, "after_seq": 1, "limit": 2}),
    ("decision_close", lambda d: {"decision_id": d, "outcome": "rollback"}),
    ("decision_receipt", lambda d: {"decision_id": d}),
    ("decision_record", lambda d: RECORD),
    ("decision_search", lambda d: {"tags": ["cache"], "category": "architecture", "limit": 5}),
]


def test_every_tool_gives_the_same_result_through_mcp_and_rest(live_server: Any, world: Any) -> None:
    agent, key = world
    assert {tool for tool, _ in GOOD} | {"decision_create"} == SPEC_TOOLS == set(REST_ROUTES)
    created = {
        door: rest_call(
            key, "decision_create", {"intent": "customer.refund", "automation_mode": "autonomous"}
        )
        if door == "rest"
        else mcp_calls(
            live_server,
            key,
            [("decision_create", {"intent": "customer.refund", "automation_mode": "autonomous"})],
        )[0]
        for door in ("mcp", "rest")
    }
    assert (
        shape(created["mcp"])
        == shape(created["rest"])
        == (
            False,
            {"decision_id": "<str>", "status": "open", "created_at": "<str>"},
        )
    )
    ids = {door: result[1]["decision_id"] for door, result in created.items()}
    documented = documented_results()
    jsonschema.validate(created["rest"][1], documented["decision_create"])
    for tool, arguments in GOOD:
        mcp = mcp_calls(live_server, key, [(tool, arguments(ids["mcp"]))])[0]
        rest = rest_call(key, tool, arguments(ids["rest"]))
        assert mcp[0] is False and rest[0] is False, (tool, mcp, rest)
        # The answer is what OpenAPI says it is (additional properties are refused by the shapes).
        jsonschema.validate(rest[1], documented[tool])
        if tool == "decision_search":  # both records exist by now; each door finds both
            assert [r["title"] for r in mcp[1]["results"]] == [RECORD["title"]] * 2
        assert shape(mcp, VOLATILE) == shape(rest, VOLATILE), tool
    for door, decision_id in ids.items():
        assert Decision.objects.get(decision_id=decision_id).status == "aborted", door


def _json_schema(schema: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` as JSON Schema's null branch."""
    if isinstance(schema, list):
        return [_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _json_schema(v) for k, v in schema.items() if k not in ("nullable", "properties", "schemas")}
    for names in ("properties", "schemas"):  # maps of names to schemas (a field may be called nullable)
        if isinstance(schema.get(names), dict):
            out[names] = {name: _json_schema(sub) for name, sub in schema[names].items()}
    if schema.get("nullable") is True:
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def documented_results() -> dict[str, Any]:
    """tool → the JSON Schema of its REST 2xx answer, from the served OpenAPI document."""
    document = Client().get("/api/schema/?format=json").json()
    components = _json_schema(document["components"])
    out = {}
    for tool, (method, template) in REST_ROUTES.items():
        operation = document["paths"][template][method.lower()]
        assert operation["operationId"] == tool
        (answer,) = [r for code, r in operation["responses"].items() if code.startswith("2")]
        schema = _json_schema(answer["content"]["application/json"]["schema"])
        out[tool] = {"allOf": [schema], "components": components}
    return out


# Inputs refused before anything is done, each with the words both doors must use. ``D`` stands
# for the caller's open decision.
D = "<decision>"
BAD: list[tuple[str, dict[str, Any], str]] = [
    (
        "capabilities_get",
        {"verbose": "1"},
        "capabilities_get does not take the argument 'verbose'; allowed: (none)",
    ),
    (
        "products_list",
        {"purposes": "support"},
        "products_list does not take the argument 'purposes'; allowed: purpose",
    ),
    (
        "product_get",
        {"product": "pg_customers_v1", "name": "pg_orders_insert_v1"},
        "product and name are the same argument (one is an alias) with different values; send only one",
    ),
    ("decision_create", {"automation_mode": "propose"}, "intent is required"),
    ("decision_create", {"intent": 5, "automation_mode": "propose"}, "intent must be a string, got number"),
    (
        "decision_create",
        {"intent": "a.b", "automation_mode": "yolo"},
        "automation_mode must be one of propose, approve, override, autonomous; got 'yolo'",
    ),
    (
        "decision_create",
        {"intent": "a.b", "automation_mode": "propose", "metadata": [1]},
        "metadata must be a JSON object, got array",
    ),
    (
        "decision_create",
        {"intent": "a.b", "automation_mode": "propose", "metadta": {}},
        "decision_create does not take the argument 'metadta'; "
        "allowed: actor, automation_mode, instance, intent, metadata, version",
    ),
    ("decision_add_context", {"decision_id": D}, "context is required"),
    ("decision_add_context", {"decision_id": D, "context": "x"}, "context must be a JSON object, got string"),
    (
        "decision_add_context",
        {"decision_id": D, "context": {"a": 1}, "payload": {"a": 2}},
        "context and payload are the same argument (one is an alias) with different values; send only one",
    ),
    (
        "decision_add_context",
        {"decision_id": D, "contexts": "x"},
        "contexts must be an array, got string",
    ),
    (
        "decision_get",
        {"decision_id": "TMEM_01ARZ3NDEKTSV4RRFFQ69G5FAV"},
        "decision TMEM_01ARZ3NDEKTSV4RRFFQ69G5FAV was not found; check the id returned by decision_create",
    ),
    (
        "decision_get",
        {"decision_id": D, "with_trace": "true"},
        "decision_get does not take the argument 'with_trace'; allowed: decision_id",
    ),
    ("decision_trace", {"decision_id": D, "limit": 0}, "limit must be an integer from 1 to 1000; got 0"),
    (
        "decision_trace",
        {"decision_id": D, "limit": "many"},
        "limit must be an integer from 1 to 1000; got 'many'",
    ),
    (
        "decision_trace",
        {"decision_id": D, "after_seq": -1},
        "after_seq must be an integer of at least 0; got -1",
    ),
    (
        "decision_close",
        {"decision_id": D, "action": "finish"},
        "action must be one of commit, abort, rollback; got 'finish'",
    ),
    (
        "decision_close",
        {"decision_id": D, "action": "commit", "outcome": "abort"},
        "action and outcome are the same argument (one is an alias) with different values; send only one",
    ),
    (
        "decision_read",
        {
            "decision_id": D,
            "product": "pg_customers_v1",
            "purpose": "customer_support",
            "allow_multiple": "yes",
        },
        "allow_multiple must be true or false, got string",
    ),
    (
        "decision_read",
        {
            "decision_id": D,
            "product": "pg_customers_v1",
            "purpose": "customer_support",
            "allow_multiple": False,
            "result_mode": "multiple",
        },
        "allow_multiple=false and result_mode='multiple' disagree (result_mode is an alias of allow_multiple); "
        "send only one",
    ),
    ("decision_read", {"decision_id": D, "product": "pg_customers_v1"}, "purpose is required"),
    (
        "decision_read",
        {"decision_id": D, "product": "pg_customers_v1", "purpose": "customer_support", "query": [1]},
        "query must be a JSON object, got array",
    ),
    (
        "decision_write",
        {"decision_id": D, "product": "pg_orders_update_v1", "purpose": "order_processing", "keys": 5},
        "keys must be a JSON object or an array of strings, got number",
    ),
    (
        "decision_write",
        {
            "decision_id": D,
            "product": "pg_orders_update_v1",
            "purpose": "order_processing",
            "mutation": {"fields": {"status": "x"}},
            "return_created": "yes",
        },
        "return_created must be true or false, got string",
    ),
    (
        "decision_write",
        {
            "decision_id": D,
            "product": "pg_orders_update_v1",
            "purpose": "order_processing",
            "operation": "upsert",
        },
        "operation must be one of insert, update, delete; got 'upsert'",
    ),
    ("decision_evaluate", {"decision_id": D, "policy_id": 5}, "policy_id must be a string, got number"),
    (
        "decision_evaluate",
        {"decision_id": D, "policy_id": "refund_policy", "policy": "other_policy"},
        "policy_id and policy are the same argument (one is an alias) with different values; send only one",
    ),
    (
        "decision_evaluate",
        {"decision_id": D, "policy_id": "refund_policy", "inputs": [250]},
        "inputs must be a JSON object, got array",
    ),
    (
        "decision_request_approval",
        {"decision_id": D, "require_rationale": "yes"},
        "require_rationale must be true or false, got string",
    ),
    (
        "decision_request_approval",
        {"decision_id": D, "expires_in_seconds": 1.5},
        "expires_in_seconds must be an integer; got 1.5",
    ),
    (
        "decision_wait",
        {"decision_id": D, "timeout_seconds": 60},
        "timeout_seconds must be a number from 0 to 50; got 60",
    ),
    (
        "decision_wait",
        {"decision_id": D, "timeout_seconds": "soon"},
        "timeout_seconds must be a number from 0 to 50; got 'soon'",
    ),
    (
        "decision_receipt",
        {"decision_id": D, "pretty": "1"},
        "decision_receipt does not take the argument 'pretty'; allowed: decision_id",
    ),
    ("decision_record", {k: v for k, v in RECORD.items() if k != "title"}, "title is required"),
    ("decision_record", {**RECORD, "category": "taste"}, None),
    ("decision_record", {**RECORD, "tags": ["cache", 1]}, "tags[1] must be a string, got number"),
    (
        "decision_record",
        {**RECORD, "constraints": 5},
        "constraints must be a string, an array or a JSON object, got number",
    ),
    (
        "decision_record",
        {**RECORD, "supersede": "TMEM_01ARZ3NDEKTSV4RRFFQ69G5FAV"},
        "decision_record does not take the argument 'supersede'; allowed: alternatives_considered, category, "
        "consequences, constraints, context, decision, rationale, supersedes, tags, title",
    ),
    ("decision_search", {"limit": 0}, "limit must be an integer from 1 to 100; got 0"),
    ("decision_search", {"status": "weird"}, None),
    ("decision_search", {"category": "taste"}, None),
]


def test_the_same_bad_input_is_refused_in_the_same_words_through_both_doors(
    live_server: Any, world: Any
) -> None:
    agent, key = world
    decision_id = _open(agent)
    calls = [(tool, {k: decision_id if v == D else v for k, v in args.items()}) for tool, args, _ in BAD]
    assert {tool for tool, _ in calls} == SPEC_TOOLS
    through_mcp = mcp_calls(live_server, key, calls)
    for (tool, arguments), (_, _, expected), mcp in zip(calls, BAD, through_mcp, strict=True):
        rest = rest_call(key, tool, arguments)
        assert mcp == rest, (tool, arguments)
        code = "not_found" if "not found" in (expected or "") else "invalid_argument"
        assert mcp[0] is True and error_code(mcp[1]) == code, (tool, arguments, mcp)
        if expected is not None:
            assert mcp[1] == f"[{code}] {expected}", (tool, arguments)
    # Nothing was done: the decision holds only its creation event, no record was written.
    assert list(TraceEvent.objects.filter(decision_id=decision_id).values_list("type", flat=True)) == [
        "created"
    ]
    assert Decision.objects.filter(agent=agent).count() == 1


def test_enumerations_spelled_out_for_the_type_checker_match_the_models() -> None:
    assert list(get_args(Category)) == RecordCategory.values
    assert list(get_args(Mode)) == AutomationMode.values
    assert get_args(SearchStatus) == SEARCH_STATUSES


def _untyped(schema: Any, path: str) -> list[str]:
    """Paths of subschemas that constrain nothing (no type, enum or anyOf)."""
    if not isinstance(schema, dict):
        return []
    found = [] if {"type", "enum", "anyOf", "$ref", "const"} & set(schema) else [path]
    for key in ("anyOf", "oneOf", "allOf"):
        for i, branch in enumerate(schema.get(key, [])):
            found += _untyped(branch, f"{path}.{key}[{i}]")
    for name, sub in schema.get("properties", {}).items():
        found += _untyped(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        found += _untyped(schema["items"], f"{path}.items")
    return found


def test_tools_list_serves_each_input_model_with_a_type_for_every_argument(
    live_server: Any, world: Any
) -> None:
    """The JSON-RPC fast path's tools/list carries the models' schemas (the stock transport gives
    the same bytes: tests/mcp_door/test_fast_path_parity.py)."""
    _, key = world
    tools = {
        t["name"]: t
        for t in jsonrpc(live_server, key, {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).json()[
            "result"
        ]["tools"]
    }
    assert set(tools) == SPEC_TOOLS
    assert tools["decision_record"]["inputSchema"] == tool_schema(DecisionRecord)
    for name, tool in tools.items():
        schema = tool["inputSchema"]
        assert schema["type"] == "object" and schema["additionalProperties"] is False, name
        assert _untyped(schema, name) == [], name
    read = tools["decision_read"]["inputSchema"]["properties"]
    assert read["allow_multiple"]["anyOf"] == [{"type": "boolean"}, {"type": "null"}]
    assert read["result_mode"]["anyOf"][0] == {"enum": ["single", "multiple"], "type": "string"}
    write = tools["decision_write"]["inputSchema"]["properties"]
    assert write["return_created"]["type"] == "boolean"
    assert write["keys"]["anyOf"][:2] == [
        {"additionalProperties": True, "type": "object"},
        {"items": {"type": "string"}, "type": "array"},
    ]


def test_the_read_service_refuses_result_mode_that_disagrees_with_allow_multiple(world: Any) -> None:
    """Python callers of the service get the rule the doors' model applies (docs/inputs.md)."""
    from products.services import reads
    from tracemem_core.errors import InvalidArgument

    agent, _ = world
    decision_id = _open(agent)
    read = {
        "actor": Actor.for_agent(agent),
        "decision_id": decision_id,
        "product": "pg_customers_v1",
        "purpose": "customer_support",
        "query": {"tier": "gold"},
    }
    with pytest.raises(InvalidArgument) as refused:
        reads.decision_read(**read, allow_multiple=False, result_mode="multiple")
    assert refused.value.message.startswith("allow_multiple=false and result_mode='multiple' disagree")
    assert list(TraceEvent.objects.filter(decision_id=decision_id).values_list("type", flat=True)) == [
        "created"
    ]
    agreed = reads.decision_read(**read, allow_multiple=True, result_mode="multiple")
    assert agreed["summary"]["rows"] == len(agreed["records"])
