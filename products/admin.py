from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages

from products.models import DataProduct, DataSource, ProductGrant, ProductStatus, SourceKind
from products.services import definitions as product_definitions
from products.services import sources as product_sources
from tracemem_core.actor import Actor
from tracemem_core.errors import DomainError
from tracemem_site.admin_perms import GuardedAdmin, request_has_perm


class DataSourceForm(forms.ModelForm):
    # Write-only: rendered empty every time; leaving it empty keeps the stored DSN.
    dsn = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="PostgreSQL DSN. Stored encrypted and never shown again; leave empty to keep the current one.",
    )

    class Meta:
        model = DataSource
        fields = ["source_id", "name"]

    def clean_dsn(self) -> str:
        value = self.cleaned_data.get("dsn") or ""
        if value:
            try:
                product_sources.clean_dsn(value)
            except DomainError as exc:
                raise forms.ValidationError(exc.message) from None
        elif not self.instance.pk:
            raise forms.ValidationError("a DSN is required for a new data source")
        return value


@admin.register(DataSource)
class DataSourceAdmin(GuardedAdmin, admin.ModelAdmin):
    """Sources are saved through ``data_source_save`` (the DSN encrypted there, and logged by name only)."""

    change_perm = "products.manage_data_sources"
    read_area = "data_sources"
    form = DataSourceForm
    list_display = ["source_id", "name", "kind", "dsn_display"]
    readonly_fields = ["kind", "dsn_display"]

    def get_readonly_fields(self, request: Any, obj: DataSource | None = None) -> Any:
        if obj is not None and obj.kind == SourceKind.BUILTIN:
            return ["source_id", "name", *self.readonly_fields]  # TraceMem's own database: not editable
        return ["source_id", *self.readonly_fields] if obj is not None else self.readonly_fields

    def save_model(self, request: Any, obj: DataSource, form: Any, change: bool) -> None:
        if obj.kind == SourceKind.BUILTIN:
            return
        saved = product_sources.data_source_save(
            actor=Actor.for_user(request.user),
            source_id=obj.source_id,
            name=form.cleaned_data.get("name"),
            dsn=form.cleaned_data.get("dsn") or None,
        )
        obj.__dict__.update({k: v for k, v in saved.__dict__.items() if not k.startswith("_")})
        obj._state.adding = False

    def delete_model(self, request: Any, obj: DataSource) -> None:

        product_sources.data_source_delete(actor=Actor.for_user(request.user), source_id=obj.source_id)

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for source in queryset:
            self.delete_model(request, source)


class ProductGrantInline(GuardedAdmin, admin.TabularInline):
    """Saved through ``product_grant`` / ``product_revoke`` (see DataProductAdmin.save_formset)."""

    change_perm = "products.grant_products"
    model = ProductGrant
    extra = 0

    def has_view_permission(self, request: Any, obj: Any = None) -> bool:
        return True  # shown inside a product page its viewer may already see


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
        if self.errors or not any(name in self.fields for name in _DEFINITION_FIELDS):
            return cleaned  # invalid already, or the definition is read-only on this page
        product_id = cleaned.get("product_id") or (self.instance.product_id if self.instance else "")
        try:
            product_definitions.product_check_definition(
                actor=Actor.for_user(self.request_user), product_id=product_id, definition=self.definition()
            )
        except DomainError as exc:
            raise forms.ValidationError(exc.message) from None
        return cleaned


