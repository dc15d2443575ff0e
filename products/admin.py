from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin

from products.models import DataProduct, DataSource, ProductGrant
from tracemem_site import crypto


class DataSourceForm(forms.ModelForm):
    # Write-only: rendered empty every time; leaving it empty keeps the stored DSN.
    dsn = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="PostgreSQL DSN. Stored encrypted and never shown again; leave empty to keep the current one.",
    )

    class Meta:
        model = DataSource
        fields = ["source_id", "name", "kind"]

    def clean_dsn(self) -> str:
        value = self.cleaned_data.get("dsn") or ""
        if value:
            from products.services import _dsn_display
            from tracemem_site.errors import InvalidArgument

            try:
                self._display = _dsn_display(value)
            except InvalidArgument as exc:
                raise forms.ValidationError(exc.message) from None
        return value

    def save(self, commit: bool = True) -> Any:
        source = super().save(commit=False)
        if self.cleaned_data.get("dsn"):
            source.dsn_display = self._display
            source.dsn_encrypted = crypto.encrypt(self.cleaned_data["dsn"])
        if commit:
            source.save()
        return source


@admin.register(DataSource)
class DataSourceAdmin(admin.ModelAdmin):
    form = DataSourceForm
    list_display = ["source_id", "name", "kind", "dsn_display"]
    readonly_fields = ["dsn_display"]


class ProductGrantInline(admin.TabularInline):
    model = ProductGrant
    extra = 0


@admin.register(DataProduct)
class DataProductAdmin(admin.ModelAdmin):
    list_display = ["product_id", "name", "operation", "status", "version", "source"]
    list_filter = ["status", "operation"]
    readonly_fields = ["hash", "published_at"]
    inlines = [ProductGrantInline]

    def get_readonly_fields(self, request: Any, obj: DataProduct | None = None) -> Any:
        # A published product is frozen (agents rely on its hash): publish the next version instead.
        if obj is not None and obj.status == "published":
            return [f.name for f in DataProduct._meta.fields]
        return self.readonly_fields

    def save_model(self, request: Any, obj: DataProduct, form: Any, change: bool) -> None:
        # The hash must always cover the stored definition, however it was edited.
        from products.services import product_hash

        obj.hash = product_hash(obj)
        super().save_model(request, obj, form, change)


@admin.register(ProductGrant)
class ProductGrantAdmin(admin.ModelAdmin):
    list_display = ["product", "agent", "permissions"]
