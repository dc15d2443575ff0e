"""docker-compose.yml and the Dockerfile (Docker itself does not run here): they parse and say
what the deployment needs — five services with health checks, web waiting for healthy stores and a
one-shot migrate job that alone logs in as the owner of the tables (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_five_services_each_with_a_healthcheck_and_a_migrate_job() -> None:
    services = _compose()["services"]
    assert set(services) == {"migrate", "web", "worker", "beat", "postgres", "redis"}
    for name, service in services.items():
        if name != "migrate":  # a one-shot job: it runs and exits
            assert service["healthcheck"]["test"], name
    assert services["migrate"]["restart"] == "no"
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"


def test_app_services_run_the_right_commands_from_env() -> None:
    services = _compose()["services"]
    web_command = " ".join(services["web"]["command"])
    assert (
        "exec scripts/serve.sh" in web_command
    )  # gunicorn + the asyncio front: tests/site/test_entry_points.py
    assert "manage.py migrate" not in web_command  # the app role may not: the migrate job does it
    assert services["worker"]["command"] == ["scripts/worker.sh"]
    assert services["beat"]["command"] == ["scripts/beat.sh"]
    for name in ("web", "worker", "beat"):
        assert services[name]["env_file"] == ".env", name
        assert services[name]["build"] == "."
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"


def test_only_the_migrate_job_and_postgres_hold_the_owner_credentials() -> None:
    """The server logs in as the app role (issue 11): the owner's password never reaches it."""
    services = _compose()["services"]
    migrate_command = " ".join(services["migrate"]["command"])
    assert migrate_command.index("manage.py migrate") < migrate_command.index(
        "manage.py db_roles --app-user tracemem_app --products-user tracemem_products"
    )
    assert services["migrate"]["env_file"] == [".env", "owner.env"]
    assert services["postgres"]["env_file"] == "owner.env"
    for name in ("web", "worker", "beat"):
        environment = services[name]["environment"]
        assert environment["DATABASE_URL"].startswith("${DATABASE_URL:-postgres://tracemem_app:"), name
        assert environment["TRACEMEM_PRODUCTS_ROLE"] == "tracemem_products", name
        assert "MIGRATION_DATABASE_URL" not in environment and "owner.env" not in str(services[name]), name
    owner_example = (ROOT / "owner.env.example").read_text()
    # The owner's URL is made from POSTGRES_* by the migrate job (tests/site/test_ops_config.py).
    assert "\n# MIGRATION_DATABASE_URL=postgres://tracemem:" in owner_example
    assert "\nPOSTGRES_PASSWORD=" in owner_example
    assert "MIGRATION_DATABASE_URL=" not in (ROOT / ".env.example").read_text().replace(
        "# MIGRATION_DATABASE_URL=", ""
    )
    assert "owner.env" in (ROOT / ".gitignore").read_text().split()


def test_env_example_names_what_compose_needs() -> None:
    env_example = (ROOT / ".env.example").read_text()
    for variable in (
        "DJANGO_SECRET_KEY",
        "DATABASE_URL",
        "REDIS_URL",
        "DJANGO_ALLOWED_HOSTS",
        "TRACEMEM_PRODUCTS_ROLE",
    ):
        assert f"\n{variable}=" in env_example


def test_dockerfile_builds_from_python_311_slim_and_runs_unprivileged() -> None:
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    assert "RUN pip install ." in lines
    assert any("collectstatic" in line for line in lines)
    users = [line for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("USER root", "USER 0")


def test_quick_start_installs_only_what_running_needs_and_readme_says_what_to_have() -> None:
    """Issue 18 (audit): ``make run`` installs the runtime only (the dev extra holds the test and
    lint tools); the README states the prerequisites up front and how to reset the demo admin's
    password."""
    import re
    import tomllib

    run = (ROOT / "scripts" / "run.sh").read_text()
    installs = [line.strip() for line in run.splitlines() if "scripts/install.sh" in line]
    assert installs == ["scripts/install.sh"], installs  # no --dev
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {re.split(r"[\[=<>~! ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    dev = {
        re.split(r"[\[=<>~! ]", dep, maxsplit=1)[0].lower() for dep in project["optional-dependencies"]["dev"]
    }
    for tool in ("pytest", "playwright", "mypy", "ruff", "hypothesis"):
        assert tool not in runtime, tool
    assert {"pytest", "ruff"} <= dev
    readme = (ROOT / "README.md").read_text()
    head = readme[: readme.index("make run")]
    for needed in ("Python 3.11", "PostgreSQL", "Redis", "npx", "Chromium"):
        assert needed in head, needed
    assert "manage.py changepassword admin" in readme


def test_make_tests_migration_check_prints_no_missing_database_warning(tmp_path: Path) -> None:
    """Issue 18 (audit): scripts/test.sh checks migrations against the server's maintenance
    database, so `make test` prints no "database ... does not exist" warning even before pytest
    has created the test database. Runs the script's own line with a database that does not exist."""
    import os
    import subprocess

    line = next(
        text.strip()
        for text in (ROOT / "scripts" / "test.sh").read_text().splitlines()
        if "makemigrations --check" in text
    )
    base = os.environ["DATABASE_URL"].rsplit("/", 1)[0]
    done = subprocess.run(
        ["bash", "-c", line.replace(">/dev/null", "")],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": f"{base}/tracemem_no_such_database",
            "TRACEMEM_VAR_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "does not exist" not in done.stdout + done.stderr, done.stderr
