"""The agent door (issue 17): an agent's hottest calls answered in the front's thread pool without
Django's middleware chain and DRF's request cycle, by the code those views run.

Why: on a 2-vCPU machine a ``decision_create`` spent ~5 ms of CPU in the web process, of which the
service, authentication and rendering ~3 ms; the rest was the WSGI request, eighteen middlewares and
DRF's request/response cycle. Answered here, the same request took 27 % less time end to end
(docs/performance.md §22, the profile and the A/B that justified it).

What it answers (:func:`operations`): ``decision_create``, ``decision_get``, ``decision_add_context``
and ``decision_evaluate`` over REST and as an MCP ``tools/call``, and ``decision_trace`` over REST (a
1,000-event page: docs/performance.md §24), sent the way agents and SDKs send them: an ``Agent`` or
``Bearer`` key, a JSON body with its ``Content-Length`` (or none, for the GETs), no query string but
the trace's (ASCII, a few fields: ``after_seq``, ``limit``, read as Django reads it), an
``Accept`` the one renderer satisfies, a ``Host`` in ``ALLOWED_HOSTS``, no session cookie (nor a
CSRF cookie Django would replace); on ``/mcp`` an agent key, no ``Origin``, a known protocol version. Anything
else, and everything while it is off (``TRACEMEM_AGENT_DOOR=false``, ``DEBUG``, tracing on,
``DISALLOWED_USER_AGENTS`` or ``PREPEND_WWW`` set, or an HTTP request that ``SECURE_SSL_REDIRECT``
would redirect), goes to Django as before.

What it keeps, each from the place Django's path takes it: Django's ``request_started`` and
``request_finished`` signals (database connections, the request id's unbinding), the request id
(:mod:`tracemem_site.observability`'s rules), the commits tracking of outage answers
(:func:`tracemem_core.outage.tracking_commits`), authentication and the rate limit
(``agents.services.registry.agent_key_authenticate``, :func:`tracemem_site.throttling.over_limit`,
in DRF's order), the bounded JSON parser, the input checks (:func:`tracemem_site.rest.input_from`),
the views' own ``answer`` methods, the one exception handler (:func:`tracemem_site.rest.exception_handler`),
the renderer, Django's log line for a refusal, the request metrics, and the headers the middleware
and DRF add (security, CSP, frame options, ``Vary``, ``Allow``, ``X-Request-ID``).
tests/site/test_agent_door.py holds each answer against Django's for the same request.
"""

from __future__ import annotations

import functools
import http
import io
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.conf import settings
from django.core.signals import request_finished, request_started, setting_changed
from django.http import QueryDict
from django.http.cookie import parse_cookie
from django.http.request import split_domain_port, validate_host
from django.urls import resolve
from rest_framework import exceptions

from tracemem_core import metrics, telemetry
from tracemem_core.actor import Actor
from tracemem_core.outage import database_outage, tracking_commits
from tracemem_core.requestid import bind_request_id
from tracemem_core.version import PROTOCOL_VERSIONS
from tracemem_site.observability import request_id_for

logger = logging.getLogger("django.request")  # Django's own logger for a refused request

Headers = list[tuple[bytes, bytes]]
_JSON_TYPES = (b"application/json", b"application/json; charset=utf-8", b"application/json;charset=utf-8")
_ACCEPTED = (b"application/json", b"*/*", b"application/*", b"application/json, text/event-stream")


@dataclass(frozen=True)
class Operation:
    method: str
    pattern: re.Pattern[str]
    view: Any  # the DRF view class: its ``answer(actor, args)`` and its input model
    model: Any
    label: str  # the URL's name, the request metrics' operation label
    allow: bytes  # DRF's Allow header for the view
    door: str = "rest"  # the request metrics' door label
    query: bool = False  # its input may come in the query string (a GET's: decision_trace's page)


@dataclass(frozen=True)
class Call:
    """What the event loop read of a request the door will answer."""

    operation: Operation
    path_args: dict[str, str]
    path: str
    authorization: str = field(repr=False)  # the agent's key: never in a repr (tracebacks with locals)
    offered_request_id: str  # the X-Request-ID header as sent ("" without one)
    secure: bool
    mcp_version: str | None = None  # MCP: the MCP-Protocol-Version header
    query: bytes = b""  # the query string as sent (only an operation that takes one gets one)

    @property
    def is_get(self) -> bool:
        return self.operation.method == "GET"


