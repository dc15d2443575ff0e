"""Outbound destinations (issue 13, item 5): webhook endpoints, Slack integrations and data sources
are saved through one validated path (admin API, apply_config, Django admin), and every
connection goes only to an address the outbound rules allow, checked again when it is made.

What leaves the machine is the name lookup (``tracemem_core.outbound.resolve``): tests that need a
name to resolve somewhere replace it with :class:`FakeDNS`. Receivers are real local servers.
"""

from __future__ import annotations

import base64
import secrets
import socket
import ssl
import threading
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trustme
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from standardwebhooks import Webhook

from approvals.models import ApprovalRoute, Delivery, SlackIntegration, WebhookEndpoint
from approvals.services import outbox as approval_outbox
from audit.models import AuditEntry
from products.models import DataSource
from products.services import sources as product_sources
from tests.appr_helpers import make_route, open_decision, request_approval
from tests.perm_helpers import TokenClient, make_staff
from tracemem_core import crypto, outbound
from tracemem_core.actor import Actor
from tracemem_core.errors import InvalidArgument, InvalidState

pytestmark = pytest.mark.django_db
HOOKS = "/api/v1/admin/webhook-endpoints"
SLACK = "/api/v1/admin/integrations"
SOURCES = "/api/v1/admin/data-sources"
WORKER = Actor.system("test-worker")
PUBLIC = "93.184.216.34"  # a public address (nothing ever connects to it in these tests)


def whsec() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class FakeDNS:
    """Stands in for the system resolver: names in ``table`` resolve to its addresses, every
    other name goes to the real resolver (localhost, unknown names)."""

    def __init__(self, real: Any) -> None:
        self.table: dict[str, list[str]] = {}
        self.lookups: list[str] = []
        self._real = real

    def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host in self.table:
            return list(self.table[host])
        return self._real(host, port)


@pytest.fixture
def dns(monkeypatch: pytest.MonkeyPatch) -> FakeDNS:
    fake = FakeDNS(outbound.resolve)
    monkeypatch.setattr(outbound, "resolve", fake.resolve)
    return fake


@pytest.fixture
def no_loopback(settings: Any) -> None:
    """A production-like server: TRACEMEM_OUTBOUND_ALLOW is empty (only public addresses)."""
    settings.TRACEMEM_OUTBOUND_ALLOW = []


@pytest.fixture
def admin() -> TokenClient:
    return TokenClient(make_staff("ada"))


@pytest.fixture
def root() -> TokenClient:
    """Slack integrations vouch for reviewers: superusers set them up (docs/security.md)."""
    return TokenClient(get_user_model().objects.create_superuser("root", "root@example.com", "pw-root-12345"))


def error_of(response: Any) -> dict[str, Any]:
    return response.json()["error"]


def superuser_browser(username: str = "root") -> Client:
    """The Django admin as a signed-in superuser."""
    browser = Client()
    browser.force_login(make_staff(username, is_superuser=True))
    return browser


# --- the must-show ------------------------------------------------------------------------------


def test_webhook_endpoint_at_the_metadata_address_is_refused_naming_the_rule(admin: TokenClient) -> None:
    response = admin.post(HOOKS, {"name": "ops", "url": "http://169.254.169.254/", "signing_secret": whsec()})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_argument"
    assert error["message"] == (
        "webhook url http://169.254.169.254/ resolves to 169.254.169.254, a link-local/metadata address, "
        "which is never allowed"
    )
    assert error["details"] == {"field": "url", "rule": "never_allowed", "address": "169.254.169.254"}
    assert not WebhookEndpoint.objects.exists()
    assert not AuditEntry.objects.filter(object_type="webhook_endpoint").exists()


def test_metadata_and_link_local_stay_refused_even_when_the_allow_list_names_them(
    admin: TokenClient, settings: Any
) -> None:
    settings.TRACEMEM_OUTBOUND_ALLOW = ["169.254.0.0/16", "fe80::/10", "fc00::/7", "100.64.0.0/10"]
    for url in (
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://[::ffff:169.254.169.254]/",
    ):
        response = admin.post(HOOKS, {"name": "ops", "url": url, "signing_secret": whsec()})
        assert response.status_code == 400, url
        assert error_of(response)["details"]["rule"] == "never_allowed", url
        assert error_of(response)["message"].endswith("which is never allowed"), url
    assert not WebhookEndpoint.objects.exists()


# --- the address rules, through the admin API ---------------------------------------------------


