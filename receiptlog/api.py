"""REST door of the receipt log (docs/contract/interfaces.md "Checkpoint log"): the latest (or a stored) checkpoint,
a decision's inclusion proof and consistency proofs. Each view: authenticate → one selector → render."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.auth import ActorSessionAuthentication, AgentKeyAuthentication, PersonalTokenAuthentication
from receiptlog import selectors
from tracemem_site.rest import ERROR_RESPONSES as _ERRORS
from tracemem_site.rest import actor_from_request

TREE_SIZE = OpenApiParameter(
    "tree_size", int, description="a stored checkpoint's tree size; the latest checkpoint when left out"
)


class CheckpointView(APIView):
    """Public: the checkpoints are what auditors and witnesses keep."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="log_checkpoint",
        parameters=[TREE_SIZE],
        responses={(200, "text/plain"): str, **_ERRORS},
        description="The latest checkpoint of the receipt log (or the stored one of tree_size), a C2SP "
        "signed note, as text/plain.",
    )
    def get(self, request: Request) -> HttpResponse:
        checkpoint = selectors.checkpoint_get(tree_size=request.query_params.get("tree_size"))
        response = HttpResponse(checkpoint.note, content_type="text/plain; charset=utf-8")
        # The latest changes; one of a given size never does.
        latest = request.query_params.get("tree_size") in (None, "")
        response["Cache-Control"] = "no-cache" if latest else "public, max-age=31536000, immutable"
        return response


class DecisionInclusionView(APIView):
    # As the evidence pack: the owning agent (key), reviewers and auditors (session or personal token).
    authentication_classes = [PersonalTokenAuthentication, ActorSessionAuthentication, AgentKeyAuthentication]

    @extend_schema(
        operation_id="decision_inclusion", parameters=[TREE_SIZE], responses={200: dict, **_ERRORS}
    )
    def get(self, request: Request, decision_id: str) -> Response:
        return Response(
            selectors.inclusion_document(
                actor=actor_from_request(request),
                decision_id=decision_id,
                tree_size=request.query_params.get("tree_size"),
            )
        )


class ConsistencyView(APIView):
    """Public, like the checkpoints it links: a proof holds nothing but hashes."""

    authentication_classes: list = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="log_consistency",
        parameters=[
            OpenApiParameter(
                "from", int, required=True, description="the tree size of the checkpoint you hold"
            ),
            OpenApiParameter(
                "to", int, description="a larger tree size; the latest checkpoint's when left out"
            ),
        ],
        responses={200: dict, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        return Response(
            selectors.consistency_document(from_size=params.get("from"), to_size=params.get("to"))
        )