@functools.cache
def operations() -> tuple[Operation, ...]:
    from decisions.api import DecisionContextView, DecisionCreateView, DecisionGetView, DecisionTraceView
    from decisions.inputs import DecisionAddContext, DecisionCreate, DecisionGet, DecisionTrace
    from policies.api import DecisionEvaluateView
    from policies.inputs import DecisionEvaluate
    from tracemem_site.mcp import MCPView

    def operation(
        method: str,
        pattern: str,
        example: str,
        view: Any,
        model: Any,
        door: str = "rest",
        query: bool = False,
    ) -> Operation:
        instance = view()
        if hasattr(instance, "get") and not hasattr(instance, "head"):
            instance.head = instance.get  # as View.setup() does for each request: Allow names HEAD
        allow = ", ".join(instance.allowed_methods).encode()
        label = resolve(example).view_name
        return Operation(method, re.compile(pattern), view, model, label, allow, door, query)

    # \Z, as Django's path() patterns: "$" would also match before a trailing newline ("%0A").
    ident = r"(?P<decision_id>[^/]+)"
    return (
        operation("POST", r"^/mcp\Z", "/mcp", MCPView, None, door="mcp"),
        operation("POST", r"^/api/v1/decisions\Z", "/api/v1/decisions", DecisionCreateView, DecisionCreate),
        operation(
            "GET", rf"^/api/v1/decisions/{ident}\Z", "/api/v1/decisions/x", DecisionGetView, DecisionGet
        ),
        operation(
            "GET",
            rf"^/api/v1/decisions/{ident}/trace\Z",
            "/api/v1/decisions/x/trace",
            DecisionTraceView,
            DecisionTrace,
            query=True,
        ),
        operation(
            "POST",
            rf"^/api/v1/decisions/{ident}/context\Z",
            "/api/v1/decisions/x/context",
            DecisionContextView,
            DecisionAddContext,
        ),
        operation(
            "POST",
            rf"^/api/v1/decisions/{ident}/evaluate\Z",
            "/api/v1/decisions/x/evaluate",
            DecisionEvaluateView,
            DecisionEvaluate,
        ),
    )


def enabled() -> bool:
    # CommonMiddleware's refusals and redirects the door does not make: with either set, Django answers.
    if settings.DISALLOWED_USER_AGENTS or settings.PREPEND_WWW:
        return False
    return bool(settings.TRACEMEM_AGENT_DOOR) and not settings.DEBUG and not telemetry.active()


def route(scope: dict[str, Any], body: bytes) -> Call | None:
    """The call this door answers, or None (Django answers). Runs in the event loop: reads the
    request line and headers, and of an MCP message only whether it may be a hot tool's call."""
    path: str = scope["path"]
    if not path.startswith(("/api/v1/decisions", "/mcp")) or not enabled():
        return None
    method = scope["method"]
    for operation in operations():
        match = operation.pattern.match(path) if operation.method == method else None
        if match is not None:
            break
    else:
        return None
    query: bytes = scope["query_string"]
    if query and not (operation.query and _plain_query(query)):
        return None
    headers: dict[bytes, bytes] = {}
    for name, value in scope["headers"]:
        # A repeated header, or one spelled with "_" (the WSGI environ would merge it with its
        # "-" twin): Django decides what it means.
        if name in headers or b"_" in name:
            return None
        headers[name] = value
    authorization = headers.get(b"authorization", b"")
    scheme = authorization[:7].lower()
    if not (scheme == b"bearer " or scheme[:6] == b"agent "):
        return None
    # A POST without Content-Length (chunked): Django's request reads no body then, so neither may this.
    if method == "POST" and (
        b"content-length" not in headers or headers.get(b"content-type", b"").lower() not in _JSON_TYPES
    ):
        return None
    if b"cookie" in headers and _cookies_for_django(headers[b"cookie"]):
        return None
    if headers.get(b"accept", b"*/*") not in _ACCEPTED or not _host_allowed(headers):
        return None
    mcp_version = None
    if operation.door == "mcp":
        # Anything but a tools/call of a hot tool (initialize, tools/list, decision_wait, ...) goes
        # to Django without a trip into the pool for the door to look (answer() checks it properly).
        if b"tools/call" not in body or not any(name in body for name in _HOT_TOOL_NAMES):
            return None
        # The MCP door's own checks come first there (an Origin, a version it does not speak), and
        # an OAuth token is another authenticator's: Django answers those.
        version = headers.get(b"mcp-protocol-version")
        mcp_version = version.decode("latin-1") if version is not None else None
        if b"origin" in headers or authorization[authorization.index(b" ") + 1 :][:5] != b"tmem_":
            return None
        if mcp_version is not None and mcp_version not in PROTOCOL_VERSIONS:
            return None
    secure = _is_secure(scope, headers)
    if settings.SECURE_SSL_REDIRECT and not secure:
        return None
    return Call(
        operation=operation,
        path_args=match.groupdict(),
        path=path,
        authorization=authorization.decode("latin-1"),
        offered_request_id=headers.get(b"x-request-id", b"").decode("latin-1"),
        secure=secure,
        mcp_version=mcp_version,
        query=query,
    )


