"""docker-compose.yml and the Dockerfile (Docker itself does not run here): they parse and say
what the deployment needs — five services with health checks, web waiting for healthy stores."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_five_services_each_with_a_healthcheck() -> None:
    services = _compose()["services"]
    assert set(services) == {"web", "worker", "beat", "postgres", "redis"}
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"


def test_app_services_run_the_right_commands_from_env() -> None:
    services = _compose()["services"]
    web_command = " ".join(services["web"]["command"])
    assert "exec scripts/serve.sh" in web_command  # gunicorn, gthread: tests/test_entry_points.py
    assert "manage.py migrate" in web_command
    assert services["worker"]["command"] == ["scripts/worker.sh"]
    assert services["beat"]["command"] == ["scripts/beat.sh"]
    for name in ("web", "worker", "beat"):
        assert services[name]["env_file"] == ".env", name
        assert services[name]["build"] == "."
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"


def test_env_example_names_what_compose_needs() -> None:
    env_example = (ROOT / ".env.example").read_text()
    for variable in ("DJANGO_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DJANGO_ALLOWED_HOSTS"):
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
