"""Result shapes of the data tools (documentation: tracemem_site/outputs.py)."""

from __future__ import annotations

from pydantic import Field

from tracemem_core.outputs import JsonObject, Output


class ProductSummary(Output):
    product_id: str
    name: str
    description: str
    permissions: list[str]
    purposes: list[str]


class ProductsListOut(Output):
    products: list[ProductSummary]


class ProductField(Output):
    name: str
    type: str
    primary_key: bool
    nullable: bool
    writable: bool
    required: bool


class ProductRestrictions(Output):
    max_rows: int
    result_modes: list[str]
    required_fields: list[str]
    writable_fields: list[str]
    requires_approval: bool


class ProductOut(Output):
    product_id: str
    name: str
    description: str
    version: int
    hash: str
    operation: str
    permissions: list[str]
    allowed_purposes: list[str]
    schema_: list[ProductField] = Field(alias="schema")
    exposed_schema: list[ProductField]
    key_fields: list[str]
    restrictions: ProductRestrictions
    policies: list[str]
    example_queries: list[JsonObject]


class ReadSummary(Output):
    rows: int
    fields: list[str]
    truncated: bool | None = None


class ReadOut(Output):
    event_id: str
    product: str
    data_ref: str
    records: list[JsonObject]
    summary: ReadSummary


class WriteOut(Output):
    event_id: str
    product: str
    operation: str
    status: str
    affected_rows: int
    data_ref: str
    created_records: list[JsonObject] | None = None


# --- admin API -------------------------------------------------------------------------------


class DataSourceOut(Output):
    source_id: str
    name: str
    kind: str
    dsn: str
    has_secret: bool
    created_at: str
    updated_at: str | None


class DataSourceList(Output):
    data_sources: list[DataSourceOut]


class GrantSummary(Output):
    agent_id: str
    permissions: list[str]


class ProductAdminOut(Output):
    product_id: str
    name: str
    description: str
    version: int
    hash: str | None
    status: str
    operation: str
    source: str | None
    table: str
    fields: list[JsonObject]
    key_fields: list[str]
    allowed_purposes: list[str]
    max_rows: int
    result_modes: list[str]
    policies: list[str]
    requires_approval: bool
    example_queries: list[JsonObject]
    grants: list[GrantSummary]
    created_at: str
    published_at: str | None


class ProductAdminList(Output):
    products: list[ProductAdminOut]


class ProductGrantOut(Output):
    product_id: str
    agent_id: str
    permissions: list[str]