@pytest.mark.parametrize(
    ("url", "address", "label"),
    [
        ("http://127.0.0.1:6379/", "127.0.0.1", "loopback"),
        ("https://[::1]:5432/", "::1", "loopback"),
        ("https://2130706433/", "127.0.0.1", "loopback"),  # decimal IPv4
        ("https://0177.0.0.1/", "127.0.0.1", "loopback"),  # octal IPv4
        ("https://0x7f.1/", "127.0.0.1", "loopback"),  # hex, short form
        ("https://[::ffff:127.0.0.1]/", "127.0.0.1", "loopback"),  # IPv4-mapped IPv6
        ("https://0.0.0.0/", "0.0.0.0", "unspecified"),
        ("https://[::]/", "::", "unspecified"),
        ("https://10.0.0.5/", "10.0.0.5", "private"),
        ("https://172.16.3.4/", "172.16.3.4", "private"),
        ("https://192.168.1.1/", "192.168.1.1", "private"),
        ("https://[fd12::1]/", "fd12::1", "private"),
        ("https://100.64.0.1/", "100.64.0.1", "carrier-grade NAT"),
        ("https://224.0.0.1/", "224.0.0.1", "multicast"),
        ("https://[ff02::1]/", "ff02::1", "multicast"),
        ("https://240.0.0.1/", "240.0.0.1", "reserved"),
        ("https://192.0.2.10/", "192.0.2.10", "reserved"),
    ],
)
def test_non_public_webhook_addresses_are_refused_unless_allowed(
    admin: TokenClient, no_loopback: None, url: str, address: str, label: str
) -> None:
    response = admin.post(HOOKS, {"name": "ops", "url": url, "signing_secret": whsec()})
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["message"].startswith(f"webhook url {url} resolves to {address}, a {label} address, ")
    assert "refused unless TRACEMEM_OUTBOUND_ALLOW lists it" in error["message"]
    assert error["details"] == {"field": "url", "rule": "not_allowed", "address": address}
    assert not WebhookEndpoint.objects.exists()


def test_a_name_resolving_to_a_private_address_is_refused_at_save(
    admin: TokenClient, no_loopback: None, dns: FakeDNS
) -> None:
    dns.table["hooks.corp.test"] = [PUBLIC, "10.1.2.3"]  # every address is checked, not just the first
    response = admin.post(
        HOOKS, {"name": "ops", "url": "https://hooks.corp.test/in", "signing_secret": whsec()}
    )
    assert response.status_code == 400
    assert error_of(response)["message"].startswith(
        "webhook url https://hooks.corp.test/in resolves to 10.1.2.3, a private address, "
    )
    assert "hooks.corp.test" in dns.lookups


@pytest.mark.parametrize("url", ["ftp://hooks.example/x", "file:///etc/passwd", "gopher://h/", "hooks"])
def test_only_http_and_https_urls_are_accepted(admin: TokenClient, url: str) -> None:
    response = admin.post(HOOKS, {"name": "ops", "url": url, "signing_secret": whsec()})
    assert response.status_code == 400
    error = error_of(response)
    assert error["details"]["field"] == "url" and error["details"]["rule"] == "scheme"
    assert "must use https" in error["message"]
    assert not WebhookEndpoint.objects.exists()


def test_plain_http_goes_only_to_destinations_the_allow_list_names(
    admin: TokenClient, no_loopback: None, dns: FakeDNS, settings: Any
) -> None:
    dns.table["hooks.public.test"] = [PUBLIC]
    plain = admin.post(
        HOOKS, {"name": "ops", "url": "http://hooks.public.test/in", "signing_secret": whsec()}
    )
    assert plain.status_code == 400
    assert error_of(plain)["details"]["rule"] == "plaintext"
    assert error_of(plain)["message"] == (
        f"webhook url http://hooks.public.test/in uses plain http to {PUBLIC}, which is allowed only for "
        "destinations TRACEMEM_OUTBOUND_ALLOW lists; use https"
    )
    tls = admin.post(HOOKS, {"name": "ops", "url": "https://hooks.public.test/in", "signing_secret": whsec()})
    assert tls.status_code == 201, tls.content

    settings.TRACEMEM_OUTBOUND_ALLOW = ["10.0.0.0/8", "hooks.corp.test"]
    dns.table["hooks.corp.test"] = ["192.168.7.7"]  # allowed by its name, whatever it resolves to
    for name, url in (("lan", "http://10.9.8.7:8080/hook"), ("corp", "http://hooks.corp.test/hook")):
        created = admin.post(HOOKS, {"name": name, "url": url, "signing_secret": whsec()})
        assert created.status_code == 201, (url, created.content)


def test_cloud_metadata_host_names_are_refused_whatever_they_resolve_to(admin: TokenClient) -> None:
    for host in ("metadata.google.internal", "METADATA.GOOGLE.INTERNAL.", "metadata.goog"):
        response = admin.post(HOOKS, {"name": "ops", "url": f"https://{host}/x", "signing_secret": whsec()})
        assert response.status_code == 400, host
        assert error_of(response)["details"]["rule"] == "never_allowed"
        assert "a cloud metadata service, which is never allowed" in error_of(response)["message"]


def test_a_name_that_does_not_resolve_yet_is_saved_and_checked_when_used(admin: TokenClient) -> None:
    created = admin.post(HOOKS, {"name": "ops", "url": "https://hooks.invalid/in", "signing_secret": whsec()})
    assert created.status_code == 201, created.content


# --- webhook endpoints: the API, secrets and the audit log --------------------------------------


