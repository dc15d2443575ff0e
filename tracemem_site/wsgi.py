import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracemem_site.settings")
# OpenTelemetry (when OTEL_EXPORTER_OTLP_ENDPOINT is set) must wrap Django before the app is built.
from tracemem_core import telemetry  # noqa: E402

telemetry.setup("web")
application = get_wsgi_application()
