"""REST door for the envelope, proof and memory tools (docs/contract/tools.md, docs/contract/errors.md): receipts, receipt keys, evidence
packs and records too. Each view: input model → Actor → one service/selector → the same dict the MCP
tool returns.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.auth import ActorSessionAuthentication, AgentKeyAuthentication, PersonalTokenAuthentication
from decisions import evidence, receipts, records, selectors, services
from decisions.inputs import (
    DecisionAddContext,
    DecisionClose,
    DecisionCreate,
    DecisionGet,
    DecisionReceipt,
    DecisionRecord,
    DecisionSearch,
    DecisionTrace,
    DecisionWait,
)
from decisions.outputs import (
    DecisionClosed,
    DecisionCreated,
    DecisionReceiptOut,
    DecisionState,
    EventRef,
    EvidencePack,
    RecordOut,
    SearchOut,
    TracePage,
    WaitOut,
)
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
from tracemem_core.actor import Actor
from tracemem_site.openapi import query_parameters
from tracemem_site.rest import ERROR_RESPONSES as _ERRORS
from tracemem_site.rest import actor_from_request, operation_input


class DecisionCreateView(APIView):
    @extend_schema(
        operation_id="decision_create", request=DecisionCreate, responses={201: DecisionCreated, **_ERRORS}
    )
    def post(self, request: Request) -> Response:
        return Response(*self.answer(actor_from_request(request), operation_input(request, DecisionCreate)))

    @staticmethod
    def answer(actor: Actor, args: DecisionCreate) -> tuple[Any, int]:
        """The answer's body and status (this view's, and the agent door's: tracemem_site/agent_door.py)."""
        decision = services.decision_create(
            actor=actor,
            intent=args.intent,
            automation_mode=args.automation_mode,
            decision_actor=args.actor,
            instance=args.instance,
            version=args.version,
            metadata=args.metadata,
        )
        return created_out(decision), 201


class DecisionGetView(APIView):
    @extend_schema(operation_id="decision_get", responses={200: DecisionState, **_ERRORS})
    def get(self, request: Request, decision_id: str) -> Response:
        args = operation_input(request, DecisionGet, path={"decision_id": decision_id})
        return Response(*self.answer(actor_from_request(request), args))

    @staticmethod
    def answer(actor: Actor, args: DecisionGet) -> tuple[Any, int]:
        return decision_out(selectors.decision_for(actor, args.decision_id)), 200


class DecisionWaitView(APIView):
    @extend_schema(
        operation_id="decision_wait",
        description=(
            "Wait until the decision's pending approval is resolved (or the decision otherwise stops "
            "waiting for one), at most timeout_seconds; returns decision_get plus timed_out. "
            "With timed_out true, call again."
        ),
        parameters=query_parameters(DecisionWait, path=("decision_id",)),
        responses={200: WaitOut, **_ERRORS},
    )
    def get(self, request: Request, decision_id: str) -> Response:
        args = operation_input(request, DecisionWait, path={"decision_id": decision_id})
        actor = actor_from_request(request)
        try:
            with waits.door_parks():
                outcome = selectors.decision_wait(
                    actor, args.decision_id, timeout_seconds=args.timeout_seconds
                )
        except waits.ParkRequest:
            return Response(status=204)  # a placeholder: the front waits and replays this request
        return Response(wait_out(outcome))


class DecisionTraceView(APIView):
    @extend_schema(
        operation_id="decision_trace",
        parameters=query_parameters(DecisionTrace, path=("decision_id",)),
        responses={200: TracePage, **_ERRORS},
    )
    def get(self, request: Request, decision_id: str) -> Response:
        args = operation_input(request, DecisionTrace, path={"decision_id": decision_id})
        return Response(*self.answer(actor_from_request(request), args))

    @staticmethod
    def answer(actor: Actor, args: DecisionTrace) -> tuple[Any, int]:
        """The answer's body and status (this view's, and the agent door's: tracemem_site/agent_door.py)."""
        decision = selectors.decision_for(actor, args.decision_id)
        # The events as PostgreSQL wrote them, passed through (issue 17); the dict path elsewhere.
        page = selectors.trace_page_json(
            decision, after_seq=args.after_seq, limit=args.limit
        ) or selectors.trace_page_dicts(decision, after_seq=args.after_seq, limit=args.limit)
        return trace_page_out(decision, page), 200


class DecisionContextView(APIView):
    @extend_schema(
        operation_id="decision_add_context", request=DecisionAddContext, responses={201: EventRef, **_ERRORS}
    )
    def post(self, request: Request, decision_id: str) -> Response:
        args = operation_input(request, DecisionAddContext, path={"decision_id": decision_id})
        return Response(*self.answer(actor_from_request(request), args))

    @staticmethod
    def answer(actor: Actor, args: DecisionAddContext) -> tuple[Any, int]:
        if args.contexts is not None:
            events = services.decision_add_contexts(
                actor=actor,
                decision_id=args.decision_id,
                contexts=args.contexts,
                context=args.context,
                summary=args.summary,
            )
            return events_ref_out(events), 201
        event = services.decision_add_context(
            actor=actor, decision_id=args.decision_id, context=args.context, summary=args.summary
        )
        return event_ref_out(event), 201


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


def _json_list(value: str) -> list[Any] | None:
    if not value.lstrip().startswith("["):
        return None
    try:
        parsed = safejson.loads(value)
    except ValueError:
        return None
    return parsed if isinstance(parsed, list) else None


class DecisionReceiptView(APIView):
    @extend_schema(operation_id="decision_receipt", responses={200: DecisionReceiptOut, **_ERRORS})
    def get(self, request: Request, decision_id: str) -> Response:
        args = operation_input(request, DecisionReceipt, path={"decision_id": decision_id})
        return Response(
            receipts.decision_receipt(actor=actor_from_request(request), decision_id=args.decision_id)
        )


class DecisionEvidenceView(APIView):
    # The owning agent (agent key), reviewers and auditors (browser session or personal token).
    # Agent-key authentication goes last: it answers 401 "missing" when there is no header at all,
    # which would otherwise end the chain before a browser session is looked at.
    authentication_classes = [PersonalTokenAuthentication, ActorSessionAuthentication, AgentKeyAuthentication]

    @extend_schema(operation_id="decision_evidence", responses={200: EvidencePack, **_ERRORS})
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
