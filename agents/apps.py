from django.apps import AppConfig


class AgentsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "agents"
    verbose_name = "Agents and keys"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from agents import keycache, schema  # noqa: F401  (schema registers the OpenAPI auth schemes)
        from agents.models import Agent, AgentKey

        # The services invalidate remembered keys themselves; these catch every other write of an
        # agent or a key (the Django admin site, a shell), so none is trusted from memory after it.
        # Inside a transaction (the admin site's), one Redis cannot be told of is refused and rolled
        # back (agents/keycache.py).
        for model in (Agent, AgentKey):
            post_save.connect(_invalidate_keys, sender=model, dispatch_uid=f"keycache-save-{model.__name__}")
            post_delete.connect(
                _invalidate_keys, sender=model, dispatch_uid=f"keycache-delete-{model.__name__}"
            )


def _invalidate_keys(*, created: bool = False, **kwargs: object) -> None:
    from agents import keycache

    if created:
        return  # a new agent or key: no process can remember it yet

    keycache.invalidate_with_transaction()