def test_webhook_endpoints_api_creates_lists_patches_and_deletes_with_secrets_write_only(
    admin: TokenClient, dns: FakeDNS
) -> None:
    dns.table["hooks.example.com"] = [PUBLIC]
    dns.table["hooks2.example.com"] = [PUBLIC]
    first, second = whsec(), whsec()
    created = admin.post(
        HOOKS,
        {
            "name": "ops",
            "url": "https://user:pw-in-url@hooks.example.com/in?token=q-secret",
            "signing_secret": first,
        },
    )
    assert created.status_code == 201, created.content
    expected = {
        "name": "ops",
        "url": "https://hooks.example.com/in",
        "has_signing_secret": True,
        "routes": [],
    }
    assert created.json() == expected
    assert admin.get(HOOKS).json() == {"webhook_endpoints": [expected]}
    assert admin.get(f"{HOOKS}/ops").json() == expected
    assert (
        admin.post(
            HOOKS, {"name": "ops", "url": "https://hooks.example.com/", "signing_secret": first}
        ).json()["error"]["code"]
        == "conflict"
    )

    patched = admin.patch(f"{HOOKS}/ops", {"url": "https://hooks2.example.com/v2"})
    assert patched.status_code == 200 and patched.json()["url"] == "https://hooks2.example.com/v2"
    assert WebhookEndpoint.objects.get(name="ops").signing_secret == first  # kept: not given
    assert admin.patch(f"{HOOKS}/ops", {"signing_secret": second}).status_code == 200
    assert WebhookEndpoint.objects.get(name="ops").signing_secret == second
    renamed = admin.patch(f"{HOOKS}/ops", {"name": "other"})
    assert renamed.status_code == 400 and error_of(renamed)["details"]["field"] == "name"
    bad_secret = admin.patch(f"{HOOKS}/ops", {"signing_secret": "hunter2"})
    assert bad_secret.status_code == 400 and error_of(bad_secret)["details"]["field"] == "signing_secret"
    assert "hunter2" not in bad_secret.content.decode()
    unknown = admin.patch(f"{HOOKS}/ops", {"secret": "x"})
    assert unknown.status_code == 400 and "allowed: url, signing_secret" in error_of(unknown)["message"]
    assert admin.get(f"{HOOKS}/nope").status_code == 404

    deleted = admin.delete(f"{HOOKS}/ops")
    assert deleted.status_code == 204
    assert not WebhookEndpoint.objects.exists()

    log = [
        (e.action, e.before, e.after)
        for e in AuditEntry.objects.filter(object_type="webhook_endpoint").order_by("seq")
    ]
    assert log == [
        (
            "webhook_endpoint.create",
            None,
            {"name": "ops", "url": "https://hooks.example.com/in", "write_only_changed": ["signing_secret"]},
        ),
        (
            "webhook_endpoint.update",
            {"name": "ops", "url": "https://hooks.example.com/in"},
            {"name": "ops", "url": "https://hooks2.example.com/v2"},
        ),
        (
            "webhook_endpoint.update",
            {"name": "ops", "url": "https://hooks2.example.com/v2"},
            {"name": "ops", "url": "https://hooks2.example.com/v2", "write_only_changed": ["signing_secret"]},
        ),
        ("webhook_endpoint.delete", {"name": "ops", "url": "https://hooks2.example.com/v2"}, None),
    ]
    text = str([(e.before, e.after) for e in AuditEntry.objects.all()])
    for secret in (first[6:], second[6:], "pw-in-url", "q-secret"):
        assert secret not in text


def test_webhook_endpoints_need_manage_integrations(dns: FakeDNS) -> None:
    dns.table["hooks.example.com"] = [PUBLIC]
    WebhookEndpoint.objects.create(name="ops", url="https://hooks.example.com/", signing_secret=whsec())
    outsider = TokenClient(make_staff("route-editor", "approvals.manage_routes"))
    refused = outsider.post(
        HOOKS, {"name": "x", "url": "https://hooks.example.com/", "signing_secret": whsec()}
    )
    assert refused.status_code == 403
    assert error_of(refused)["details"] == {"permission": "approvals.manage_integrations"}
    for response in (
        outsider.get(HOOKS),
        outsider.get(f"{HOOKS}/ops"),
        outsider.patch(f"{HOOKS}/ops", {"url": "https://hooks.example.com/v2"}),
        outsider.delete(f"{HOOKS}/ops"),
        outsider.post(SLACK, {"name": "main", "bot_token": "xoxb-1", "signing_secret": "s"}),
        outsider.get(SLACK),
    ):
        assert response.status_code == 403, response.content
    assert list(WebhookEndpoint.objects.values_list("name", "url")) == [("ops", "https://hooks.example.com/")]
    assert not SlackIntegration.objects.exists()
    assert not AuditEntry.objects.filter(object_type__in=["webhook_endpoint", "slack_integration"]).exists()

    reader = TokenClient(make_staff("reader", "approvals.view_webhookendpoint"))
    assert reader.get(HOOKS).status_code == 200
    assert (
        reader.post(HOOKS, {"name": "x", "url": "https://a.example/", "signing_secret": whsec()}).status_code
        == 403
    )
    keeper = TokenClient(make_staff("keeper", "approvals.manage_integrations"))
    assert keeper.patch(f"{HOOKS}/ops", {"url": "https://hooks.example.com/v2"}).status_code == 200


