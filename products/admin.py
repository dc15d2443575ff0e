from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages

from products.models import DataProduct, DataSource, ProductGrant, ProductStatus
from tracemem_site import crypto
from tracemem_site.actor import Actor
from tracemem_site.errors import DomainError


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


_DEFINITION_FIELDS = [
    "product_id",
    "name",
    "description",
    "operation",
    "source",
    "source_table",
    "fields",
    "key_fields",
    "allowed_purposes",
    "max_rows",
    "result_modes",
    "policies",
    "requires_approval",
    "example_queries",
]


class DataProductForm(forms.ModelForm):
    """The definition of a draft product; saving goes through product_create / product_update."""

    class Meta:
        model = DataProduct
        fields = _DEFINITION_FIELDS

    def definition(self) -> dict[str, Any]:
        """The cleaned form as the services' definition (their attribute names)."""
        data = self.cleaned_data
        out: dict[str, Any] = {
            name: data[name]
            for name in _DEFINITION_FIELDS
            if name in data and name not in ("product_id", "source", "source_table")
        }
        out["description"] = out.get("description") or ""
        if not out.get("result_modes"):
            out.pop("result_modes", None)  # empty in the form: the service's default (both modes)
        out["table"] = data.get("source_table")
        source = data.get("source")
        if source is not None:
            out["source"] = source.source_id
        return out

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        from products.services import product_check_definition

        product_id = cleaned.get("product_id") or (self.instance.product_id if self.instance else "")
        try:
            product_check_definition(
                actor=Actor.for_user(self.request_user), product_id=product_id, definition=self.definition()
            )
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None
        return cleaned


@admin.register(DataProduct)
class DataProductAdmin(admin.ModelAdmin):
    """Products are changed only through the services: a draft is saved with product_create /
    product_update (hash recomputed there), published with the "Publish" action (product_publish);
    a published product is read-only and cannot be deleted (the database refuses it too)."""

    form = DataProductForm
    list_display = ["product_id", "name", "operation", "status", "version", "source"]
    list_filter = ["status", "operation"]
    readonly_fields = ["status", "version", "hash", "published_at"]
    inlines = [ProductGrantInline]
    actions = ["publish_products"]

    def get_form(
        self, request: Any, obj: DataProduct | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        form.request_user = request.user
        return form

    def get_readonly_fields(self, request: Any, obj: DataProduct | None = None) -> Any:
        if obj is not None and obj.status == ProductStatus.PUBLISHED:
            # Frozen (agents rely on its hash): publish the next version instead.
            return [*_DEFINITION_FIELDS, *self.readonly_fields]
        if obj is not None:
            return ["product_id", *self.readonly_fields]
        return self.readonly_fields

    def has_delete_permission(self, request: Any, obj: DataProduct | None = None) -> bool:
        if obj is not None and obj.status == ProductStatus.PUBLISHED:
            return False
        return super().has_delete_permission(request, obj)

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        # The bulk "delete selected" action: published products are never deleted.
        super().delete_queryset(request, queryset.exclude(status=ProductStatus.PUBLISHED))

    def save_model(self, request: Any, obj: DataProduct, form: Any, change: bool) -> None:
        from products import services

        actor = Actor.for_user(request.user)
        if change and obj.status == ProductStatus.PUBLISHED:
            return  # nothing of a published product is editable here (grants are saved by the inline)
        if change:
            saved = services.product_update(actor=actor, product_id=obj.product_id, changes=form.definition())
        else:
            saved = services.product_create(
                actor=actor, product_id=form.cleaned_data["product_id"], definition=form.definition()
            )
        # The admin continues with this instance (inlines, the redirect): make it the saved row.
        obj.__dict__.update({k: v for k, v in saved.__dict__.items() if not k.startswith("_")})
        obj._state.adding = False

    @admin.action(description="Publish selected draft products (freezes them)")
    def publish_products(self, request: Any, queryset: Any) -> None:
        from products import services

        actor = Actor.for_user(request.user)
        published = []
        for product in queryset.filter(status=ProductStatus.DRAFT):
            try:
                services.product_publish(actor=actor, product_id=product.product_id)
            except DomainError as exc:
                self.message_user(request, f"{product.product_id}: {exc.message}", level=messages.ERROR)
            else:
                published.append(product.product_id)
        if published:
            self.message_user(request, f"Published {', '.join(published)}.", level=messages.SUCCESS)


@admin.register(ProductGrant)
class ProductGrantAdmin(admin.ModelAdmin):
    list_display = ["product", "agent", "permissions"]
