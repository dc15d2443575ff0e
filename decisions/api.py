"""REST door for the envelope tools (SPEC §4). Each view: input model → Actor → one service → render."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from decisions import selectors, services
from decisions.inputs import DecisionAddContext, DecisionClose, DecisionCreate, DecisionGet, DecisionTrace
from decisions.outputs import DecisionClosed, DecisionCreated, DecisionState, EventRef, TracePage
from decisions.serializers import closed_out, created_out, decision_out, event_ref_out, trace_page_out
from tracemem_site.openapi import query_parameters
from tracemem_site.rest import ERROR_RESPONSES as _ERRORS
from tracemem_site.rest import actor_from_request, operation_input


class DecisionCreateView(APIView):
    @extend_schema(
        operation_id="decision_create", request=DecisionCreate, responses={201: DecisionCreated, **_ERRORS}
    )
    def post(self, request: Request) -> Response:
        args = operation_input(request, DecisionCreate)
        decision = services.decision_create(
            actor=actor_from_request(request),
            intent=args.intent,
            automation_mode=args.automation_mode,
            decision_actor=args.actor,
            instance=args.instance,
            version=args.version,
            metadata=args.metadata,
        )
        return Response(created_out(decision), status=201)


class DecisionGetView(APIView):
    @extend_schema(operation_id="decision_get", responses={200: DecisionState, **_ERRORS})
    def get(self, request: Request, decision_id: str) -> Response:
        args = operation_input(request, DecisionGet, path={"decision_id": decision_id})
        return Response(decision_out(selectors.decision_for(actor_from_request(request), args.decision_id)))


class DecisionTraceView(APIView):
    @extend_schema(
        operation_id="decision_trace",
        parameters=query_parameters(DecisionTrace, path=("decision_id",)),
        responses={200: TracePage, **_ERRORS},
    )
    def get(self, request: Request, decision_id: str) -> Response:
        args = operation_input(request, DecisionTrace, path={"decision_id": decision_id})
        decision = selectors.decision_for(actor_from_request(request), args.decision_id)
        page = selectors.trace_page(decision, after_seq=args.after_seq, limit=args.limit)
        return Response(trace_page_out(decision, page))


class DecisionContextView(APIView):
    @extend_schema(
        operation_id="decision_add_context", request=DecisionAddContext, responses={201: EventRef, **_ERRORS}
    )
    def post(self, request: Request, decision_id: str) -> Response:
        args = operation_input(request, DecisionAddContext, path={"decision_id": decision_id})
        event = services.decision_add_context(
            actor=actor_from_request(request),
            decision_id=args.decision_id,
            context=args.context,
            summary=args.summary,
        )
        return Response(event_ref_out(event), status=201)


class DecisionCloseView(APIView):
    @extend_schema(
        operation_id="decision_close", request=DecisionClose, responses={200: DecisionClosed, **_ERRORS}
    )
    def post(self, request: Request, decision_id: str) -> Response:
        args = operation_input(request, DecisionClose, path={"decision_id": decision_id})
        decision = services.decision_close(
            actor=actor_from_request(request),
            decision_id=args.decision_id,
            action=args.action,
            summary=args.summary,
            reason=args.reason,
        )
        return Response(closed_out(decision))
