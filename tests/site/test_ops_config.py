"""Configuration is complete (issue 18): ``.env.example`` lists every environment variable TraceMem
reads — the server's Python, the entry-point scripts, docker-compose and the Python client — and
nothing that nothing reads. The variables TraceMem leaves to a library (the OpenTelemetry SDK's
standard ``OTEL_*``) count as read only if that library really defines them."""

from __future__ import annotations

import re
from pathlib import Path

import opentelemetry.sdk.environment_variables as otel_sdk_env

ROOT = Path(__file__).resolve().parents[2]
SERVER_DIRS = [
    "agents",
    "approvals",
    "audit",
    "decisions",
    "policies",
    "products",
    "tracemem_core",
    "tracemem_site",
]
# Operator settings, by prefix. (HTTP_* request headers, local shell variables, TEST_* of the suite,
# DJANGO_SETTINGS_MODULE, which the code sets itself, and DJANGO_ALLOW_ASYNC_UNSAFE, Django's escape hatch
# for notebooks that tracemem_core's stand-ins for Django's async checks honour as Django does, are not
# configuration.)
PREFIXES = (
    "TRACEMEM_",
    "DJANGO_",
    "DATABASE_URL",
    "MIGRATION_DATABASE_URL",
    "DB_",
    "REDIS_URL",
    "CELERY_",
    "EMAIL_",
    "DEFAULT_FROM_EMAIL",
    "SESSION_COOKIE_",
    "CSRF_COOKIE_",
    "LOG_LEVEL",
    "POSTGRES_",
    "OTEL_",
    "PROMETHEUS_",
    "MALLOC_",  # glibc's, set by scripts/serve.sh
)
NOT_CONFIGURATION = {"DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}

# A read: a typed reader, os.environ / a mapping's get or [] with a literal name, or a NAME_ENV constant.
PY_READ = re.compile(
    r"""(?:env_(?:str|bool|int|list|identifier)|_int|_float|_str|\.get|getenv|setdefault)\(\s*"([A-Z][A-Z0-9_]+)"|"""
    r"""_setting\([^,()]*,\s*"([A-Z][A-Z0-9_]+)"|"""
    r"""environ\[\s*"([A-Z][A-Z0-9_]+)"\s*\]|[A-Z_]*ENV\s*=\s*"([A-Z][A-Z0-9_]+)\""""
)
SHELL_READ = re.compile(r"\$\$?\{?([A-Z][A-Z0-9_]+)")
DOCUMENTED = re.compile(r"^#? ?([A-Z][A-Z0-9_]+)=", re.M)


def _config(names: set[str]) -> set[str]:
    return {n for n in names if n.startswith(PREFIXES) and n not in NOT_CONFIGURATION}


def _python_reads(paths: list[Path]) -> set[str]:
    found: set[str] = set()
    for path in paths:
        for match in PY_READ.finditer(path.read_text()):
            found.update(group for group in match.groups() if group)
    return _config(found)


def read_by_code() -> dict[str, set[str]]:
    server = [p for d in SERVER_DIRS for p in (ROOT / d).rglob("*.py") if "migrations" not in p.parts]
    server += [ROOT / "manage.py", *sorted((ROOT / "scripts").glob("*.py"))]
    shell_files = [*sorted((ROOT / "scripts").glob("*.sh")), ROOT / "docker-compose.yml", ROOT / "Dockerfile"]
    shell = _config({m for path in shell_files for m in SHELL_READ.findall(path.read_text())})
    shell -= {"TEST_DATABASE_URL", "TEST_REDIS_URL"}  # scripts/test.sh: the suite's own
    client = _python_reads(sorted((ROOT / "clients" / "python" / "src").rglob("*.py")))
    return {"server": _python_reads(server), "scripts and compose": shell, "client": client}


def documented() -> set[str]:
    return set(DOCUMENTED.findall((ROOT / ".env.example").read_text()))


def test_every_variable_the_code_reads_is_in_env_example() -> None:
    listed = documented()
    missing = {where: sorted(names - listed) for where, names in read_by_code().items() if names - listed}
    assert missing == {}, f"read but not in .env.example: {missing}"


def test_env_example_lists_nothing_that_nothing_reads() -> None:
    read = set().union(*read_by_code().values())
    # The OpenTelemetry SDK reads the standard variables itself (TraceMem passes none of them on).
    sdk = {value for name, value in vars(otel_sdk_env).items() if name.startswith("OTEL_")}
    unread = sorted(documented() - read - sdk)
    assert unread == [], f"in .env.example but read by nothing: {unread}"


def test_the_scan_sees_the_variables_the_issue_found_missing() -> None:
    """The scanner itself: the variables issue 18 found undocumented are all seen as read."""
    read = set().union(*read_by_code().values())
    for name in (
        "TRACEMEM_RECEIPT_KEY",
        "TRACEMEM_RECEIPT_KEY_FILE",
        "CELERY_BROKER_URL",
        "DB_CONN_MAX_AGE",
        "TRACEMEM_MAX_BODY_BYTES",
        "TRACEMEM_DELIVERY_MAX_ATTEMPTS",
        "TRACEMEM_DELIVERY_LEASE_MS",
        "TRACEMEM_EMAIL_LINK_MAX_AGE",
        "TRACEMEM_DEFAULT_ROUTE",
        "TRACEMEM_DEMO_PASSWORD",
        "TRACEMEM_VAR_DIR",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "TRACEMEM_ENCRYPTION_KEY",
        "TRACEMEM_METRICS_TOKEN",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "TRACEMEM_URL",
    ):
        assert name in read, name


def test_the_signing_and_encryption_keys_carry_the_backup_warning() -> None:
    text = (ROOT / ".env.example").read_text()
    for name in ("TRACEMEM_ENCRYPTION_KEY", "TRACEMEM_RECEIPT_KEY"):
        block = text[: text.index(f"# {name}=")].rsplit("\n\n", 1)[-1]
        assert "back it up" in block.lower() or "back them up" in block.lower(), name


# --- docker-compose -----------------------------------------------------------------------------------
# Docker Compose is not installed here (`docker compose config` is not available), so the file is
# validated against the Compose Specification's JSON Schema (tests/vectors/compose-spec.json, from
# github.com/compose-spec/compose-spec, Apache-2.0) and its health checks are run for real below.


def _compose() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    import json
    import shutil
    import subprocess

    import jsonschema

    compose = _compose()
    schema = json.loads((ROOT / "tests" / "vectors" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose)
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        done = subprocess.run(["docker", "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    broken = json.loads(json.dumps(compose))
    broken["services"]["web"]["healthcheck"]["interval"] = 15  # a number, not a duration string
    try:
        jsonschema.Draft7Validator(schema).validate(broken)
    except jsonschema.ValidationError:
        pass
    else:
        raise AssertionError("the schema did not catch a broken healthcheck")


def test_every_long_running_service_has_a_healthcheck_that_tests_the_right_thing() -> None:
    services = _compose()["services"]
    assert "/healthz" in " ".join(services["web"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(services["worker"]["healthcheck"]["test"])
    assert services["beat"]["healthcheck"]["test"] == ["CMD", "python", "scripts/heartbeat_check.py", "beat"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "ping" in " ".join(services["redis"]["healthcheck"]["test"])


def test_web_listens_where_its_healthcheck_and_port_mapping_look_whatever_env_says() -> None:
    """Issue 18 (audit): ``.env`` (env_file) may set TRACEMEM_PORT for ``make run`` or to move the
    published port; inside the container web must still listen on 0.0.0.0:8000, where the port
    mapping and the healthcheck look (``environment`` wins over ``env_file``)."""
    web = _compose()["services"]["web"]
    environment = web.get("environment", {})
    assert environment.get("TRACEMEM_HOST") == "0.0.0.0", environment
    assert str(environment.get("TRACEMEM_PORT")) == "8000", environment
    assert all(str(mapping).endswith(":8000") for mapping in web["ports"]), web["ports"]
    assert "127.0.0.1:8000/healthz" in " ".join(web["healthcheck"]["test"])


def test_the_owner_credentials_are_written_once_in_owner_env() -> None:
    import subprocess
    import sys

    owner = (ROOT / "owner.env.example").read_text()
    active = [line for line in owner.splitlines() if line and not line.startswith("#")]
    assert [line.split("=", 1)[0] for line in active] == ["POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"]
    assert "change-me-owner-password" not in "\n".join(
        line for line in (ROOT / "docker-compose.yml").read_text().splitlines()
    )
    migrate = " ".join(_compose()["services"]["migrate"]["command"])
    assert "scripts/owner_url.py" in migrate
    made = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "owner_url.py")],
        env={"POSTGRES_USER": "tracemem", "POSTGRES_PASSWORD": "p@ss:w/rd%", "POSTGRES_DB": "tracemem"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert made.stdout.strip() == "postgres://tracemem:p%40ss%3Aw%2Frd%25@postgres:5432/tracemem"
    import dj_database_url

    parsed = dj_database_url.parse(made.stdout.strip())
    assert (parsed["USER"], parsed["PASSWORD"], parsed["HOST"]) == ("tracemem", "p@ss:w/rd%", "postgres")


def test_operations_doc_covers_backup_upgrades_key_rotation_and_scaling_out() -> None:
    """Issue 18 (audit): docs/operations.md has the sections an operator needs, each naming what it
    must (the backup lists the database, the encryption key and the receipt signing key)."""
    text = (ROOT / "docs" / "operations.md").read_text()

    def section(title: str) -> str:
        assert f"\n## {title}\n" in text, title
        return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]

    backup = section("Backup and restore")
    for needed in (
        "pg_dump",
        "pg_restore",
        "TRACEMEM_ENCRYPTION_KEY",
        "TRACEMEM_RECEIPT_KEY",
        "verify_traces",
    ):
        assert needed in backup, needed
    assert "migrate" in section("Upgrades")
    rotation = section("Key rotation")
    assert "TRACEMEM_RECEIPT_KEY" in rotation and "TRACEMEM_ENCRYPTION_KEY" in rotation
    scaling = section("Scaling out")
    assert "web" in scaling and "worker" in scaling and "beat" in scaling
