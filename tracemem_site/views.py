"""HTML door of the site itself: login, logout and the dashboard."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from agents.selectors import confirmed_device
from approvals.selectors import (
    approval_outcomes_since,
    failed_delivery_count,
    pending_count,
    second_factor_required,
    votable_count,
)
from decisions.selectors import OUTCOMES, dashboard_stats, denied_count_since
from tracemem_site.second_factor import ENROL_URL, VERIFY_URL
from tracemem_site.web import web_actor


class LoginView(auth_views.LoginView):
    """Password first; then, for whoever must use a second factor, the TOTP step (or enrolment).

    The session is signed in after the password but not *verified*: SecondFactorMiddleware lets it
    reach nothing but the two-factor pages until the code is given.
    """

    template_name = "ui/login.html"
    redirect_authenticated_user = True

    def form_valid(self, form: Any) -> HttpResponse:
        response = super().form_valid(form)
        user = form.get_user()
        if second_factor_required(user):
            target = VERIFY_URL if confirmed_device(user) is not None else ENROL_URL
            return redirect(f"{target}?{urlencode({'next': self.get_success_url()})}")
        return response


login_view = LoginView.as_view()


def locked_out(request: HttpRequest, response: HttpResponse | None, credentials: dict | None) -> HttpResponse:
    """django-axes' answer once an account or an address has too many failed sign-ins."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    message = (
        f"Too many failed sign-ins for this account or from this address. Sign-in is locked for "
        f"{minutes} minutes; try again later, or ask an admin to unlock it."
    )
    return render(request, "ui/login.html", {"locked_message": message, "form": None}, status=429)


# Django 5 only logs out on POST, which is what the base layout's form sends.
logout_view = auth_views.LogoutView.as_view(next_page="/login/")

CHART_COLOURS = {"committed": "#137a3a", "aborted": "#b42318", "in_flight": "#9aa5b5"}
CHART_LABELS = {"committed": "Committed", "aborted": "Aborted", "in_flight": "In flight"}


def _chart(per_day: list[dict[str, Any]]) -> dict[str, Any]:
    """Geometry for a stacked bar chart drawn as inline SVG (no JS chart library)."""
    width, height, pad_left, pad_bottom, pad_top = 700, 220, 30, 30, 10
    plot_h = height - pad_bottom - pad_top
    peak = max((sum(d[o] for o in OUTCOMES) for d in per_day), default=0) or 1
    slot = (width - pad_left) / max(len(per_day), 1)
    bars = []
    for i, day in enumerate(per_day):
        x = pad_left + i * slot + slot * 0.15
        y = height - pad_bottom
        segments = []
        for outcome in OUTCOMES:
            count = day[outcome]
            if not count:
                continue
            h = plot_h * count / peak
            y -= h
            segments.append(
                {
                    "x": round(x, 1),
                    "y": round(y, 1),
                    "w": round(slot * 0.7, 1),
                    "h": round(h, 1),
                    "fill": CHART_COLOURS[outcome],
                    "title": f"{day['day']:%b %d}: {count} {CHART_LABELS[outcome].lower()}",
                }
            )
        bars.append(
            {
                "segments": segments,
                "label": f"{day['day']:%d}",
                "label_x": round(x + slot * 0.35, 1),
                "total": sum(day[o] for o in OUTCOMES),
            }
        )
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "peak": peak,
        "baseline": height - pad_bottom,
        "label_y": height - 10,
        "top": pad_top,
        "legend": [{"label": CHART_LABELS[o], "fill": CHART_COLOURS[o]} for o in OUTCOMES],
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    actor = web_actor(request)
    stats = dashboard_stats(actor)
    # Recent activity: the last 7 UTC days, today included. Each tile links to the page listing
    # exactly what it counts (/review/resolved/, /decisions/, /review/deliveries/ with that filter).
    since = datetime.combine(timezone.now().date() - timedelta(days=6), time.min, tzinfo=UTC)
    return render(
        request,
        "ui/dashboard.html",
        {
            "stats": stats,
            # The queue's own count (the nav badge's): visible to this reviewer, not yet expired.
            "pending": pending_count(actor),
            "mine": votable_count(actor),
            "today": timezone.now().date().isoformat(),
            "outcomes": approval_outcomes_since(actor, since),
            "denied": denied_count_since(actor, since.date()),
            "delivery_failed": failed_delivery_count(actor, since),
            "outcomes_since": since.date().isoformat(),
            "median": _duration(stats.median_seconds_to_decision),
            "chart": _chart(stats.per_day),
        },
    )


@lru_cache(maxsize=1)
def _favicon() -> bytes:
    found = finders.find("favicon.svg")
    return Path(str(found)).read_bytes()


def favicon(request: HttpRequest) -> HttpResponse:
    """``/favicon.ico``, which browsers ask for on their own; pages link the same SVG."""
    response = HttpResponse(_favicon(), content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response