# A trace page's query holds two fields (after_seq, limit); a longer one goes to Django.
_QUERY_FIELDS = 4


def _plain_query(query: bytes) -> bool:
    """A query string the door reads as Django does (:func:`_query_data`): ASCII (the WSGI bridge
    decodes it as such), and few enough fields that Django's ``DATA_UPLOAD_MAX_NUMBER_FIELDS`` refusal
    cannot apply."""
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    fields = query.count(b"&") + 1
    return query.isascii() and fields <= _QUERY_FIELDS and (limit is None or fields <= limit)


def _query_data(query: bytes) -> dict[str, str]:
    """``operation_input``'s reading of a GET's query: ``request.query_params`` (a ``QueryDict`` of
    the query string, the last value of a repeated name), a parameter sent empty not sent."""
    return {name: str(value) for name, value in QueryDict(query).items() if value != ""}


def _cookies_for_django(cookie: bytes) -> bool:
    """Cookies Django's middleware would act on. A browser session along with the key:
    SessionMiddleware, AuthenticationMiddleware and SecondFactorMiddleware read it (a session still
    owing its second factor is refused). A CSRF cookie of the wrong form: CsrfViewMiddleware answers
    with a new one. Other cookies (a load balancer's) change nothing."""
    cookies = parse_cookie(cookie.decode("latin-1"))
    if settings.SESSION_COOKIE_NAME in cookies:
        return True
    csrf = cookies.get(settings.CSRF_COOKIE_NAME)
    return csrf is not None and not settings.CSRF_USE_SESSIONS and _CSRF_SECRET.match(csrf) is None


# The forms CsrfViewMiddleware keeps (django.middleware.csrf._check_token_format): a secret, or a
# secret masked as Django before 4.0 stored it.
_CSRF_SECRET = re.compile(r"[a-zA-Z0-9]{32}(?:[a-zA-Z0-9]{32})?\Z")


def _host_allowed(headers: dict[bytes, bytes]) -> bool:
    # Django's request.get_host(), which CommonMiddleware calls on every request.
    if settings.USE_X_FORWARDED_HOST and b"x-forwarded-host" in headers:
        return False
    return _allowed_host(headers.get(b"host", b""))


@functools.lru_cache(maxsize=64)
def _allowed_host(host: bytes) -> bool:
    domain, _ = split_domain_port(host.decode("latin-1"))
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


def _is_secure(scope: dict[str, Any], headers: dict[bytes, bytes]) -> bool:
    # Django's request.is_secure(): the proxy's header when one is configured and sent, else the scheme.
    if settings.SECURE_PROXY_SSL_HEADER:
        name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        sent = headers.get(name.removeprefix("HTTP_").lower().replace("_", "-").encode())
        if sent is not None:
            return sent.decode("latin-1").split(",", 1)[0].strip() == secure_value
    return bool(scope.get("scheme") == "https")


