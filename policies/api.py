"""REST door: ``decision_evaluate`` (agent key) and the policy admin API of docs/contract/admin.md (by permission)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from policies import selectors
from policies.inputs import DecisionEvaluate
from policies.models import Outcome
from policies.outputs import (
    EvaluationOut,
    PolicyDetail,
    PolicyGrantList,
    PolicyGrantOut,
    PolicyList,
    PolicyTestOut,
    PolicyVersionOut,
    ReplayReport,
)
from policies.serializers import grant_out, policy_detail_out, policy_summary_out, version_out
from policies.services import authoring as policy_authoring
from policies.services import console as policy_console
from policies.services import evaluation as policy_evaluation
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument
from tracemem_site.rest import ERROR_RESPONSES as _ERRORS
from tracemem_site.rest import HumanAPIView, actor_from_request, body, operation_input


class DecisionEvaluateView(APIView):
    @extend_schema(
        operation_id="decision_evaluate", request=DecisionEvaluate, responses={200: EvaluationOut, **_ERRORS}
    )
    def post(self, request: Request, decision_id: str) -> Response:
        args = operation_input(request, DecisionEvaluate, path={"decision_id": decision_id})
        return Response(*self.answer(actor_from_request(request), args))

    @staticmethod
    def answer(actor: Actor, args: DecisionEvaluate) -> tuple[Any, int]:
        """The answer's body and status (this view's, and the agent door's: tracemem_site/agent_door.py)."""
        result = policy_evaluation.decision_evaluate(
            actor=actor,
            decision_id=args.decision_id,
            policy_id=args.policy_id,
            inputs=args.inputs,
            inputs_ref=args.inputs_ref,
        )
        return result, 200


# --- admin API -------------------------------------------------------------------------------


class PolicyDefinitionInput(serializers.Serializer):
    class PolicyRuleInput(serializers.Serializer):
        name = serializers.CharField()
        when = serializers.CharField(help_text="CEL condition over inputs, decision, now")
        outcome = serializers.ChoiceField(choices=Outcome.values)
        message = serializers.CharField(required=False)

    name = serializers.CharField()
    description = serializers.CharField(required=False)
    inputs_schema = serializers.DictField(required=False, allow_null=True, help_text="JSON Schema (2020-12)")
    rules = PolicyRuleInput(many=True, required=False)
    default_outcome = serializers.CharField(
        required=False, help_text="allow | deny | requires_exception; deny unless set"
    )
    exception_route_id = serializers.CharField(required=False, allow_null=True)


class PolicyCreateInput(PolicyDefinitionInput):
    policy_id = serializers.CharField(help_text="lowercase slug, e.g. discount_cap_v1")


class AdminPolicyListView(HumanAPIView):
    @extend_schema(operation_id="admin_policies_list", responses={200: PolicyList, **_ERRORS})
    def get(self, request: Request) -> Response:
        selectors.ensure_policy_reader(actor_from_request(request))
        return Response({"policies": [policy_summary_out(p) for p in selectors.policies_all()]})

    @extend_schema(
        operation_id="admin_policies_create",
        request=PolicyCreateInput,
        responses={201: PolicyVersionOut, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = body(request)
        pv = policy_authoring.policy_create(
            actor=actor_from_request(request),
            policy_id=data.get("policy_id"),
            definition={k: v for k, v in data.items() if k != "policy_id"},
        )
        return Response(version_out(pv), status=201)


class AdminPolicyDetailView(HumanAPIView):
    @extend_schema(operation_id="admin_policies_get", responses={200: PolicyDetail, **_ERRORS})
    def get(self, request: Request, policy_id: str) -> Response:
        selectors.ensure_policy_reader(actor_from_request(request))
        policy = selectors.policy_by_id(policy_id)
        return Response(
            policy_detail_out(
                policy, list(selectors.policy_versions(policy_id)), list(selectors.policy_grants(policy_id))
            )
        )


class AdminPolicyDraftView(HumanAPIView):
    @extend_schema(
        operation_id="admin_policies_draft_save",
        request=PolicyDefinitionInput,
        responses={200: PolicyVersionOut, **_ERRORS},
    )
    def put(self, request: Request, policy_id: str) -> Response:
        pv = policy_authoring.policy_draft_save(
            actor=actor_from_request(request), policy_id=policy_id, definition=body(request)
        )
        return Response(version_out(pv))


class AdminPolicyPublishView(HumanAPIView):
    @extend_schema(
        operation_id="admin_policies_publish", request=None, responses={200: PolicyVersionOut, **_ERRORS}
    )
    def post(self, request: Request, policy_id: str) -> Response:
        pv = policy_authoring.policy_publish(actor=actor_from_request(request), policy_id=policy_id)
        return Response(version_out(pv))


class AdminPolicyRetireView(HumanAPIView):
    @extend_schema(
        operation_id="admin_policies_retire", request=None, responses={200: PolicyVersionOut, **_ERRORS}
    )
    def post(self, request: Request, policy_id: str) -> Response:
        pv = policy_authoring.policy_retire(actor=actor_from_request(request), policy_id=policy_id)
        return Response(version_out(pv))


class AdminPolicyTestView(HumanAPIView):
    class PolicyTestInput(serializers.Serializer):
        inputs = serializers.DictField()
        decision = serializers.DictField(required=False, help_text="intent, automation_mode, actor, metadata")
        version = serializers.IntegerField(
            required=False, help_text="default: the draft, else the published one"
        )

    @extend_schema(
        operation_id="admin_policies_test", request=PolicyTestInput, responses={200: PolicyTestOut, **_ERRORS}
    )
    def post(self, request: Request, policy_id: str) -> Response:
        data = body(request)
        version = data.get("version")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise InvalidArgument("version must be an integer", field="version")
        result = policy_console.policy_test(
            actor=actor_from_request(request),
            policy_id=policy_id,
            inputs=data.get("inputs"),
            decision=data.get("decision"),
            version=version,
        )
        return Response(result)


class AdminPolicyReplayView(HumanAPIView):
    class PolicyReplayInput(serializers.Serializer):
        limit = serializers.IntegerField(required=False, default=50, help_text="last N evaluations (1-1000)")

    @extend_schema(
        operation_id="admin_policies_replay",
        request=PolicyReplayInput,
        responses={200: ReplayReport, **_ERRORS},
    )
    def post(self, request: Request, policy_id: str) -> Response:
        data = body(request)
        report = policy_console.policy_replay(
            actor=actor_from_request(request), policy_id=policy_id, limit=data.get("limit", 50)
        )
        return Response(report)


class AdminPolicyGrantsView(HumanAPIView):
    class PolicyGrantInput(serializers.Serializer):
        agent_id = serializers.CharField(help_text="agent_... id or agent name")

    @extend_schema(operation_id="admin_policies_grants_list", responses={200: PolicyGrantList, **_ERRORS})
    def get(self, request: Request, policy_id: str) -> Response:
        selectors.ensure_policy_reader(actor_from_request(request))
        selectors.policy_by_id(policy_id)
        return Response({"grants": [grant_out(g) for g in selectors.policy_grants(policy_id)]})

    @extend_schema(
        operation_id="admin_policies_grants_create",
        request=PolicyGrantInput,
        responses={201: PolicyGrantOut, **_ERRORS},
    )
    def post(self, request: Request, policy_id: str) -> Response:
        grant = policy_authoring.policy_grant(
            actor=actor_from_request(request), policy_id=policy_id, agent_id=body(request).get("agent_id")
        )
        return Response(grant_out(grant), status=201)
