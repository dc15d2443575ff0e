"""REST plumbing: the one place errors become HTTP (docs/contract/errors.md), the error body's schema, the actor."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.http import Http404
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.auth import ActorSessionAuthentication, DomainAuthenticationFailed, PersonalTokenAuthentication
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError, InvalidArgument
from tracemem_core.inputs import InputT, parse
from tracemem_core.outage import database_outage
from tracemem_core.requestid import current_request_id
from tracemem_site import openapi  # noqa: F401  (registers the input models' OpenAPI extension)
from tracemem_site.parsers import BodyTooDeep, PayloadTooLarge

logger = logging.getLogger(__name__)


# The docs/contract/errors.md error body, documented once for every endpoint of the OpenAPI schema.
_ERROR_BODY = inline_serializer(
    "ErrorBody",
    fields={
        "request_id": serializers.CharField(help_text="this answer's X-Request-ID header"),
        "error": inline_serializer(
            "ErrorDetail",
            fields={
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "details": serializers.DictField(),
            },
        ),
    },
)
ERROR_RESPONSES = {
    status_code: OpenApiResponse(response=_ERROR_BODY, description=codes)
    for status_code, codes in {
        400: "invalid_argument",
        401: "unauthenticated (details.reason says why)",
        403: "permission_denied / purpose_not_allowed / policy_denied",
        404: "not_found (also another agent's decision)",
        409: "invalid_state / conflict / approval_required",
        429: "rate_limited (with Retry-After)",
        503: "unavailable: a dependency is down and the call was not applied (with Retry-After)",
    }.items()
}


def error_response(
    code: str, message: str, http_status: int, details: dict[str, Any] | None = None
) -> Response:
    body: dict[str, Any] = {"error": {"code": code, "message": message, "details": details or {}}}
    request_id = current_request_id()
    if request_id:
        # The X-Request-ID of this answer: quote it to an operator, who finds it in every log line.
        body["request_id"] = request_id
    return Response(body, status=http_status)


def _validation_message(detail: Any, prefix: str = "") -> tuple[str, str]:
    """First (field, message) of a DRF ValidationError detail, phrased 'field is required'."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else prefix.rstrip(".")
            return _validation_message(value, f"{prefix}{name}." if name else prefix)
    if isinstance(detail, list) and detail:
        return _validation_message(detail[0], prefix)
    field = prefix.rstrip(".") or "body"
    text = str(detail)
    if getattr(detail, "code", None) == "required":
        return field, f"{field} is required"
    return field, f"{field}: {text}"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    if isinstance(exc, DomainAuthenticationFailed):
        exc = exc.domain_error
    exc = database_outage(exc) or exc
    if isinstance(exc, DomainError):
        response = error_response(exc.code, exc.message, exc.http_status, exc.details)
        if exc.code in ("rate_limited", "unavailable"):
            response["Retry-After"] = str(exc.details.get("retry_after", 1))
        if exc.http_status == 401:
            response["WWW-Authenticate"] = 'Agent realm="tracemem"'
        return response
    if isinstance(exc, exceptions.NotAuthenticated):
        return error_response(
            "unauthenticated",
            "authentication required: send 'Authorization: Agent <key>'",
            401,
            {"reason": "missing"},
        )
    if isinstance(exc, exceptions.AuthenticationFailed):
        return error_response("unauthenticated", str(exc.detail), 401)
    if isinstance(exc, exceptions.ValidationError):
        field, message = _validation_message(exc.detail)
        return error_response("invalid_argument", message, 400, {"field": field, "errors": exc.detail})
    if isinstance(exc, PayloadTooLarge):
        return error_response("invalid_argument", str(exc.detail), 413)
    if isinstance(exc, RequestDataTooBig):
        # Django's own size check fires first when something reads request.body before DRF's parser.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        return error_response(
            "invalid_argument", f"request body is larger than {limit} bytes; send less data per call", 413
        )
    if isinstance(exc, BodyTooDeep):
        return error_response("invalid_argument", str(exc.detail), 400, {"max_depth": exc.limit})
    if isinstance(exc, exceptions.ParseError):
        return error_response("invalid_argument", str(exc.detail), 400)
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return error_response("invalid_argument", "send the body as application/json", 415)
    if isinstance(exc, exceptions.MethodNotAllowed):
        return error_response("method_not_allowed", str(exc.detail), 405)
    if isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        response = error_response(
            "rate_limited",
            f"this agent's request rate limit is reached; retry after {wait} seconds",
            429,
            {"retry_after": wait},
        )
        response["Retry-After"] = str(wait)
        return response
    if isinstance(exc, exceptions.PermissionDenied | DjangoPermissionDenied):
        return error_response("permission_denied", "you are not allowed to do this", 403)
    if isinstance(exc, exceptions.NotFound | Http404):
        return error_response("not_found", "not found", 404)
    if isinstance(exc, exceptions.APIException):
        return error_response("invalid_argument", str(exc.detail), exc.status_code)
    logger.exception(
        "unhandled error in %s", context.get("view").__class__.__name__ if context.get("view") else "?"
    )
    return error_response("internal", "internal error; the server logged it", 500)


def actor_from_request(request: Request) -> Actor:
    """The Actor the authentication class put on the request (agent key, session, personal token
    or webhook credential: ``agents.auth``, ``approvals.auth``)."""
    actor = request.auth
    if isinstance(actor, Actor):
        return actor
    raise exceptions.NotAuthenticated()


def body(request: Request) -> dict[str, Any]:
    """The request body as an object, or a clear invalid_argument (``operation_input`` checks fields)."""
    return json_object(request.data)


def json_object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise exceptions.ParseError("request body must be a JSON object")
    return data


def operation_input(
    request: Request,
    model: type[InputT],
    *,
    path: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
) -> InputT:
    """The operation's input from the request, checked by its model (the MCP door uses the same).

    A GET reads the query string (a parameter sent empty counts as not sent), anything else the
    JSON body; ``path`` adds the URL's parameters (sending one of them in the body or query is
    refused); ``data`` replaces what is read (for a view that must unpack a parameter first).
    """
    if data is None:
        if request.method in ("GET", "HEAD"):
            data = {name: value for name, value in request.query_params.items() if value != ""}
        else:
            data = body(request)
    return input_from(model, data, path or {}, in_query=request.method in ("GET", "HEAD"))


def input_from(model: type[InputT], data: dict[str, Any], path: dict[str, Any], *, in_query: bool) -> InputT:
    """:func:`operation_input` once the data is read (the agent door reads it without DRF)."""
    where = "query string" if in_query else "body"
    for name in data:
        if name in path:
            raise InvalidArgument(
                f"{name} is given in the URL path, not in the {where}",
                field=name,
                details={"allowed": model.allowed()},
            )
    return parse(model, {**data, **path})


class HumanAPIView(APIView):
    """Base of the reviewer and admin API: a logged-in session (CSRF-checked) or ``Token tmpat_…``.

    Agent keys are not accepted here; whether the human may act (a permission, a route group) is decided
    by the service or selector, as everywhere else.
    """

    authentication_classes = [ActorSessionAuthentication, PersonalTokenAuthentication]
