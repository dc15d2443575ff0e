"""One readable line per trace event for the decision page (issue 18); the raw JSON stays one click
away. Pure functions of the stored event: nothing here reads the database."""

from __future__ import annotations

from typing import Any


def _first(payload: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if payload.get(key) not in (None, ""):
            return payload[key]
    return None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _who(actor: Any) -> str:
    if isinstance(actor, dict):
        return str(actor.get("name") or actor.get("id") or "someone")
    return "someone"


def event_line(event_type: str, payload: Any, actor: Any = None) -> str:
    """What happened, as a person reads it: who did what, the rule and message, the row count…"""
    p: dict[str, Any] = payload if isinstance(payload, dict) else {}
    if event_type == "created":
        return f"Decision opened: {p.get('intent', '?')} ({p.get('automation_mode', '?')})"
    if event_type == "context":
        summary = p.get("summary")
        if summary:
            return f"Context: {summary}"
        context = p.get("context")
        keys = ", ".join(sorted(context)) if isinstance(context, dict) else ""
        return f"Context recorded ({keys})" if keys else "Context recorded"
    if event_type == "evaluate":
        rationale = _dict(p.get("rationale"))
        rule = rationale.get("rule")
        message = rationale.get("message")
        line = f"Policy {_first(p, 'policy_id', 'policy') or '?'}: {p.get('outcome', '?')}"
        if rule:
            line += f" (rule {rule})"
        return f"{line} — {message}" if message else line
    if event_type in ("read", "write"):
        product = _first(p, "product_id", "product") or "?"
        if event_type == "read":
            summary = _dict(p.get("summary"))
            rows = summary.get("rows")
            count = f", {rows} row{'s' if rows != 1 else ''}" if rows is not None else ""
            return f"Read {product}{count}" + (f" for {p['purpose']}" if p.get("purpose") else "")
        rows = p.get("affected_rows")
        count = f", {rows} row{'s' if rows != 1 else ''} affected" if rows is not None else ""
        return f"Wrote {product} ({p.get('operation', '?')}){count}"
    if event_type == "approval_requested":
        title = f": {p['title']}" if p.get("title") else ""
        return f"Approval requested on route {p.get('route_id', '?')}{title}"
    if event_type == "approval_vote":
        voter = _who(p.get("voter"))
        why = f": {p['rationale']}" if p.get("rationale") else " (no rationale)"
        return f"{voter} voted {p.get('vote', '?')} via {p.get('channel', '?')}{why}"
    if event_type == "approval_resolved":
        approvers = ", ".join(_who(a) for a in p.get("approvers") or [])
        by = f" by {approvers}" if approvers else ""
        return f"Approval {p.get('outcome', '?')}{by} (via {p.get('channel', '?')})"
    if event_type == "delivery":
        error = f" — {p['error']}" if p.get("error") else ""
        attempts = p.get("attempts")
        tries = f" after {attempts} attempt{'s' if attempts != 1 else ''}" if attempts is not None else ""
        return f"Notification by {p.get('channel', '?')}: {p.get('status', '?')}{tries}{error}"
    if event_type == "close":
        note = p.get("summary") or p.get("reason")
        return f"Closed: {p.get('status', p.get('action', '?'))}" + (f" — {note}" if note else "")
    if event_type == "record":
        return f"Engineering decision recorded: {p.get('title', '?')}"
    return f"{event_type} by {_who(actor)}"
