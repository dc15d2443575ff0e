"""REST door of the admin audit log: ``GET /api/v1/admin/audit-log`` (docs/contract/interfaces.md, superusers)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from audit import selectors
from tracemem_site.rest import ERROR_RESPONSES as _ERRORS
from tracemem_site.rest import HumanAPIView, actor_from_request

_ENTRY = inline_serializer(
    "AuditEntry",
    fields={
        "seq": serializers.IntegerField(),
        "at": serializers.CharField(help_text="ISO-8601 UTC with microseconds and Z"),
        "actor": serializers.DictField(help_text="{kind: user|system, id, name}"),
        "action": serializers.CharField(help_text="e.g. route.update, agent_key.issue"),
        "object_type": serializers.CharField(),
        "object_id": serializers.CharField(),
        "before": serializers.JSONField(
            allow_null=True, help_text="redacted snapshot; null if it did not exist"
        ),
        "after": serializers.JSONField(allow_null=True, help_text="redacted snapshot; null if removed"),
        "prev_hash": serializers.CharField(),
        "hash": serializers.CharField(help_text="SHA-256 of the RFC 8785 JSON of the fields above"),
    },
)


class AuditLogView(HumanAPIView):
    @extend_schema(
        operation_id="admin_audit_log",
        description=(
            "Every change of TraceMem's configuration, newest first, hash-chained (superusers only). "
            "Secrets never appear: before/after are redacted snapshots."
        ),
        parameters=[
            OpenApiParameter("actor", str, description="actor id (user_12, system) or name"),
            OpenApiParameter(
                "object", str, description="object type (route) or type:id (route:route_finance)"
            ),
            OpenApiParameter("since", str, description="ISO-8601; entries at or after it"),
            OpenApiParameter("until", str, description="ISO-8601; entries before it"),
            OpenApiParameter("cursor", str, description="next_cursor of the previous page"),
            OpenApiParameter(
                "limit", int, description=f"1-{selectors.MAX_LIMIT}, default {selectors.DEFAULT_LIMIT}"
            ),
        ],
        responses={
            200: inline_serializer(
                "AuditLogPage",
                fields={
                    "entries": serializers.ListField(child=_ENTRY),
                    "next_cursor": serializers.CharField(allow_null=True),
                },
            ),
            **_ERRORS,
        },
    )
    def get(self, request: Request) -> Response:
        # A repeated parameter reaches the selector as a list, which it refuses (never "last one wins").
        query = {k: v[0] if len(v) == 1 else v for k, v in request.query_params.lists()}
        page = selectors.audit_log_page(actor_from_request(request), query)
        return Response(
            {"entries": [selectors.entry_as_dict(e) for e in page.entries], "next_cursor": page.next_cursor}
        )