def answer(call: Call, body: bytes) -> tuple[int, Headers, bytes] | None:
    """Answer ``call`` in this (pool) thread: status, headers and body, as Django would have; None,
    before anything happened, when the MCP message is not one this door answers (Django does)."""
    message = None
    if call.operation.door == "mcp":
        message = _tool_call_in(call, body)
        if message is None:
            return None
    request_started.send(sender=Call)
    started = time.perf_counter()
    request_id = request_id_for(call.offered_request_id)
    bind_request_id(request_id)
    try:
        with tracking_commits():
            status, extra, content, label = _respond(call, body, message)
        headers = [(b"content-type", b"application/json"), *extra, (b"allow", call.operation.allow)]
        headers.append((b"content-length", str(len(content)).encode()))  # CommonMiddleware's
        headers += _static_headers(call.secure)
        headers.append((b"x-request-id", request_id.encode()))
        if status >= 400:  # as django.utils.log.log_response words it
            log = logger.error if status >= 500 else logger.warning
            path = call.path.encode("unicode_escape").decode("ascii")
            fields = {"status_code": status, "request": _LoggedRequest(call)}
            log("%s: %s", http.HTTPStatus(status).phrase, path, extra=fields)
        try:
            requests, seconds = _request_metrics(call.operation.door, label, status)
            requests.inc()
            seconds.observe(time.perf_counter() - started)
        except Exception:  # counting must never fail a request
            logging.getLogger(__name__).exception("counting a request failed")
        return status, headers, content
    finally:
        request_finished.send(sender=Call)


@functools.lru_cache(maxsize=512)
def _request_metrics(door: str, label: str, status: int) -> tuple[Any, Any]:
    """The request metrics' children for these labels, looked up once per process (the labels are
    the door's operations and the statuses they answer)."""
    return metrics.REQUESTS.labels(door, label, str(status)), metrics.REQUEST_SECONDS.labels(door, label)


class _LoggedRequest:
    """The ``request`` of the refusal's log record, written as Django's own (a JSON log line shows it)."""

    def __init__(self, call: Call) -> None:
        self.method = call.operation.method
        self.path = call.path

    def __repr__(self) -> str:
        return f"<WSGIRequest: {self.method} {self.path!r}>"


class _ToolCall(NamedTuple):
    data: dict[str, Any]  # the JSON-RPC message
    request_id: str | int
    name: str  # the tool's (mcp.types.CallToolRequestParams' name and arguments)
    arguments: dict[str, Any] | None


class _ToolRequest:
    """What a tool reads of its request: the caller (``tracemem_site.mcp.mcp_actor``) and the message."""

    def __init__(self, actor: Actor | None, data: dict[str, Any]) -> None:
        self.auth, self.data = actor, data


def _respond(call: Call, body: bytes, message: _ToolCall | None) -> tuple[int, Headers, bytes, str]:
    """Status, headers beyond the usual, body and the metrics' operation label."""
    from tracemem_site import mcp, rest

    operation = call.operation
    try:
        actor = _caller(call)
        if message is None:
            if call.is_get:
                data = _query_data(call.query)
            else:
                data = rest.json_object(_parser().parse(io.BytesIO(body))) if body else {}
            args = rest.input_from(operation.model, data, call.path_args, in_query=call.is_get)
            answered, status = operation.view.answer(actor, args)
            return status, [], _render(answered), operation.label
        answered = mcp.MCPView().tools_call_answer(
            _ToolRequest(actor, message.data), message.request_id, message.name, message.arguments
        )
        if answered is None:  # _tool_call_in made sure the fast path runs this tool
            raise RuntimeError(f"the MCP fast path declined {message.name}")
        return answered[0], [], answered[1], f"mcp:tools/call:{message.name}"
    except Exception as exc:
        # As the views' handle_exception: MCP's outage answer, else the one exception handler.
        outage = database_outage(exc) if message is not None else None
        if outage is not None:
            refused: Any = mcp._unavailable_response(_ToolRequest(None, message.data), outage)  # type: ignore[union-attr]
            content = refused.content
        else:
            refused = rest.exception_handler(exc, {"view": operation.view()})
            content = _render(refused.data)
        extra = [
            (k.lower().encode("latin-1"), v.encode("latin-1"))
            for k, v in refused.items()
            if k.lower() != "content-type"
        ]
        return refused.status_code, extra, content, operation.label


