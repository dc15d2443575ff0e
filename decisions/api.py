"""REST door for the envelope tools (SPEC §4). Each view: shape-check → Actor → one service → render."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from decisions import selectors, services
from decisions.models import AutomationMode
from decisions.serializers import (
    closed_out,
    created_out,
    decision_out,
    event_ref_out,
    trace_page_out,
    wait_out,
)
from tracemem_site import waits
from tracemem_site.rest import ERROR_RESPONSES as _ERRORS
from tracemem_site.rest import actor_from_request, body, query
from tracemem_site.validation import first_present


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
                outcome = waits.wait_for(
                    decision_id,
                    lambda deadline: selectors.decision_wait_check(
                        actor, decision_id, timeout_seconds=params.get("timeout_seconds"), deadline=deadline
                    ),
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
        page = selectors.trace_page(decision, after_seq=params.get("after_seq"), limit=params.get("limit"))
        return Response(trace_page_out(decision, page))


class DecisionContextView(APIView):
    class DecisionContextInput(serializers.Serializer):
        context = serializers.DictField(required=False, help_text="non-empty object; redacted before storage")
        payload = serializers.DictField(required=False, help_text="alias of context")
        summary = serializers.CharField(required=False)

    @extend_schema(
        operation_id="decision_add_context", request=DecisionContextInput, responses={201: dict, **_ERRORS}
    )
    def post(self, request: Request, decision_id: str) -> Response:
        data = body(request, self.DecisionContextInput)
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
