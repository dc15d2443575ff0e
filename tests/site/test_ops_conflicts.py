"""Creating something that exists is ``409 conflict`` everywhere (docs/contract/interfaces.md Errors, issue 18): the
same create sent twice through the admin REST API answers 201 then 409 with code ``conflict``,
and the second call changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.apps import apps

from tests.appr_helpers import make_reviewer

pytestmark = pytest.mark.django_db

POLICY = {
    "policy_id": "dup_policy_v1",
    "name": "Duplicate check",
    "rules": [{"name": "always", "when": "true", "outcome": "allow", "message": "ok"}],
}

CASES: dict[str, tuple[str, dict[str, Any], str]] = {
    "policy": ("/api/v1/admin/policies", POLICY, "policies.Policy"),
    "route": (
        "/api/v1/admin/routes",
        {"route_id": "route_dup", "channels": [{"type": "email"}]},
        "approvals.ApprovalRoute",
    ),
    "agent": ("/api/v1/admin/agents", {"name": "dup-agent"}, "agents.Agent"),
    "product": (
        "/api/v1/admin/products",
        {
            "product_id": "dup_product_v1",
            "operation": "read",
            "table": "customers",
            "fields": [
                {"name": "customer_id", "column": "id", "type": "integer", "primary_key": True},
                {"name": "tier", "type": "string"},
            ],
            "allowed_purposes": ["analytics"],
        },
        "products.DataProduct",
    ),
    "data source": (
        "/api/v1/admin/data-sources",
        {"source_id": "dup_source", "dsn": "postgresql://bob:pw-xyz@db.example.com/shop"},
        "products.DataSource",
    ),
}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_creating_an_existing_thing_is_409_conflict(kind: str) -> None:
    path, body, model_name = CASES[kind]
    admin = make_reviewer("root", superuser=True)
    first = admin.post(path, body)
    assert first.status_code == 201, first.content
    count = apps.get_model(model_name).objects.count()
    again = admin.post(path, body)
    assert again.status_code == 409, again.content
    error = again.json()["error"]
    assert error["code"] == "conflict"
    assert "already exists" in error["message"]
    assert apps.get_model(model_name).objects.count() == count
