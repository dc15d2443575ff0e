"""The Celery app. Tasks take ids and call services as the system actor (STYLE rule 14)."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracemem_site.settings")

app = Celery("tracemem")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