def _caller(call: Call) -> Actor:
    """DRF's order: authenticate, permissions (an agent passes), throttle."""
    from agents.services import registry
    from tracemem_site import throttling

    check = registry.agent_key_authenticate(authorization=call.authorization, count_request=True)
    wait = throttling.over_limit(check.agent.agent_id, check.counted, call.operation.door)
    if wait is not None:
        raise exceptions.Throttled(wait)
    return Actor.for_agent(check.agent)


HOT_TOOLS = frozenset({"decision_create", "decision_get", "decision_add_context", "decision_evaluate"})
_HOT_TOOL_NAMES = tuple(name.encode() for name in HOT_TOOLS)


def _tool_call_in(call: Call, body: bytes) -> _ToolCall | None:
    """The ``tools/call`` of a hot tool in ``body`` that the MCP fast path answers (the checks
    ``FastPathMixin.fast_path`` makes before it runs one), or None. Reads nothing else."""
    from tracemem_site import mcp, mcp_adapter, mcp_modern

    try:
        data = _parser().parse(io.BytesIO(body))
    except Exception:  # the refusal is the MCP transport's to word
        return None
    meta = {"HTTP_MCP_PROTOCOL_VERSION": call.mcp_version} if call.mcp_version is not None else {}
    if not isinstance(data, dict) or mcp_modern.is_modern(meta, data):
        return None
    params, request_id = data.get("params"), data.get("id")
    if data.get("jsonrpc") != "2.0" or data.get("method") != "tools/call" or not isinstance(params, dict):
        return None
    name, arguments = params.get("name"), params.get("arguments")
    if (
        isinstance(request_id, bool)
        or not isinstance(request_id, str | int)
        or not isinstance(name, str)  # (a list would not even hash)
        or name not in HOT_TOOLS
    ):
        return None
    # What CallToolRequestParams would validate to, read directly when the params are just a name
    # and an object of arguments (as clients send them); anything else (a _meta, ...) is validated.
    if not (params.keys() <= _PLAIN_PARAMS and (arguments is None or type(arguments) is dict)):
        import pydantic
        from mcp import types

        try:
            parsed = types.CallToolRequestParams.model_validate(params)
        except pydantic.ValidationError:
            return None
        name, arguments = parsed.name, parsed.arguments
    found = mcp_adapter.fast_callable(name)
    if found is None or mcp._is_async(found[1]):
        return None
    return _ToolCall(data, request_id, name, arguments)


_PLAIN_PARAMS = frozenset({"name", "arguments"})


def _render(data: Any) -> bytes:
    # No media type: the renderer reads it only for an "indent" parameter, which the door's
    # "application/json" never has (parsing it took 2.5 of the 3.7 µs a small answer took to render).
    return _renderer().render(data, None, {})


@functools.cache
def _renderer() -> Any:
    from tracemem_site.renderers import FastJSONRenderer

    return FastJSONRenderer()


@functools.cache
def _parser() -> Any:
    from tracemem_site.parsers import BoundedJSONParser

    return BoundedJSONParser()


@functools.cache
def _static_headers(secure: bool) -> Headers:
    """The headers Django's middleware adds to every API answer (X-Frame-Options, Vary, Security's and
    the CSP), in their order; rebuilt when a setting changes (tests)."""
    from csp.utils import build_policy

    headers: Headers = [(b"x-frame-options", settings.X_FRAME_OPTIONS.encode()), (b"vary", b"Cookie")]
    for name, report_only in (
        (b"content-security-policy", False),
        (b"content-security-policy-report-only", True),
    ):
        policy = build_policy(report_only=report_only)
        if policy:
            headers.append((name, policy.encode()))
    if settings.SECURE_HSTS_SECONDS and secure:
        sts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        sts += "; includeSubDomains" if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS else ""
        sts += "; preload" if settings.SECURE_HSTS_PRELOAD else ""
        headers.append((b"strict-transport-security", sts.encode()))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        values = [v.strip() for v in policy.split(",")] if isinstance(policy, str) else policy
        headers.append((b"referrer-policy", ",".join(values).encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    return headers


def _setting_changed(**kwargs: Any) -> None:
    _static_headers.cache_clear()
    _allowed_host.cache_clear()


setting_changed.connect(_setting_changed, dispatch_uid="tracemem-agent-door")
