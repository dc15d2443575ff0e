"""The inputs of the data tools, declared once for the MCP and REST doors (docs/inputs.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tracemem_core.errors import InvalidArgument
from tracemem_core.inputs import Input, JsonObject


class ProductsList(Input):
    tool_name = "products_list"

    purpose: str | None = Field(None, description="only products that allow this purpose")


class ProductGet(Input):
    tool_name = "product_get"

    product: str | None = Field(None, description="product_id (from products_list)")
    name: str | None = Field(None, description="alias of product")

    @model_validator(mode="after")
    def _alias(self) -> ProductGet:
        self.product = self.product if self.product is not None else self.name
        if self.name is not None and self.product != self.name:
            raise InvalidArgument(
                "product and name are the same argument (one is an alias) with different values; send only one",
                field="product",
            )
        return self


def read_multiple(allow_multiple: bool | None, result_mode: str | None) -> bool | None:
    """``allow_multiple``, or ``result_mode`` said in words (``"multiple"`` = true); both sent must agree.

    result_mode used to be silently ignored beside allow_multiple; which one was meant cannot be
    known, so disagreeing values are refused (docs/inputs.md). Also used by the read service.
    """
    from_mode = None if result_mode is None else result_mode == "multiple"
    if allow_multiple is not None and from_mode is not None and allow_multiple != from_mode:
        raise InvalidArgument(
            f"allow_multiple={str(allow_multiple).lower()} and result_mode={result_mode!r} "
            "disagree (result_mode is an alias of allow_multiple); send only one",
            field="allow_multiple",
        )
    return allow_multiple if allow_multiple is not None else from_mode


class DecisionRead(Input):
    tool_name = "decision_read"

    decision_id: str
    product: str = Field(description="product_id from products_list")
    purpose: str = Field(description="one of the product's allowed_purposes")
    query: JsonObject | None = Field(None, description="exposed field → value; equality filters, ANDed")
    allow_multiple: bool | None = Field(
        None, description="false (default): at most one record, [conflict] if more match; true: all matches"
    )
    result_mode: Literal["single", "multiple"] | None = Field(
        None, description='alias of allow_multiple: "multiple" = true, "single" = false'
    )

    @model_validator(mode="after")
    def _alias(self) -> DecisionRead:
        # result_mode is allow_multiple said in words. Both sent and disagreeing is refused: which
        # one was meant cannot be known (it used to be silently ignored beside allow_multiple).
        self.allow_multiple = read_multiple(self.allow_multiple, self.result_mode)
        return self


class DecisionWrite(Input):
    tool_name = "decision_write"

    decision_id: str
    product: str = Field(description="product_id of a write product")
    purpose: str = Field(description="one of the product's allowed_purposes")
    mutation: JsonObject | None = Field(
        None,
        description="required except for a delete by object keys; insert {records: [{..}]} or {data: {..}}; update {fields: {..}} or {records: [..]}; "
        "delete {records: [..]} or keys only",
    )
    operation: Literal["insert", "update", "delete"] | None = Field(
        None, description="defaults to the product's operation"
    )
    keys: JsonObject | list[str] | None = Field(
        None,
        description="an object (key field → value) or an array of key field names (with mutation.records)",
    )
    idempotency_key: str | None = Field(None, description="reuse it when retrying; nothing is written twice")
    return_created: bool = Field(False, description="return the inserted records")
