"""The input of ``decision_evaluate``, declared once for the MCP and REST doors (docs/inputs.md)."""

from __future__ import annotations

from pydantic import Field, model_validator

from tracemem_core.inputs import Input, JsonObject, first_present


class DecisionEvaluate(Input):
    tool_name = "decision_evaluate"

    decision_id: str
    policy_id: str | None = Field(
        None, description="required (or its alias policy): a policy capabilities_get lists"
    )
    inputs: JsonObject | None = Field(
        None, description="the facts the policy needs; exactly one of inputs / inputs_ref"
    )
    inputs_ref: str | None = Field(None, description="event_id of an earlier decision_read in this decision")
    policy: str | None = Field(None, description="alias of policy_id")

    @model_validator(mode="after")
    def _alias(self) -> DecisionEvaluate:
        self.policy_id = first_present(
            {"policy_id": self.policy_id, "policy": self.policy}, "policy_id", "policy"
        )
        return self
