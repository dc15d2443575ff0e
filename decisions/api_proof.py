"""REST door for proof and memory: receipts, receipt keys, evidence packs and records (SPEC §3/§4).

Each view: authenticate → shape-check → Actor → one service/selector call → render the same dict
the MCP tool returns.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.auth import AgentKeyAuthentication, PersonalTokenAuthentication
from decisions import evidence, receipts, records
from decisions.inputs import DecisionReceipt, DecisionRecord, DecisionSearch
from decisions.outputs import ReceiptOut, RecordOut, SearchOut
from tracemem_site import safejson
from tracemem_site.openapi import query_parameters
from tracemem_site.rest import ERROR_RESPONSES as _ERRORS
from tracemem_site.rest import actor_from_request, operation_input


def _json_list(value: str) -> list[Any] | None:
    if not value.lstrip().startswith("["):
        return None
    try:
        parsed = safejson.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, list) else None


class DecisionReceiptView(APIView):
    @extend_schema(operation_id="decision_receipt", responses={200: ReceiptOut, **_ERRORS})
    def get(self, request: Request, decision_id: str) -> Response:
        args = operation_input(request, DecisionReceipt, path={"decision_id": decision_id})
        return Response(
            receipts.decision_receipt(actor=actor_from_request(request), decision_id=args.decision_id)
        )


class DecisionEvidenceView(APIView):
    # The owning agent (agent key), reviewers and auditors (browser session or personal token).
    # Agent-key authentication goes last: it answers 401 "missing" when there is no header at all,
    # which would otherwise end the chain before a browser session is looked at.
    authentication_classes = [PersonalTokenAuthentication, SessionAuthentication, AgentKeyAuthentication]

    @extend_schema(operation_id="decision_evidence", responses={200: dict, **_ERRORS})
    def get(self, request: Request, decision_id: str) -> Response:
        pack = evidence.evidence_pack(actor=actor_from_request(request), decision_id=decision_id)
        response = Response(pack)
        if request.query_params.get("download"):
            response["Content-Disposition"] = (
                f'attachment; filename="evidence-{pack["decision"]["decision_id"]}.json"'
            )
        return response


class ReceiptKeyOut(serializers.Serializer):
    """One published receipt key, as ``decisions.receipts.receipt_key_out`` returns it."""

    key_id = serializers.CharField()
    algorithm = serializers.ChoiceField(choices=["ed25519"])
    public_key = serializers.CharField(help_text="raw Ed25519 public key, base64url without padding")
    valid_from = serializers.DateTimeField()
    valid_to = serializers.DateTimeField(allow_null=True, help_text="null while the key is current")


class ReceiptKeysView(APIView):
    """Public: anyone must be able to fetch the keys that verify a receipt."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="receipt_keys",
        responses={200: ReceiptKeyOut(many=True)},
        description="Every receipt key ever used, oldest first: a JSON array.",
    )
    def get(self, request: Request) -> Response:
        return Response(receipts.receipt_keys_published())


class RecordsView(APIView):
    @extend_schema(
        operation_id="decision_record", request=DecisionRecord, responses={201: RecordOut, **_ERRORS}
    )
    def post(self, request: Request) -> Response:
        args = operation_input(request, DecisionRecord)
        record = records.decision_record(
            actor=actor_from_request(request),
            title=args.title,
            category=args.category,
            context=args.context,
            decision=args.decision,
            rationale=args.rationale,
            alternatives_considered=args.alternatives_considered,
            tags=args.tags,
            constraints=args.constraints,
            consequences=args.consequences,
            supersedes=args.supersedes,
        )
        return Response(records.record_out(record), status=201)

    @extend_schema(
        operation_id="decision_search",
        parameters=query_parameters(DecisionSearch),
        responses={200: SearchOut, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        data: dict[str, Any] = {
            name: value for name, value in params.items() if value != "" and name != "tags"
        }
        tag_values: list[str] = []
        for value in params.getlist("tags"):
            # Comma-separated, repeated, or a JSON array (what generic clients send for a list).
            parsed = _json_list(value)
            tag_values.extend(parsed if parsed is not None else [t for t in value.split(",") if t.strip()])
        if tag_values:
            data["tags"] = tag_values
        args = operation_input(request, DecisionSearch, data=data)
        found = records.decision_search(
            actor=actor_from_request(request),
            query=args.query,
            category=args.category,
            tags=args.tags,
            status=args.status,
            limit=args.limit,
        )
        return Response(records.search_out(found))
