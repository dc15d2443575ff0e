"""REST door of approvals: the agent's request (SPEC §4) and the reviewer endpoints (SPEC §10)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals import selectors, services
from approvals.auth import WebhookCredentialAuthentication
from approvals.serializers import approval_out, requested_out, route_out
from tracemem_site.rest import ERROR_RESPONSES as _ERRORS
from tracemem_site.rest import HumanAPIView, actor_from_request, body


class DecisionRequestApprovalView(APIView):
    class DecisionRequestApprovalInput(serializers.Serializer):
        title = serializers.CharField(required=False)
        message = serializers.CharField(required=False, help_text="redacted before storage and delivery")
        approval_route_id = serializers.CharField(required=False)
        require_rationale = serializers.BooleanField(required=False)
        expires_in_seconds = serializers.IntegerField(required=False)

    @extend_schema(
        operation_id="decision_request_approval",
        request=DecisionRequestApprovalInput,
        responses={201: dict, **_ERRORS},
    )
    def post(self, request: Request, decision_id: str) -> Response:
        data = body(request, self.DecisionRequestApprovalInput)
        approval = services.decision_request_approval(
            actor=actor_from_request(request),
            decision_id=decision_id,
            title=data.get("title"),
            message=data.get("message"),
            approval_route_id=data.get("approval_route_id"),
            require_rationale=data.get("require_rationale"),
            expires_in_seconds=data.get("expires_in_seconds"),
        )
        return Response(requested_out(approval), status=201)


class ApprovalListView(HumanAPIView):
    @extend_schema(
        operation_id="approval_list",
        parameters=[
            OpenApiParameter("status", str, description="pending | approved | rejected | expired | cancelled")
        ],
        responses={200: dict, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        approvals = selectors.approval_list(
            actor_from_request(request), status=request.query_params.get("status")
        )
        return Response({"approvals": [approval_out(a) for a in approvals], "count": len(approvals)})


class ApprovalGetView(HumanAPIView):
    @extend_schema(operation_id="approval_get", responses={200: dict, **_ERRORS})
    def get(self, request: Request, approval_id: str) -> Response:
        return Response(approval_out(selectors.approval_get(actor_from_request(request), approval_id)))


class ApprovalVoteInput(serializers.Serializer):
    rationale = serializers.CharField(required=False, allow_blank=True)


def _vote(request: Request, approval_id: str, choice: str, channel: str) -> Response:
    data = body(request) if request.data else {}
    approval = services.approval_vote(
        actor=actor_from_request(request),
        approval_id=approval_id,
        decision=choice,
        rationale=data.get("rationale"),
        channel=channel,
    )
    return Response(approval_out(approval))


class ApprovalApproveView(HumanAPIView):
    @extend_schema(
        operation_id="approval_approve", request=ApprovalVoteInput, responses={200: dict, **_ERRORS}
    )
    def post(self, request: Request, approval_id: str) -> Response:
        return _vote(request, approval_id, "approve", "api")


class ApprovalRejectView(HumanAPIView):
    @extend_schema(
        operation_id="approval_reject", request=ApprovalVoteInput, responses={200: dict, **_ERRORS}
    )
    def post(self, request: Request, approval_id: str) -> Response:
        return _vote(request, approval_id, "reject", "api")


class ApprovalResolveView(APIView):
    authentication_classes = [WebhookCredentialAuthentication]

    class ApprovalResolveInput(serializers.Serializer):
        decision = serializers.ChoiceField(choices=["approve", "reject"], help_text="alias: action")
        rationale = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(
        operation_id="approval_resolve", request=ApprovalResolveInput, responses={200: dict, **_ERRORS}
    )
    def post(self, request: Request, approval_id: str) -> Response:
        data = body(request)
        approval = services.approval_vote(
            actor=actor_from_request(request),
            approval_id=approval_id,
            decision=data.get("decision") if data.get("decision") is not None else data.get("action"),
            rationale=data.get("rationale"),
            channel="webhook",
        )
        return Response(approval_out(approval))


class RouteInput(serializers.Serializer):
    route_id = serializers.CharField(help_text="lowercase slug, e.g. route_finance")
    name = serializers.CharField(required=False)
    channels = serializers.ListField(child=serializers.DictField(), required=False)
    approver_group = serializers.CharField(required=False, help_text="group name; created if missing")
    required_approvals = serializers.IntegerField(required=False)
    require_rationale = serializers.BooleanField(required=False)
    expires_in_seconds = serializers.IntegerField(required=False)
    allow_agent_owner = serializers.BooleanField(required=False)
    default = serializers.BooleanField(required=False)


class AdminRouteListView(HumanAPIView):
    @extend_schema(operation_id="admin_routes_list", responses={200: dict, **_ERRORS})
    def get(self, request: Request) -> Response:
        return Response({"routes": [route_out(r) for r in selectors.routes_all(actor_from_request(request))]})

    @extend_schema(operation_id="admin_routes_create", request=RouteInput, responses={201: dict, **_ERRORS})
    def post(self, request: Request) -> Response:
        route = services.route_create(actor=actor_from_request(request), data=body(request))
        return Response(route_out(route), status=201)


class AdminRouteDetailView(HumanAPIView):
    @extend_schema(operation_id="admin_routes_get", responses={200: dict, **_ERRORS})
    def get(self, request: Request, route_id: str) -> Response:
        selectors.ensure_route_reader(actor_from_request(request))
        return Response(route_out(selectors.route_by_id(route_id)))

    @extend_schema(operation_id="admin_routes_update", request=RouteInput, responses={200: dict, **_ERRORS})
    def patch(self, request: Request, route_id: str) -> Response:
        route = services.route_update(
            actor=actor_from_request(request), route_id=route_id, data=body(request)
        )
        return Response(route_out(route))
