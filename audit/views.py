"""HTML door of the admin audit log: one page for superusers, linked from the menu."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from audit import selectors
from tracemem_core.errors import InvalidArgument
from tracemem_site.web import web_actor


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    actor = web_actor(request)
    query = {k: v for k, v in request.GET.items() if v.strip()}
    status, error = 200, None
    try:
        page = selectors.audit_log_page(actor, query)
    except InvalidArgument as exc:
        # Show the refusal next to the form; the table shows the newest entries unfiltered.
        status, error = 400, exc.message
        page = selectors.audit_log_page(actor, {})
    checked, broken = selectors.audit_verify()
    rows = [
        {
            "entry": entry,
            "before_json": json.dumps(entry.before, indent=2, sort_keys=True),
            "after_json": json.dumps(entry.after, indent=2, sort_keys=True),
        }
        for entry in page.entries
    ]
    older = None
    if page.next_cursor:
        older = request.GET.copy()
        older["cursor"] = page.next_cursor
    return render(
        request,
        "audit/log.html",
        {
            "rows": rows,
            "query": query,
            "error": error,
            "older_query": older.urlencode() if older is not None else None,
            "checked": checked,
            "broken": broken,
        },
        status=status,
    )
