"""REST door of approvals: the agent's request (docs/contract/errors.md) and the reviewer endpoints (docs/contract/admin.md)."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals import selectors
from approvals.auth import WebhookCredentialAuthentication
from approvals.serializers import (
    approval_out,
    requested_out,
    route_out,
    slack_integrations_out,
    webhook_endpoints_out,
)
from approvals.services import integrations as approval_integrations
from approvals.services import requests as approval_requests
from approvals.services import routes as approval_routes
from approvals.services.integrations import SLACK_INTEGRATION, WEBHOOK_ENDPOINT, DestinationKind
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
        approval = approval_requests.decision_request_approval(
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
    approval = approval_requests.approval_vote(
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
        approval = approval_requests.approval_vote(
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
        route = approval_routes.route_create(actor=actor_from_request(request), data=body(request))
        return Response(route_out(route), status=201)


class AdminRouteDetailView(HumanAPIView):
    @extend_schema(operation_id="admin_routes_get", responses={200: dict, **_ERRORS})
    def get(self, request: Request, route_id: str) -> Response:
        selectors.ensure_route_reader(actor_from_request(request))
        return Response(route_out(selectors.route_by_id(route_id)))

    @extend_schema(operation_id="admin_routes_update", request=RouteInput, responses={200: dict, **_ERRORS})
    def patch(self, request: Request, route_id: str) -> Response:
        route = approval_routes.route_update(
            actor=actor_from_request(request), route_id=route_id, data=body(request)
        )
        return Response(route_out(route))


# --- outbound destinations (issue 13): one validated service path, secrets write-only -----------


class WebhookEndpointInput(serializers.Serializer):
    name = serializers.CharField(help_text="letters, digits, - and _; routes name the endpoint by it")
    url = serializers.CharField(
        help_text="https URL (http only to a destination TRACEMEM_OUTBOUND_ALLOW lists); checked against "
        "the outbound rules when saved and on every connection"
    )
    signing_secret = serializers.CharField(help_text="whsec_… (write-only: never returned)")


class SlackIntegrationInput(serializers.Serializer):
    name = serializers.CharField()
    bot_token = serializers.CharField(help_text="xoxb-… (write-only: never returned)")
    signing_secret = serializers.CharField(help_text="write-only: never returned")
    api_base_url = serializers.CharField(required=False, help_text="default https://slack.com/api/")


def _out(kind: DestinationKind, items: list) -> list[dict]:
    return webhook_endpoints_out(items) if kind is WEBHOOK_ENDPOINT else slack_integrations_out(items)


class _DestinationListView(HumanAPIView):
    kind: DestinationKind
    key: str

    def _list(self, request: Request) -> Response:
        kind = self.kind
        items = selectors.destinations_all(actor_from_request(request), kind.model, kind.read_area)
        return Response({self.key: _out(kind, items)})

    def _create(self, request: Request) -> Response:
        item = approval_integrations.destination_create(
            actor=actor_from_request(request), kind=self.kind, data=body(request)
        )
        return Response(_out(self.kind, [item])[0], status=201)


class _DestinationDetailView(HumanAPIView):
    kind: DestinationKind

    def _get(self, request: Request, name: str) -> Response:
        kind = self.kind
        item = selectors.destination_by_name(
            actor_from_request(request), kind.model, kind.read_area, name, kind.label
        )
        return Response(_out(kind, [item])[0])

    def _patch(self, request: Request, name: str) -> Response:
        item, _ = approval_integrations.destination_update(
            actor=actor_from_request(request), kind=self.kind, name=name, data=body(request)
        )
        return Response(_out(self.kind, [item])[0])

    def _delete(self, request: Request, name: str) -> Response:
        approval_integrations.destination_delete(actor=actor_from_request(request), kind=self.kind, name=name)
        return Response(status=204)


class AdminWebhookEndpointListView(_DestinationListView):
    kind, key = WEBHOOK_ENDPOINT, "webhook_endpoints"

    @extend_schema(operation_id="admin_webhook_endpoints_list", responses={200: dict, **_ERRORS})
    def get(self, request: Request) -> Response:
        return self._list(request)

    @extend_schema(
        operation_id="admin_webhook_endpoints_create",
        request=WebhookEndpointInput,
        responses={201: dict, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        return self._create(request)


class AdminWebhookEndpointDetailView(_DestinationDetailView):
    kind = WEBHOOK_ENDPOINT

    @extend_schema(operation_id="admin_webhook_endpoints_get", responses={200: dict, **_ERRORS})
    def get(self, request: Request, name: str) -> Response:
        return self._get(request, name)

    @extend_schema(
        operation_id="admin_webhook_endpoints_update",
        request=WebhookEndpointInput,
        responses={200: dict, **_ERRORS},
    )
    def patch(self, request: Request, name: str) -> Response:
        return self._patch(request, name)

    @extend_schema(operation_id="admin_webhook_endpoints_delete", responses={204: None, **_ERRORS})
    def delete(self, request: Request, name: str) -> Response:
        return self._delete(request, name)


class AdminIntegrationListView(_DestinationListView):
    kind, key = SLACK_INTEGRATION, "integrations"

    @extend_schema(operation_id="admin_integrations_list", responses={200: dict, **_ERRORS})
    def get(self, request: Request) -> Response:
        return self._list(request)

    @extend_schema(
        operation_id="admin_integrations_create",
        request=SlackIntegrationInput,
        responses={201: dict, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        return self._create(request)


class AdminIntegrationDetailView(_DestinationDetailView):
    kind = SLACK_INTEGRATION

    @extend_schema(operation_id="admin_integrations_get", responses={200: dict, **_ERRORS})
    def get(self, request: Request, name: str) -> Response:
        return self._get(request, name)

    @extend_schema(
        operation_id="admin_integrations_update",
        request=SlackIntegrationInput,
        responses={200: dict, **_ERRORS},
    )
    def patch(self, request: Request, name: str) -> Response:
        return self._patch(request, name)

    @extend_schema(operation_id="admin_integrations_delete", responses={204: None, **_ERRORS})
    def delete(self, request: Request, name: str) -> Response:
        return self._delete(request, name)
