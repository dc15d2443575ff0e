from django.apps import AppConfig


class ProductsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "products"
    verbose_name = "Data products"

    def ready(self) -> None:
        # decision_evaluate(inputs_ref=<read event>) re-reads that read's records through us.
        from policies.services.evaluation import register_read_records_resolver
        from products.services.reads import read_event_records

        register_read_records_resolver(read_event_records)
