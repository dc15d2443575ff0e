"""Result shape of ``capabilities_get`` (documentation: tracemem_site/outputs.py)."""

from __future__ import annotations

from tracemem_core.outputs import Output


class GrantedProduct(Output):
    product_id: str
    permissions: list[str]
    purposes: list[str]


class GrantedPolicy(Output):
    policy_id: str
    name: str
    version: int


class Permissions(Output):
    data_products: list[GrantedProduct]
    policies: list[GrantedPolicy]


class ServerInfo(Output):
    name: str
    version: str
    protocol_versions: list[str]


class CapabilitiesOut(Output):
    agent_id: str
    name: str
    permissions: Permissions
    server: ServerInfo
