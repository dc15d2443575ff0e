"""The inputs of the decision tools, declared once for the MCP and REST doors (docs/inputs.md)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from decisions.records import MAX_TAGS, SEARCH_LIMIT_DEFAULT, SEARCH_LIMIT_MAX
from decisions.selectors import TRACE_PAGE_DEFAULT, TRACE_PAGE_MAX, WAIT_DEFAULT_SECONDS, WAIT_MAX_SECONDS
from tracemem_core.inputs import DECIMAL, DIGITS, Input, JsonArray, JsonObject, first_present

DecisionId = str
CloseAction = Literal["commit", "abort", "rollback"]
Category = Literal[
    "architecture", "dependency", "schema", "api_design", "infra", "tradeoff", "convention", "other"
]
Mode = Literal["propose", "approve", "override", "autonomous"]
SearchStatus = Literal[
    "open", "needs_approval", "approved", "rejected", "committed", "aborted", "active", "superseded"
]
# Spelled out for the type checker; tests/test_inputs.py keeps them equal to the models' choices.
AfterSeq = Annotated[int, Field(ge=0), DIGITS]
TraceLimit = Annotated[int, Field(ge=1, le=TRACE_PAGE_MAX), DIGITS]
SearchLimit = Annotated[int, Field(ge=1, le=SEARCH_LIMIT_MAX), DIGITS]


class DecisionCreate(Input):
    tool_name = "decision_create"

    intent: str = Field(description="what you are about to do, dotted lowercase domain.entity.action")
    automation_mode: Mode = Field(
        description="propose | approve | override | autonomous; fixed for the decision"
    )
    actor: str | None = None
    instance: str | None = None
    version: str | None = None
    metadata: JsonObject | None = Field(None, description="free-form object; redacted before storage")


class DecisionAddContext(Input):
    tool_name = "decision_add_context"

    decision_id: DecisionId
    context: JsonObject | None = Field(None, description="a non-empty object; redacted before storage")
    summary: str | None = None
    payload: JsonObject | None = Field(None, description="alias of context")
    contexts: list[JsonObject] | None = Field(
        None,
        description="instead of context: up to 100 objects recorded at once, in order, as that many events",
    )

    @model_validator(mode="after")
    def _alias(self) -> DecisionAddContext:
        self.context = first_present({"context": self.context, "payload": self.payload}, "context", "payload")
        return self


class DecisionGet(Input):
    tool_name = "decision_get"

    decision_id: DecisionId


WaitSeconds = Annotated[float, Field(ge=0, le=WAIT_MAX_SECONDS), DECIMAL]


class DecisionWait(Input):
    tool_name = "decision_wait"

    decision_id: DecisionId
    timeout_seconds: WaitSeconds | None = Field(
        None, description=f"seconds to wait at most (default {WAIT_DEFAULT_SECONDS})"
    )


class DecisionTrace(Input):
    tool_name = "decision_trace"

    decision_id: DecisionId
    after_seq: AfterSeq | None = Field(None, description="return the events after this seq (default 0)")
    limit: TraceLimit | None = Field(None, description=f"events per page (default {TRACE_PAGE_DEFAULT})")


class DecisionClose(Input):
    tool_name = "decision_close"

    decision_id: DecisionId
    action: CloseAction | None = Field(None, description="commit, or abort (rollback means abort)")
    summary: str | None = None
    reason: str | None = None
    outcome: CloseAction | None = Field(None, description="alias of action")

    @model_validator(mode="after")
    def _alias(self) -> DecisionClose:
        self.action = first_present({"action": self.action, "outcome": self.outcome}, "action", "outcome")
        return self


class DecisionReceipt(Input):
    tool_name = "decision_receipt"

    decision_id: DecisionId


# A record's free-form parts: a text, a list or an object.
Freeform = str | JsonArray | JsonObject


class DecisionRecord(Input):
    tool_name = "decision_record"

    title: str
    category: Category
    context: str = Field(description="the situation")
    decision: str = Field(description="what was decided")
    rationale: str = Field(description="why")
    alternatives_considered: Freeform | None = None
    tags: list[str] | None = Field(None, max_length=MAX_TAGS, description="short keywords for filtering")
    constraints: Freeform | None = None
    consequences: Freeform | None = None
    supersedes: str | None = Field(None, description="decision_id of an earlier record of yours it replaces")


class DecisionSearch(Input):
    tool_name = "decision_search"

    query: str | None = Field(None, description="words to find in title, context, decision, rationale, tags")
    category: Category | None = None
    tags: list[str] | str | None = Field(None, description="all must match; an array or comma-separated")
    status: SearchStatus | None = Field(None, description="a decision status, or active / superseded")
    limit: SearchLimit | None = Field(None, description=f"default {SEARCH_LIMIT_DEFAULT}")
