from django.apps import AppConfig


class AgentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "agents"
    verbose_name = "Agents and keys"

    def ready(self) -> None:
        from agents import schema  # noqa: F401  (registers the OpenAPI auth schemes)
