"""REST door for the envelope tools (docs/contract/errors.md). Each view: shape-check → Actor → one service → render."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.auth import ActorSessionAuthentication, AgentKeyAuthentication, PersonalTokenAuthentication
from decisions import evidence, receipts, records, selectors, services
from decisions.models import AutomationMode, RecordCategory
from decisions.serializers import (
    closed_out,
    created_out,
    decision_out,
    event_ref_out,
    events_ref_out,
    trace_page_out,
    wait_out,
)
from tracemem_core import safejson, waits
from tracemem_core.validation import first_present
from tracemem_site.rest import ERROR_RESPONSES as _ERRORS
from tracemem_site.rest import actor_from_request, body, query


class DecisionCreateView(APIView):
    class DecisionCreateInput(serializers.Serializer):
        intent = serializers.CharField(help_text="dotted lowercase domain.entity.action, 2–8 segments")
        automation_mode = serializers.ChoiceField(choices=AutomationMode.values)
        actor = serializers.CharField(required=False)
        instance = serializers.CharField(required=False)
        version = serializers.CharField(required=False)
        metadata = serializers.DictField(required=False, help_text="redacted before storage")

    @extend_schema(
        operation_id="decision_create", request=DecisionCreateInput, responses={201: dict, **_ERRORS}
    )
    def post(self, request: Request) -> Response:
        data = body(request, self.DecisionCreateInput)
        decision = services.decision_create(
            actor=actor_from_request(request),
            intent=data.get("intent"),
            automation_mode=data.get("automation_mode"),
            decision_actor=data.get("actor"),
            instance=data.get("instance"),
            version=data.get("version"),
            metadata=data.get("metadata"),
        )
        return Response(created_out(decision), status=201)


class DecisionGetView(APIView):
    @extend_schema(operation_id="decision_get", responses={200: dict, **_ERRORS})
    def get(self, request: Request, decision_id: str) -> Response:
        return Response(decision_out(selectors.decision_for(actor_from_request(request), decision_id)))


class DecisionWaitView(APIView):
    @extend_schema(
        operation_id="decision_wait",
        description=(
            "Wait until the decision's pending approval is resolved (or the decision otherwise stops "
            "waiting for one), at most timeout_seconds; returns decision_get plus timed_out. "
            "With timed_out true, call again."
        ),
        parameters=[
            OpenApiParameter(
                "timeout_seconds",
                float,
                description=f"0–{selectors.WAIT_MAX_SECONDS} (default {selectors.WAIT_DEFAULT_SECONDS})",
            )
        ],
        responses={200: dict, **_ERRORS},
    )
    def get(self, request: Request, decision_id: str) -> Response:
        params = query(request, ("timeout_seconds",))
        actor = actor_from_request(request)
        try:
            with waits.door_parks():
                outcome = selectors.decision_wait(
                    actor, decision_id, timeout_seconds=params.get("timeout_seconds")
                )
        except waits.ParkRequest:
            return Response(status=204)  # a placeholder: the front waits and replays this request
        return Response(wait_out(outcome))


class DecisionTraceView(APIView):
    @extend_schema(
        operation_id="decision_trace",
        parameters=[
            OpenApiParameter("after_seq", int, description="return events after this seq (default 0)"),
            OpenApiParameter(
                "limit",
                int,
                description=f"events per page, 1–{selectors.TRACE_PAGE_MAX} (default {selectors.TRACE_PAGE_DEFAULT})",
            ),
        ],
        responses={200: dict, **_ERRORS},
    )
    def get(self, request: Request, decision_id: str) -> Response:
        params = query(request, ("after_seq", "limit"))
        decision = selectors.decision_for(actor_from_request(request), decision_id)
        page = selectors.trace_page_dicts(
            decision, after_seq=params.get("after_seq"), limit=params.get("limit")
        )
        return Response(trace_page_out(decision, page))


class DecisionContextView(APIView):
    class DecisionContextInput(serializers.Serializer):
        context = serializers.DictField(required=False, help_text="non-empty object; redacted before storage")
        payload = serializers.DictField(required=False, help_text="alias of context")
        summary = serializers.CharField(required=False)
        contexts = serializers.ListField(
            child=serializers.DictField(),
            required=False,
            max_length=services.CONTEXTS_MAX,
            help_text=f"instead of context: 1 to {services.CONTEXTS_MAX} objects, recorded as that many "
            "events in one call; the answer is then {events: [{event_id, seq, timestamp}]}",
        )

    @extend_schema(
        operation_id="decision_add_context", request=DecisionContextInput, responses={201: dict, **_ERRORS}
    )
    def post(self, request: Request, decision_id: str) -> Response:
        data = body(request, self.DecisionContextInput)
        if data.get("contexts") is not None:
            events = services.decision_add_contexts(
                actor=actor_from_request(request),
                decision_id=decision_id,
                contexts=data["contexts"],
                context=first_present(data, "context", "payload"),
                summary=data.get("summary"),
            )
            return Response(events_ref_out(events), status=201)
        event = services.decision_add_context(
            actor=actor_from_request(request),
            decision_id=decision_id,
            context=first_present(data, "context", "payload"),
            summary=data.get("summary"),
        )
        return Response(event_ref_out(event), status=201)


class DecisionCloseView(APIView):
    class DecisionCloseInput(serializers.Serializer):
        action = serializers.ChoiceField(
            choices=["commit", "abort", "rollback"], required=False, help_text="rollback = abort"
        )
        outcome = serializers.ChoiceField(
            choices=["commit", "abort", "rollback"], required=False, help_text="alias of action"
        )
        summary = serializers.CharField(required=False)
        reason = serializers.CharField(required=False)

    @extend_schema(
        operation_id="decision_close", request=DecisionCloseInput, responses={200: dict, **_ERRORS}
    )
    def post(self, request: Request, decision_id: str) -> Response:
        data = body(request, self.DecisionCloseInput)
        decision = services.decision_close(
            actor=actor_from_request(request),
            decision_id=decision_id,
            action=first_present(data, "action", "outcome"),
            summary=data.get("summary"),
            reason=data.get("reason"),
        )
        return Response(closed_out(decision))


def _json_list(value: str) -> list[Any] | None:
    if not value.lstrip().startswith("["):
        return None
    try:
        parsed = safejson.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, list) else None


class DecisionReceiptView(APIView):
    @extend_schema(operation_id="decision_receipt", responses={200: dict, **_ERRORS})
    def get(self, request: Request, decision_id: str) -> Response:
        return Response(receipts.decision_receipt(actor=actor_from_request(request), decision_id=decision_id))


class DecisionEvidenceView(APIView):
    # The owning agent (agent key), reviewers and auditors (browser session or personal token).
    # Agent-key authentication goes last: it answers 401 "missing" when there is no header at all,
    # which would otherwise end the chain before a browser session is looked at.
    authentication_classes = [PersonalTokenAuthentication, ActorSessionAuthentication, AgentKeyAuthentication]

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
    class DecisionRecordInput(serializers.Serializer):
        title = serializers.CharField()
        category = serializers.ChoiceField(choices=RecordCategory.values)
        context = serializers.CharField()
        decision = serializers.CharField()
        rationale = serializers.CharField()
        alternatives_considered = serializers.JSONField(required=False, help_text="string, array or object")
        tags = serializers.ListField(child=serializers.CharField(), required=False)
        constraints = serializers.JSONField(required=False)
        consequences = serializers.JSONField(required=False)
        supersedes = serializers.CharField(
            required=False, help_text="decision_id of an earlier record of yours"
        )

    @extend_schema(
        operation_id="decision_record", request=DecisionRecordInput, responses={201: dict, **_ERRORS}
    )
    def post(self, request: Request) -> Response:
        data = body(request, self.DecisionRecordInput)
        record = records.decision_record(
            actor=actor_from_request(request),
            title=data.get("title"),
            category=data.get("category"),
            context=data.get("context"),
            decision=data.get("decision"),
            rationale=data.get("rationale"),
            alternatives_considered=data.get("alternatives_considered"),
            tags=data.get("tags"),
            constraints=data.get("constraints"),
            consequences=data.get("consequences"),
            supersedes=data.get("supersedes"),
        )
        return Response(records.record_out(record), status=201)

    @extend_schema(
        operation_id="decision_search",
        parameters=[
            OpenApiParameter(
                "query", str, description="words to find in title, context, decision, rationale, tags"
            ),
            OpenApiParameter("category", str, enum=RecordCategory.values),
            OpenApiParameter("tags", str, description="comma-separated or repeated; all must match"),
            OpenApiParameter("status", str, description="a decision status, or active / superseded"),
            OpenApiParameter("limit", int, description="1–100, default 20"),
        ],
        responses={200: dict, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        tag_values: list[str] = []
        for value in params.getlist("tags"):
            # Comma-separated, repeated, or a JSON array (what generic clients send for a list).
            parsed = _json_list(value)
            tag_values.extend(parsed if parsed is not None else [t for t in value.split(",") if t.strip()])
        found = records.decision_search(
            actor=actor_from_request(request),
            query=params.get("query"),
            category=params.get("category"),
            tags=tag_values or None,
            status=params.get("status"),
            limit=params.get("limit"),
        )
        return Response(records.search_out(found))
