"""REST door for discovery (``capabilities_get``)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors
from agents.models import Agent


class CapabilitiesView(APIView):
    @extend_schema(operation_id="capabilities_get", responses={200: dict})
    def get(self, request: Request) -> Response:
        agent = request.user
        assert isinstance(agent, Agent)
        return Response(selectors.capabilities(agent))
