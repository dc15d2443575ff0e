from django.apps import AppConfig


class TracememSiteConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "tracemem_site"
    verbose_name = "TraceMem"