# --- Slack integrations ------------------------------------------------------------------------


def test_slack_api_base_url_at_the_metadata_address_is_refused(root: TokenClient) -> None:
    response = root.post(
        SLACK,
        {
            "name": "main",
            "bot_token": "xoxb-1",
            "signing_secret": "sign-1",
            "api_base_url": "http://169.254.169.254/api/",
        },
    )
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "slack api_base_url http://169.254.169.254/api/ resolves to 169.254.169.254, a link-local/metadata "
        "address, which is never allowed"
    )
    assert error_of(response)["details"]["field"] == "api_base_url"
    assert not SlackIntegration.objects.exists()


def test_slack_integrations_api_keeps_tokens_write_only_and_audits(root: TokenClient) -> None:
    created = root.post(SLACK, {"name": "main", "bot_token": "xoxb-tok-123", "signing_secret": "sign-456"})
    assert created.status_code == 201, created.content
    expected = {
        "name": "main",
        "type": "slack",
        "api_base_url": "https://slack.com/api/",
        "has_bot_token": True,
        "has_signing_secret": True,
        "routes": [],
    }
    assert created.json() == expected
    assert root.get(SLACK).json() == {"integrations": [expected]}
    assert root.get(f"{SLACK}/main").json() == expected
    assert root.patch(f"{SLACK}/main", {"bot_token": "xoxb-tok-789"}).status_code == 200
    assert SlackIntegration.objects.get(name="main").bot_token == "xoxb-tok-789"
    missing = root.post(SLACK, {"name": "other", "bot_token": "xoxb-1"})
    assert missing.status_code == 400 and error_of(missing)["details"]["field"] == "signing_secret"
    entries = list(AuditEntry.objects.filter(object_type="slack_integration").order_by("seq"))
    assert [(e.action, e.after) for e in entries] == [
        (
            "slack_integration.create",
            {
                "name": "main",
                "api_base_url": "https://slack.com/api/",
                "write_only_changed": ["bot_token", "signing_secret"],
            },
        ),
        (
            "slack_integration.update",
            {"name": "main", "api_base_url": "https://slack.com/api/", "write_only_changed": ["bot_token"]},
        ),
    ]
    assert "xoxb-tok" not in str([e.after for e in entries]) and "sign-456" not in str(root.get(SLACK).json())


# --- data sources ------------------------------------------------------------------------------


