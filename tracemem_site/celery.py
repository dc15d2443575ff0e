"""The Celery app. Tasks take ids and call services as the system actor (STYLE rule 14).

Also the worker's and the beat's observability (docs/operations.md): Django's LOGGING (text or
JSON, with the request id of the request that queued a task), OpenTelemetry when ``OTEL_*`` asks
for it, and the beat's heartbeat.
"""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signals

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracemem_site.settings")

app = Celery("tracemem")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

REQUEST_ID_HEADER = "tracemem_request_id"


@signals.setup_logging.connect
def _use_django_logging(loglevel: Any = None, logfile: str | None = None, **kwargs: Any) -> None:
    # Connected, so Celery leaves the root logger to Django's LOGGING: worker and beat lines have
    # the same format (TRACEMEM_LOG_FORMAT) and request ids as the web server's. Celery's
    # --loglevel and --logfile still apply.
    import copy
    import logging.config

    from django.conf import settings

    config = copy.deepcopy(settings.LOGGING)
    if logfile:
        config["handlers"]["console"] = {
            **config["handlers"]["console"],
            "class": "logging.FileHandler",
            "filename": logfile,
        }
    if loglevel:
        config["root"]["level"] = loglevel
    logging.config.dictConfig(config)


@signals.worker_init.connect
def _worker_tracing(**kwargs: Any) -> None:
    from tracemem_core import telemetry

    telemetry.setup("worker")


@signals.beat_init.connect
def _beat_started(sender: Any = None, **kwargs: Any) -> None:
    from tracemem_core import heartbeat, telemetry

    telemetry.setup("beat")
    heartbeat.beat_started()


@signals.worker_shutdown.connect
def _flush_spans(**kwargs: Any) -> None:
    from tracemem_core import telemetry

    telemetry.shutdown()


@signals.before_task_publish.connect
def _carry_request_id(headers: dict[str, Any] | None = None, **kwargs: Any) -> None:
    from tracemem_core.requestid import current_request_id

    request_id = current_request_id()
    if request_id and headers is not None:
        headers.setdefault(REQUEST_ID_HEADER, request_id)


@signals.after_task_publish.connect
def _beat_heartbeat(**kwargs: Any) -> None:
    from tracemem_core import heartbeat

    heartbeat.beat_published()


_bound: dict[str, Any] = {}


@signals.task_prerun.connect
def _bind_request_id(task_id: str = "", task: Any = None, **kwargs: Any) -> None:
    from tracemem_core.requestid import bind_request_id, current_request_id

    request_id = getattr(task.request, REQUEST_ID_HEADER, None) if task is not None else None
    # Inline (eager) tasks run inside the request that queued them, under its id already.
    _bound[task_id] = bind_request_id(request_id or current_request_id() or f"task-{task_id}")


@signals.task_postrun.connect
def _unbind_request_id(task_id: str = "", **kwargs: Any) -> None:
    from tracemem_core.requestid import reset_request_id

    token = _bound.pop(task_id, None)
    if token is not None:
        try:
            reset_request_id(token)
        except ValueError:  # bound in another context (eager mode inside a request): leave it
            pass