@admin.register(DataProduct)
class DataProductAdmin(GuardedAdmin, admin.ModelAdmin):
    """Products are changed only through the services: a draft is saved with product_create /
    product_update (hash recomputed there), published with the "Publish" action (product_publish);
    a published product is read-only and cannot be deleted (the database refuses it too)."""

    change_perm = "products.define_products"
    read_area = "products"
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
        if obj is not None and (obj.status == ProductStatus.PUBLISHED or not self._may_change(request)):
            # Frozen (agents rely on its hash): publish the next version instead.
            return [*_DEFINITION_FIELDS, *self.readonly_fields]
        if obj is not None:
            return ["product_id", *self.readonly_fields]
        return self.readonly_fields

    def has_change_permission(self, request: Any, obj: DataProduct | None = None) -> bool:
        # Publishing or granting also goes through this page (the action, the grants inline).
        return super().has_change_permission(request, obj) or any(
            request_has_perm(request, perm)
            for perm in ("products.publish_products", "products.grant_products")
        )

    def has_publish_permission(self, request: Any) -> bool:
        return request_has_perm(request, "products.publish_products")

    def has_delete_permission(self, request: Any, obj: DataProduct | None = None) -> bool:
        if obj is not None and obj.status == ProductStatus.PUBLISHED:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request: Any, obj: DataProduct) -> None:

        product_definitions.product_delete(actor=Actor.for_user(request.user), product_id=obj.product_id)

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        # The bulk "delete selected" action: published products are never deleted.
        for product in queryset.exclude(status=ProductStatus.PUBLISHED):
            self.delete_model(request, product)

    def save_formset(self, request: Any, form: Any, formset: Any, change: bool) -> None:
        """The grants inline: each added, changed or deleted grant goes through the services."""

        actor = Actor.for_user(request.user)
        # What formset.save() would have set; the admin's change message reads them.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        for inline in formset.forms:
            grant = inline.instance
            if inline in formset.deleted_forms:
                if grant.pk is not None:
                    product_definitions.product_revoke(
                        actor=actor, product_id=grant.product_id, agent_id=grant.agent_id
                    )
                    formset.deleted_objects.append(grant)
                continue
            if not inline.has_changed() or not inline.cleaned_data:
                continue
            if grant.pk is not None and "agent" in inline.changed_data:
                # Moving a grant to another agent takes it from the first one.
                product_definitions.product_revoke(
                    actor=actor, product_id=form.instance.product_id, agent_id=inline.initial["agent"]
                )
            saved = product_definitions.product_grant(
                actor=actor,
                product_id=form.instance.product_id,
                agent_id=inline.cleaned_data["agent"].agent_id,
                permissions=inline.cleaned_data.get("permissions") or None,
            )
            if grant.pk is None:
                formset.new_objects.append(saved)
            else:
                formset.changed_objects.append((saved, inline.changed_data))

    def save_model(self, request: Any, obj: DataProduct, form: Any, change: bool) -> None:

        actor = Actor.for_user(request.user)
        if change and (obj.status == ProductStatus.PUBLISHED or not self._may_change(request)):
            return  # the definition is read-only here (frozen, or no define permission); grants: the inline
        if change:
            saved = product_definitions.product_update(
                actor=actor, product_id=obj.product_id, changes=form.definition()
            )
        else:
            saved = product_definitions.product_create(
                actor=actor, product_id=form.cleaned_data["product_id"], definition=form.definition()
            )
        # The admin continues with this instance (inlines, the redirect): make it the saved row.
        obj.__dict__.update({k: v for k, v in saved.__dict__.items() if not k.startswith("_")})
        obj._state.adding = False

    @admin.action(description="Publish selected draft products (freezes them)", permissions=["publish"])
    def publish_products(self, request: Any, queryset: Any) -> None:

        actor = Actor.for_user(request.user)
        published = []
        for product in queryset.filter(status=ProductStatus.DRAFT):
            try:
                product_definitions.product_publish(actor=actor, product_id=product.product_id)
            except DomainError as exc:
                self.message_user(request, f"{product.product_id}: {exc.message}", level=messages.ERROR)
            else:
                published.append(product.product_id)
        if published:
            self.message_user(request, f"Published {', '.join(published)}.", level=messages.SUCCESS)


@admin.register(ProductGrant)
class ProductGrantAdmin(GuardedAdmin, admin.ModelAdmin):
    """Grants are added and removed through ``product_grant`` / ``product_revoke``."""

    change_perm = "products.grant_products"
    read_area = "products"
    list_display = ["product", "agent", "permissions"]

    def save_model(self, request: Any, obj: ProductGrant, form: Any, change: bool) -> None:

        grant = product_definitions.product_grant(
            actor=Actor.for_user(request.user),
            product_id=obj.product_id,
            agent_id=obj.agent_id,
            permissions=obj.permissions or None,
        )
        obj.pk = grant.pk

    def delete_model(self, request: Any, obj: ProductGrant) -> None:

        product_definitions.product_revoke(
            actor=Actor.for_user(request.user), product_id=obj.product_id, agent_id=obj.agent_id
        )

    def delete_queryset(self, request: Any, queryset: Any) -> None:
        for grant in queryset:
            self.delete_model(request, grant)
