"""HTML forms of the policy pages: shape only (JSON parses); the services validate the rest."""

from __future__ import annotations

import json
from typing import Any

from django import forms

from policies.models import Outcome
from tracemem_core import safejson


class JSONTextField(forms.CharField):
    widget = forms.Textarea(attrs={"rows": 12, "class": "mono", "spellcheck": "false"})

    def __init__(self, *, allow_empty: bool = False, **kwargs: Any) -> None:
        self.allow_empty = allow_empty
        super().__init__(required=not allow_empty, **kwargs)

    def to_python(self, value: Any) -> Any:
        text = super().to_python(value) or ""
        if not text.strip():
            return None
        try:
            return safejson.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"not valid JSON: {exc}") from None

    def prepare_value(self, value: Any) -> Any:
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


class PolicyCreateForm(forms.Form):
    policy_id = forms.SlugField(max_length=100, help_text="e.g. discount_cap_v1")
    name = forms.CharField(max_length=200)


class PolicyDraftForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    inputs_schema = JSONTextField(
        allow_empty=True, help_text="JSON Schema (2020-12) for inputs; empty = none"
    )
    rules = JSONTextField(help_text='[{"name", "when" (CEL), "outcome", "message"}] — first match wins')
    default_outcome = forms.ChoiceField(choices=Outcome.choices, initial=Outcome.DENY)
    exception_route_id = forms.CharField(max_length=100, required=False)

    def definition(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["exception_route_id"] = data.get("exception_route_id") or None
        return data


class ConsoleForm(forms.Form):
    inputs = JSONTextField(allow_empty=True, help_text="sample inputs object")
    decision = JSONTextField(
        allow_empty=True,
        help_text='optional decision variables: {"intent", "automation_mode", "actor", "metadata"}',
    )
    limit = forms.IntegerField(min_value=1, max_value=1000, initial=50, required=False)
