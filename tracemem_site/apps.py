from django.apps import AppConfig


class TracememSiteConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tracemem_site"
    verbose_name = "TraceMem"

    def ready(self) -> None:
        # Runs after mcp_server's ready() (INSTALLED_APPS order), which autodiscovered every
        # <app>/mcp.py and registered its toolsets.
        from tracemem_core.outbound import allowed
        from tracemem_site.mcp import configure_mcp_server

        configure_mcp_server()
        allowed()  # a bad TRACEMEM_OUTBOUND_ALLOW entry stops the process here, naming it