def test_dsn_reaching_loopback_is_refused_when_loopback_is_not_allowed(
    admin: TokenClient, no_loopback: None
) -> None:
    response = admin.post(SOURCES, {"source_id": "probe", "dsn": "postgresql://u:pw-77@127.0.0.1:6379/db"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["message"] == (
        "dsn host 127.0.0.1 resolves to 127.0.0.1, a loopback address, which is refused unless "
        "TRACEMEM_OUTBOUND_ALLOW lists it (for example 127.0.0.1/32)"
    )
    assert error["details"] == {"field": "dsn", "rule": "not_allowed", "address": "127.0.0.1"}
    assert "pw-77" not in response.content.decode()
    assert not DataSource.objects.filter(pk="probe").exists()


@pytest.mark.parametrize(
    ("dsn", "option"),
    [
        ("postgresql://u:p@db.example.com/d?service=prod", "service"),
        ("host=db.example.com dbname=d passfile=/home/u/.pgpass", "passfile"),
        ("postgresql://u@db.example.com/d?sslkey=/etc/ssl/private/k.pem", "sslkey"),
        ("postgresql://u@db.example.com/d?sslcert=/etc/ssl/c.pem", "sslcert"),
        ("postgresql://u@db.example.com/d?sslrootcert=/etc/passwd", "sslrootcert"),
        ("postgresql://u@db.example.com/d?sslcrl=/x", "sslcrl"),
        ("postgresql://u@db.example.com/d?options=-c%20log_statement%3Dall", "options"),
        ("host=db.example.com hostaddr=127.0.0.1 dbname=d", "hostaddr"),
        ("host=db.example.com dbname=d sslcrldir=/etc/ssl/crl", "sslcrldir"),
        ("host=db.example.com dbname=d sslpassword=x", "sslpassword"),
        ("host=db.example.com dbname=d krbsrvname=postgres", "krbsrvname"),
        ("host=db.example.com dbname=d gssencmode=require", "gssencmode"),
    ],
)
def test_file_reading_and_redirecting_dsn_options_are_refused(
    admin: TokenClient, dsn: str, option: str
) -> None:
    response = admin.post(SOURCES, {"source_id": "crm", "dsn": dsn})
    assert response.status_code == 400, response.content
    error = error_of(response)
    assert error["details"] == {"field": "dsn", "rule": "dsn_option", "option": option}
    assert error["message"].startswith(
        f"dsn option {option} is not allowed; allowed: host, port, dbname, user, password, "
    )
    assert not DataSource.objects.filter(pk="crm").exists()


@pytest.mark.parametrize(
    ("dsn", "message"),
    [
        ("dbname=d user=u", "dsn must name a host"),
        ("host=/var/run/postgresql dbname=d", "dsn host /var/run/postgresql is a unix socket"),
        ("host=@abstract dbname=d", "dsn host @abstract is a unix socket"),
        ("postgresql://u@a.example.com,b.example.com/d", "dsn names several hosts"),
        ("host=db.example.com port=5432,5433 dbname=d", "dsn port must be one number"),
    ],
)
def test_dsn_hosts_must_be_one_network_host(admin: TokenClient, dsn: str, message: str) -> None:
    response = admin.post(SOURCES, {"source_id": "crm", "dsn": dsn})
    assert response.status_code == 400, response.content
    assert error_of(response)["message"].startswith(message)
    assert error_of(response)["details"]["field"] == "dsn"


def test_allowed_dsn_options_are_kept_and_sslrootcert_may_be_the_system_store(admin: TokenClient) -> None:
    dsn = (
        "postgresql://u:pw@db.example.com:5433/d?sslmode=verify-full&sslrootcert=system&connect_timeout=3"
        "&application_name=tm&target_session_attrs=read-write"
    )
    created = admin.post(SOURCES, {"source_id": "crm", "dsn": dsn})
    assert created.status_code == 201, created.content
    assert created.json()["dsn"] == (
        "host=db.example.com port=5433 dbname=d user=u sslmode=verify-full sslrootcert=system "
        "connect_timeout=3 application_name=tm target_session_attrs=read-write"
    )


# --- connect time: DNS rebinding and rows stored before the rules -------------------------------


class Listener:
    """A TCP port that records whether anyone connected (a stand-in for Redis on 6379)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


def _webhook_route(endpoint: str = "ops") -> None:
    make_route("route_finance", channels=[{"type": "webhook", "endpoint": endpoint}])


def test_webhook_rebinding_to_loopback_after_save_is_refused_at_connect_time(
    admin: TokenClient, api: Any, httpserver: Any, no_loopback: None, dns: FakeDNS
) -> None:
    dns.table["hooks.rebind.test"] = [PUBLIC]
    url = f"https://hooks.rebind.test:{httpserver.port}/hook"
    assert admin.post(HOOKS, {"name": "ops", "url": url, "signing_secret": whsec()}).status_code == 201
    dns.table["hooks.rebind.test"] = ["127.0.0.1"]  # the attacker's DNS answers differently now
    httpserver.expect_request("/hook").respond_with_data("ok")
    _webhook_route()
    approval_id = request_approval(api, open_decision(api), approval_route_id="route_finance").json()[
        "approval_id"
    ]
    delivery = Delivery.objects.get(approval_id=approval_id)
    approval_outbox.delivery_attempt(actor=WORKER, delivery_id=delivery.delivery_id)
    delivery.refresh_from_db()
    assert delivery.status == "pending" and delivery.attempts == 1
    assert delivery.last_error == (
        "webhook endpoint 'ops' was not contacted: hooks.rebind.test resolves to 127.0.0.1, a loopback "
        "address, which is refused unless TRACEMEM_OUTBOUND_ALLOW lists it (for example 127.0.0.1/32)"
    )
    assert httpserver.log == []


def test_webhook_connects_to_the_checked_address_keeping_the_host_header(
    admin: TokenClient, api: Any, httpserver: Any, dns: FakeDNS
) -> None:
    # hooks.local.test exists only in FakeDNS: a delivery that reaches the receiver connected to the
    # address the check resolved, not to whatever a second lookup would say.
    dns.table["hooks.local.test"] = ["127.0.0.1"]
    url = f"http://hooks.local.test:{httpserver.port}/hook"
    secret = whsec()
    assert admin.post(HOOKS, {"name": "ops", "url": url, "signing_secret": secret}).status_code == 201
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    _webhook_route()
    approval_id = request_approval(api, open_decision(api), approval_route_id="route_finance").json()[
        "approval_id"
    ]
    before = len(dns.lookups)
    delivery = Delivery.objects.get(approval_id=approval_id)
    approval_outbox.delivery_attempt(actor=WORKER, delivery_id=delivery.delivery_id)
    delivery.refresh_from_db()
    assert delivery.status == "delivered", delivery.last_error
    [(request, _)] = httpserver.log
    assert request.headers["Host"] == f"hooks.local.test:{httpserver.port}"
    Webhook(secret).verify(request.get_data(as_text=True), dict(request.headers))
    assert dns.lookups[before:] == ["hooks.local.test"]  # resolved once, for the connection


def test_a_stored_endpoint_that_breaks_the_rules_is_refused_when_used(api: Any, no_loopback: None) -> None:
    # Saved before this release (straight into the table): never contacted now.
    WebhookEndpoint.objects.create(name="ops", url="http://169.254.169.254/latest/", signing_secret=whsec())
    _webhook_route()
    approval_id = request_approval(api, open_decision(api), approval_route_id="route_finance").json()[
        "approval_id"
    ]
    delivery = Delivery.objects.get(approval_id=approval_id)
    approval_outbox.delivery_attempt(actor=WORKER, delivery_id=delivery.delivery_id)
    delivery.refresh_from_db()
    assert delivery.last_error == (
        "webhook endpoint 'ops' was not contacted: 169.254.169.254 resolves to 169.254.169.254, a "
        "link-local/metadata address, which is never allowed"
    )


def test_tls_is_verified_for_the_host_name_while_connecting_to_the_checked_address(
    httpserver_ssl: Any, dns: FakeDNS, ca: trustme.CA
) -> None:
    dns.table["hooks.tls.test"] = ["127.0.0.1"]
    httpserver_ssl.expect_request("/hook").respond_with_data("ok")
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with outbound.http_client(verify=context) as client:
        answered = client.get(f"https://hooks.tls.test:{httpserver_ssl.port}/hook")
        assert answered.status_code == 200 and answered.text == "ok"
        [(request, _)] = httpserver_ssl.log
        assert request.headers["Host"] == f"hooks.tls.test:{httpserver_ssl.port}"
        # The certificate names hooks.tls.test only: an address-only URL fails verification.
        with pytest.raises(Exception, match="certificate|hostname|IP address mismatch"):
            client.get(f"https://127.0.0.1:{httpserver_ssl.port}/hook")


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def httpserver_ssl(ca: trustme.CA) -> Iterator[Any]:
    from pytest_httpserver import HTTPServer

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("hooks.tls.test").configure_cert(context)
    server = HTTPServer(host="127.0.0.1", port=0, ssl_context=context)
    server.start()
    yield server
    server.clear()
    server.stop()


def _local_dsn(host: str, port: int | None = None) -> str:
    db = connection.settings_dict
    return f"postgresql://{db['USER']}@{host}:{port or db['PORT']}/{db['NAME']}"


def test_data_source_rebinding_to_loopback_is_refused_before_connecting(
    no_loopback: None, dns: FakeDNS, listener: Listener
) -> None:
    dns.table["warehouse.rebind.test"] = [PUBLIC]
    product_sources.data_source_save(
        actor=Actor.system(), source_id="wh", dsn=_local_dsn("warehouse.rebind.test", listener.port)
    )
    dns.table["warehouse.rebind.test"] = ["127.0.0.1"]
    source = DataSource.objects.get(pk="wh")
    from products.engine import open_runner

    with pytest.raises(InvalidState) as refused:
        with open_runner(source):
            pass
    assert refused.value.message == (
        "data source wh was not contacted: its host is not an allowed destination (the server log says "
        "which rule); ask an admin to check the data source and TRACEMEM_OUTBOUND_ALLOW"
    )
    assert listener.accepted == 0


def test_data_source_connects_to_the_checked_address_with_hostaddr(dns: FakeDNS) -> None:
    # warehouse.local.test exists only in FakeDNS: libpq reaches the test database through hostaddr.
    dns.table["warehouse.local.test"] = ["127.0.0.1"]
    product_sources.data_source_save(
        actor=Actor.system(), source_id="wh", dsn=_local_dsn("warehouse.local.test")
    )
    from products.engine import open_runner

    with open_runner(DataSource.objects.get(pk="wh")) as runner:
        assert runner.execute("SELECT 1", []).rows == [(1,)]
    assert dns.lookups.count("warehouse.local.test") == 2  # once at save, once to connect


def test_a_stored_dsn_with_a_refused_option_is_refused_at_connect_time(listener: Listener) -> None:
    DataSource.objects.create(
        source_id="old",
        name="old",
        kind="postgresql",
        dsn_encrypted=crypto.encrypt(
            _local_dsn("127.0.0.1", listener.port) + "?sslkey=/etc/ssl/private/k.pem"
        ),
    )
    from products.engine import open_runner

    with pytest.raises(InvalidState) as refused:
        with open_runner(DataSource.objects.get(pk="old")):
            pass
    assert refused.value.message.startswith(
        "data source old was not contacted: its DSN is no longer allowed (dsn option sslkey is not allowed; "
    )
    assert "an admin must save its DSN again" in refused.value.message
    assert listener.accepted == 0


def test_psycopg_would_have_connected_without_the_check(listener: Listener) -> None:
    # The guard above is what stops the probe: plain psycopg does reach the port.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(_local_dsn("127.0.0.1", listener.port), connect_timeout=2)
    assert listener.accepted >= 1


# --- routes name existing endpoints ------------------------------------------------------------


def test_route_naming_a_missing_webhook_endpoint_is_refused_through_every_door(
    admin: TokenClient, tmp_path: Path
) -> None:
    body = {"route_id": "route_ops", "channels": [{"type": "webhook", "endpoint": "nope"}]}
    refused = admin.post("/api/v1/admin/routes", body)
    assert refused.status_code == 400
    error = error_of(refused)
    assert error["details"]["field"] == "channels"
    assert error["message"] == (
        "channels[0] names webhook endpoint 'nope', which does not exist; create it first "
        "(POST /api/v1/admin/webhook-endpoints) or name an existing one (none yet)"
    )
    missing = admin.post("/api/v1/admin/routes", {"route_id": "route_ops", "channels": [{"type": "webhook"}]})
    assert missing.status_code == 400 and "needs endpoint" in error_of(missing)["message"]
    slack = admin.post(
        "/api/v1/admin/routes",
        {"route_id": "route_ops", "channels": [{"type": "slack", "integration": "ghost", "channel": "C1"}]},
    )
    assert slack.status_code == 400 and "Slack integration 'ghost'" in error_of(slack)["message"]

    config = tmp_path / "routes.yaml"
    config.write_text("routes:\n  - route_id: route_ops\n    channels: [{type: webhook, endpoint: nope}]\n")
    with pytest.raises(CommandError, match="webhook endpoint 'nope', which does not exist"):
        call_command("apply_config", str(config), stdout=StringIO())

    page = superuser_browser().post(
        "/admin/approvals/approvalroute/add/",
        {
            "route_id": "route_ops",
            "name": "ops",
            "channels": '[{"type": "webhook", "endpoint": "nope"}]',
            "required_approvals": 1,
            "expires_in_seconds": 3600,
        },
    )
    assert page.status_code == 200 and b"which does not exist" in page.content
    assert not ApprovalRoute.objects.exists()

    WebhookEndpoint.objects.create(name="nope", url="https://hooks.example.com/", signing_secret=whsec())
    assert admin.post("/api/v1/admin/routes", body).status_code == 201
    in_use = admin.delete(f"{HOOKS}/nope")
    assert in_use.status_code == 409
    assert error_of(in_use)["message"] == (
        "webhook endpoint nope is used by route route_ops; remove it from those routes first"
    )
    assert admin.get(f"{HOOKS}/nope").json()["routes"] == ["route_ops"]


# --- the Django admin goes through the same path ------------------------------------------------


def test_django_admin_refuses_metadata_urls_and_saves_through_the_service(dns: FakeDNS) -> None:
    dns.table["hooks.example.com"] = [PUBLIC]
    browser = superuser_browser()
    bad = browser.post(
        "/admin/approvals/webhookendpoint/add/",
        {"name": "ops", "url": "http://169.254.169.254/", "signing_secret": whsec()},
    )
    assert bad.status_code == 200 and b"which is never allowed" in bad.content
    bad_slack = browser.post(
        "/admin/approvals/slackintegration/add/",
        {
            "name": "main",
            "bot_token": "xoxb-1",
            "signing_secret": "s",
            "api_base_url": "http://[fe80::1]/api/",
        },
    )
    assert bad_slack.status_code == 200 and b"which is never allowed" in bad_slack.content
    bad_source = browser.post(
        "/admin/products/datasource/add/",
        {"source_id": "crm", "name": "CRM", "dsn": "postgresql://u@db.example.com/d?passfile=/root/.pgpass"},
    )
    assert bad_source.status_code == 200 and b"dsn option passfile is not allowed" in bad_source.content
    assert not WebhookEndpoint.objects.exists() and not SlackIntegration.objects.exists()
    assert not DataSource.objects.filter(pk="crm").exists()

    good = browser.post(
        "/admin/approvals/webhookendpoint/add/",
        {"name": "ops", "url": "https://hooks.example.com/in", "signing_secret": whsec()},
    )
    assert good.status_code == 302, good.content.decode()[:1500]
    [entry] = AuditEntry.objects.filter(object_type="webhook_endpoint")
    assert (entry.action, entry.actor_name) == ("webhook_endpoint.create", "root")


def test_slack_admin_refuses_loopback_when_not_allowed(no_loopback: None) -> None:
    page = superuser_browser().post(
        "/admin/approvals/slackintegration/add/",
        {
            "name": "main",
            "bot_token": "xoxb-1",
            "signing_secret": "s",
            "api_base_url": "http://[::1]:8080/api/",
        },
    )
    assert page.status_code == 200 and b"a loopback address" in page.content
    assert not SlackIntegration.objects.exists()


# --- apply_config --------------------------------------------------------------------------------


def _apply(path: Path, *args: str) -> str:
    out = StringIO()
    call_command("apply_config", str(path), *args, stdout=out)
    return out.getvalue()


def test_apply_config_round_trip_of_every_destination(tmp_path: Path, dns: FakeDNS) -> None:
    dns.table["hooks.example.com"] = [PUBLIC]
    hook_secret = whsec()
    config = tmp_path / "tm.yaml"
    config.write_text(
        f"""
data_sources:
  - source_id: warehouse
    dsn: postgresql://etl:very-secret-pw@warehouse.invalid/shop?sslmode=require
webhook_endpoints:
  - name: ops
    url: https://hooks.example.com/tracemem
    signing_secret: {hook_secret}
slack_integrations:
  - name: main
    bot_token: xoxb-config-token
    signing_secret: slack-config-secret
routes:
  - route_id: route_ops
    channels: [{{type: webhook, endpoint: ops}}, {{type: slack, integration: main, channel: C1}}]
"""
    )
    dry = _apply(config, "--dry-run")
    assert "[dry-run] would create webhook endpoint ops" in dry
    assert "[dry-run] would create Slack integration main" in dry
    assert "[dry-run] would create route route_ops" in dry
    assert not WebhookEndpoint.objects.exists() and not AuditEntry.objects.exists()

    first = _apply(config)
    assert "create webhook endpoint ops" in first and "create Slack integration main" in first
    for secret in (hook_secret, "xoxb-config-token", "slack-config-secret", "very-secret-pw"):
        assert secret not in first
    assert WebhookEndpoint.objects.get(name="ops").signing_secret == hook_secret
    assert SlackIntegration.objects.get(name="main").bot_token == "xoxb-config-token"
    count = AuditEntry.objects.count()

    again = _apply(config)
    assert "webhook endpoint ops unchanged" in again and "Slack integration main unchanged" in again
    assert "data source warehouse unchanged" in again
    assert AuditEntry.objects.count() == count

    config.write_text(config.read_text().replace("/tracemem", "/v2"))
    assert "update webhook endpoint ops" in _apply(config)
    assert WebhookEndpoint.objects.get(name="ops").url == "https://hooks.example.com/v2"


def test_apply_config_refuses_a_bad_destination_and_changes_nothing(
    tmp_path: Path, no_loopback: None
) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        f"""
webhook_endpoints:
  - {{name: good, url: 'https://hooks.invalid/x', signing_secret: {whsec()}}}
  - {{name: redis, url: 'http://127.0.0.1:6379/', signing_secret: {whsec()}}}
"""
    )
    for args in ((), ("--dry-run",)):
        with pytest.raises(CommandError) as refused:
            _apply(config, *args)
        assert "webhook url http://127.0.0.1:6379/ resolves to 127.0.0.1, a loopback address" in str(
            refused.value
        )
        assert str(refused.value).endswith("; nothing was changed")
    assert not WebhookEndpoint.objects.exists() and not AuditEntry.objects.exists()

    sources = tmp_path / "sources.yaml"
    sources.write_text("data_sources:\n  - {source_id: crm, dsn: 'host=db.invalid dbname=d service=prod'}\n")
    with pytest.raises(CommandError, match="dsn option service is not allowed"):
        _apply(sources, "--dry-run")


# --- end to end: a webhook delivered to a real local receiver when loopback is allowed ----------


def test_webhook_delivered_end_to_end_to_a_local_receiver(
    admin: TokenClient, api: Any, httpserver: Any
) -> None:
    secret = whsec()
    created = admin.post(HOOKS, {"name": "ops", "url": httpserver.url_for("/hook"), "signing_secret": secret})
    assert created.status_code == 201, created.content
    route = admin.post(
        "/api/v1/admin/routes",
        {"route_id": "route_ops", "channels": [{"type": "webhook", "endpoint": "ops"}]},
    )
    assert route.status_code == 201, route.content
    httpserver.expect_request("/hook", method="POST").respond_with_data("ok")
    decision_id = open_decision(api)
    approval_id = request_approval(api, decision_id, approval_route_id="route_ops").json()["approval_id"]
    [delivery] = Delivery.objects.filter(approval_id=approval_id)
    approval_outbox.delivery_attempt(actor=WORKER, delivery_id=delivery.delivery_id)
    delivery.refresh_from_db()
    assert delivery.status == "delivered", delivery.last_error
    [(request, _)] = httpserver.log
    payload = Webhook(secret).verify(request.get_data(as_text=True), dict(request.headers))
    assert (payload["approval_id"], payload["decision_id"]) == (approval_id, decision_id)


def test_the_outbound_client_ignores_proxy_variables(
    monkeypatch: pytest.MonkeyPatch, httpserver: Any, listener: Listener
) -> None:
    # A proxy would resolve the name itself, after the check: the outbound client never uses one.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{listener.port}")
    monkeypatch.setenv("NO_PROXY", "")
    httpserver.expect_request("/x").respond_with_data("ok")
    with outbound.http_client() as client:
        assert client.get(httpserver.url_for("/x")).text == "ok"
        assert client.follow_redirects is False
    assert listener.accepted == 0


# --- the setting ---------------------------------------------------------------------------------


def test_outbound_allow_entries_are_parsed_and_a_bad_one_fails_loudly(settings: Any) -> None:
    settings.TRACEMEM_OUTBOUND_ALLOW = ["10.0.0.0/8", "192.168.1.7", "::1", "db.corp.example", "Hooks.Corp."]
    rules = outbound.allowed()
    assert [str(n) for n in rules.networks] == ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]
    assert rules.hosts == frozenset({"db.corp.example", "hooks.corp"})
    for bad in ("10.0.0.0/33", "http://x", "a b", "10.0.0.1/8"):
        settings.TRACEMEM_OUTBOUND_ALLOW = [bad]
        with pytest.raises(ImproperlyConfigured, match="TRACEMEM_OUTBOUND_ALLOW"):
            outbound.allowed()


def test_the_test_suite_and_the_embedded_default_allow_loopback(settings: Any) -> None:
    assert "127.0.0.0/8" in settings.TRACEMEM_OUTBOUND_ALLOW and "::1" in settings.TRACEMEM_OUTBOUND_ALLOW
    with pytest.raises(InvalidArgument):
        outbound.check_url("http://169.254.169.254/", what="webhook url", field="url")
