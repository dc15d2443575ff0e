"""Result shapes, declared for documentation: each operation's answer as a pydantic model.

The result objects themselves are built by ``<app>/serializers.py`` (plain dicts, one function per
shape, shared by the MCP tool and its REST twin). The models here describe those dicts for
OpenAPI (``@extend_schema(responses={200: SomeOut})``, rendered by ``tracemem_site/openapi.py``);
``tests/site/test_openapi_shapes.py`` checks real answers against them, so they cannot drift silently.
Timestamps are ISO-8601 UTC strings (``2026-11-23T23:38:55.203413Z``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

JsonObject = dict[str, Any]


class Output(BaseModel):
    """Base of every result shape (documentation only; not used to build results)."""

    model_config = ConfigDict(extra="forbid")
