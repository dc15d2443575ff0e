"""REST door for discovery (``capabilities_get``) and the agents/keys admin API (docs/contract/admin.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors
from agents.inputs import CapabilitiesGet
from agents.outputs import AgentList, AgentOut, CapabilitiesOut, IssuedKeyOut, KeyOut, RotatedKeyOut
from agents.serializers import agent_out, issued_key_out, key_out, token_out
from agents.services import registry as agent_registry
from agents.services import tokens as agent_tokens
from tracemem_core.errors import InvalidArgument, NotFound
from tracemem_core.permissions import require_perm
from tracemem_site.rest import ERROR_RESPONSES as _ADMIN_ERRORS
from tracemem_site.rest import HumanAPIView, actor_from_request, body, operation_input


class CapabilitiesView(APIView):
    @extend_schema(operation_id="capabilities_get", responses={200: CapabilitiesOut, **_ADMIN_ERRORS})
    def get(self, request: Request) -> Response:
        operation_input(request, CapabilitiesGet)
        return Response(selectors.capabilities(actor_from_request(request).require_agent()))


# --- admin API (docs/contract/admin.md): a session or personal access token, never an agent key; permissions in docs/security.md


def _owner(data: dict[str, Any]) -> User | None:
    username = data.get("owner")
    if username is None:
        return None
    if not isinstance(username, str):
        raise InvalidArgument("owner must be a username (string) or null", field="owner")
    try:
        return selectors.user_by_username(username)
    except NotFound:
        raise InvalidArgument(f"owner: no user named {username!r}; create the user first", field="owner")


def _expires_at(data: dict[str, Any]) -> datetime | None:
    """``expires_at`` (ISO-8601) or ``expires_in_seconds``; neither means the key never expires."""
    raw, seconds = data.get("expires_at"), data.get("expires_in_seconds")
    if raw is not None and seconds is not None:
        raise InvalidArgument("send expires_at or expires_in_seconds, not both", field="expires_at")
    if seconds is not None:
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds <= 0:
            raise InvalidArgument("expires_in_seconds must be a positive integer", field="expires_in_seconds")
        try:
            return timezone.now() + timedelta(seconds=seconds)
        except OverflowError:
            raise InvalidArgument("expires_in_seconds is too large", field="expires_in_seconds") from None
    if raw is None:
        return None
    try:
        parsed = parse_datetime(raw) if isinstance(raw, str) else None
    except ValueError:  # well-formed but not a date, e.g. month 13
        parsed = None
    if parsed is None:
        raise InvalidArgument(
            "expires_at must be an ISO-8601 timestamp such as 2030-01-01T00:00:00Z", field="expires_at"
        )
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


class AdminAgentListView(HumanAPIView):
    class AdminAgentCreateInput(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        owner = serializers.CharField(required=False, allow_null=True, help_text="username")
        description = serializers.CharField(required=False, allow_blank=True)

    @extend_schema(operation_id="admin_agents_list", responses={200: AgentList, **_ADMIN_ERRORS})
    def get(self, request: Request) -> Response:
        agents = selectors.agents_for_admin(actor_from_request(request))
        return Response({"agents": [agent_out(a) for a in agents]})

    @extend_schema(
        operation_id="admin_agents_create",
        request=AdminAgentCreateInput,
        responses={201: AgentOut, **_ADMIN_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = body(request)
        actor = actor_from_request(request)
        require_perm(actor, "agents.manage_agents")  # before the owner lookup: outsiders learn nothing
        description = data.get("description") or ""
        if not isinstance(description, str):
            raise InvalidArgument("description must be a string", field="description")
        agent = agent_registry.agent_create(
            actor=actor, name=data.get("name"), owner=_owner(data), description=description
        )
        return Response(agent_out(agent), status=201)


class AdminAgentDetailView(HumanAPIView):
    class AdminAgentPatchInput(serializers.Serializer):
        name = serializers.CharField(required=False)
        owner = serializers.CharField(required=False, allow_null=True, help_text="username or null")
        description = serializers.CharField(required=False, allow_blank=True)
        disabled = serializers.BooleanField(required=False, help_text="true stops all of its keys")

    @extend_schema(operation_id="admin_agents_get", responses={200: AgentOut, **_ADMIN_ERRORS})
    def get(self, request: Request, agent_id: str) -> Response:
        return Response(agent_out(selectors.agent_for_admin(actor_from_request(request), agent_id)))

    @extend_schema(
        operation_id="admin_agents_update",
        request=AdminAgentPatchInput,
        responses={200: AgentOut, **_ADMIN_ERRORS},
    )
    def patch(self, request: Request, agent_id: str) -> Response:
        data = body(request)
        actor = actor_from_request(request)
        agent = selectors.agent_for_admin(actor, agent_id)
        unknown = sorted(set(data) - {"name", "owner", "description", "disabled"})
        if unknown:
            raise InvalidArgument(
                f"unknown field {unknown[0]}; the fields you can change are name, owner, description, disabled",
                field=unknown[0],
            )
        changes: dict[str, Any] = {k: data[k] for k in ("name", "description", "disabled") if k in data}
        if "owner" in data:
            changes["owner"] = _owner(data)
        agent = agent_registry.agent_update(actor=actor, agent=agent, **changes)
        return Response(agent_out(agent))


class AdminKeyIssueView(HumanAPIView):
    class AdminKeyIssueInput(serializers.Serializer):
        name = serializers.CharField(
            required=False, help_text="default: a name none of the agent's keys has (`default`, `key-2`, ...)"
        )
        expires_at = serializers.DateTimeField(required=False, allow_null=True)
        expires_in_seconds = serializers.IntegerField(required=False, min_value=1)

    @extend_schema(
        operation_id="admin_agent_keys_create",
        request=AdminKeyIssueInput,
        responses={201: IssuedKeyOut, **_ADMIN_ERRORS},
        description="Issue a key. The secret `key` is in this response only; it is never shown again.",
    )
    def post(self, request: Request, agent_id: str) -> Response:
        data = body(request)
        actor = actor_from_request(request)
        agent = selectors.agent_for_admin(actor, agent_id)
        issued = agent_registry.agent_key_issue(
            actor=actor, agent=agent, name=data.get("name"), expires_at=_expires_at(data)
        )
        return Response(issued_key_out(issued), status=201)


class AdminKeyRevokeView(HumanAPIView):
    @extend_schema(
        operation_id="admin_agent_keys_revoke", request=None, responses={200: KeyOut, **_ADMIN_ERRORS}
    )
    def post(self, request: Request, agent_id: str, key_id: str) -> Response:
        actor = actor_from_request(request)
        key = selectors.agent_key_by_id(selectors.agent_for_admin(actor, agent_id), key_id)
        return Response(key_out(agent_registry.agent_key_revoke(actor=actor, key=key)))


class AdminKeyRotateView(HumanAPIView):
    class AdminKeyRotateInput(serializers.Serializer):
        grace_seconds = serializers.IntegerField(
            required=False,
            default=0,
            min_value=0,
            help_text="how long the old key keeps working; 0 = stops now",
        )

    @extend_schema(
        operation_id="admin_agent_keys_rotate",
        request=AdminKeyRotateInput,
        responses={201: RotatedKeyOut, **_ADMIN_ERRORS},
    )
    def post(self, request: Request, agent_id: str, key_id: str) -> Response:
        data = body(request)
        actor = actor_from_request(request)
        old = selectors.agent_key_by_id(selectors.agent_for_admin(actor, agent_id), key_id)
        issued = agent_registry.agent_key_rotate(
            actor=actor, key=old, grace_seconds=data.get("grace_seconds", 0)
        )
        old.refresh_from_db()
        return Response({**issued_key_out(issued), "previous_key": key_out(old)}, status=201)


# --- personal access tokens (docs/contract/interfaces.md): a person's own; admins anyone's --------------------------


class PersonalTokenOut(serializers.Serializer):
    """A personal access token as ``agents.serializers.token_out`` returns it (never the secret)."""

    token_id = serializers.CharField(help_text="tok_<n>")
    name = serializers.CharField()
    prefix = serializers.CharField(help_text="the public start of the token, e.g. tmpat_Ab12Cd34")
    user = serializers.CharField(help_text="username of the token's owner")
    state = serializers.ChoiceField(choices=["active", "expired", "revoked"])
    created_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    revoked_at = serializers.DateTimeField(allow_null=True)
    last_used_at = serializers.DateTimeField(allow_null=True)


class TokenListView(HumanAPIView):
    @extend_schema(
        operation_id="tokens_list",
        parameters=[
            OpenApiParameter("user", str, description="admins: this person's tokens (a username)"),
            OpenApiParameter("all", bool, description="admins: everyone's tokens"),
        ],
        responses={
            200: inline_serializer("TokenList", fields={"tokens": PersonalTokenOut(many=True)}),
            **_ADMIN_ERRORS,
        },
        description="Your personal access tokens, newest first (never their secrets).",
    )
    def get(self, request: Request) -> Response:
        everyone = request.query_params.get("all", "").lower()
        if everyone not in ("", "true", "false", "1", "0"):
            raise InvalidArgument("all must be true or false", field="all")
        tokens = selectors.personal_tokens(
            actor_from_request(request),
            username=request.query_params.get("user"),
            everyone=everyone in ("true", "1"),
        )
        return Response({"tokens": [token_out(t) for t in tokens]})


class TokenRevokeView(HumanAPIView):
    @extend_schema(
        operation_id="token_revoke",
        request=None,
        responses={200: PersonalTokenOut, **_ADMIN_ERRORS},
        description="Revoke one of your tokens (admins: anyone's). It is refused from the next request on.",
    )
    def post(self, request: Request, token_id: str) -> Response:
        actor = actor_from_request(request)
        token = agent_tokens.personal_token_revoke(
            actor=actor, token=selectors.personal_token_by_id(actor, token_id)
        )
        return Response(token_out(token))
