"""REST door for data products (docs/contract/errors.md) and their admin API (docs/contract/admin.md).

Each view: shape-check → Actor → one service (or selector) → render the shared result shape.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from products import selectors
from products.serializers import (
    data_source_out,
    grant_out,
    product_admin_out,
    product_out,
    products_list_out,
)
from products.services import definitions as product_definitions
from products.services import reads as product_reads
from products.services import sources as product_sources
from products.services import writes as product_writes
from tracemem_site.rest import ERROR_RESPONSES as _ERRORS
from tracemem_site.rest import HumanAPIView, actor_from_request, body


class ProductsListView(APIView):
    @extend_schema(
        operation_id="products_list",
        parameters=[OpenApiParameter("purpose", str, required=False)],
        responses={200: dict, **_ERRORS},
    )
    def get(self, request: Request) -> Response:
        items = selectors.products_for_agent(
            actor_from_request(request), purpose=request.query_params.get("purpose") or None
        )
        return Response(products_list_out(items))


class ProductGetView(APIView):
    @extend_schema(operation_id="product_get", responses={200: dict, **_ERRORS})
    def get(self, request: Request, product: str) -> Response:
        found, grant = selectors.product_for_agent(actor_from_request(request), product)
        return Response(product_out(found, grant))


class DecisionReadView(APIView):
    class DecisionReadInput(serializers.Serializer):
        product = serializers.CharField(help_text="product_id from products_list")
        purpose = serializers.CharField(help_text="one of the product's allowed_purposes")
        query = serializers.DictField(required=False, help_text="exposed field → value, equality, ANDed")
        allow_multiple = serializers.BooleanField(required=False, default=False)
        result_mode = serializers.ChoiceField(
            choices=["single", "multiple"], required=False, help_text="alias"
        )

    @extend_schema(operation_id="decision_read", request=DecisionReadInput, responses={200: dict, **_ERRORS})
    def post(self, request: Request, decision_id: str) -> Response:
        data = body(request, self.DecisionReadInput)
        result = product_reads.decision_read(
            actor=actor_from_request(request),
            decision_id=decision_id,
            product=data.get("product"),
            purpose=data.get("purpose"),
            query=data.get("query"),
            allow_multiple=data.get("allow_multiple"),
            result_mode=data.get("result_mode"),
        )
        return Response(result)


class DecisionWriteView(APIView):
    class DecisionWriteInput(serializers.Serializer):
        product = serializers.CharField()
        purpose = serializers.CharField()
        operation = serializers.ChoiceField(choices=["insert", "update", "delete"], required=False)
        keys = serializers.JSONField(required=False, help_text="object of key → value, or array of key names")
        mutation = serializers.DictField(help_text="{records:[..]} | {data:{..}} | {fields:{..}}")
        idempotency_key = serializers.CharField(required=False)
        return_created = serializers.BooleanField(required=False, default=False)

    @extend_schema(
        operation_id="decision_write", request=DecisionWriteInput, responses={200: dict, **_ERRORS}
    )
    def post(self, request: Request, decision_id: str) -> Response:
        data = body(request, self.DecisionWriteInput)
        result = product_writes.decision_write(
            actor=actor_from_request(request),
            decision_id=decision_id,
            product=data.get("product"),
            purpose=data.get("purpose"),
            operation=data.get("operation"),
            keys=data.get("keys"),
            mutation=data.get("mutation"),
            idempotency_key=data.get("idempotency_key"),
            return_created=data.get("return_created", False),
        )
        return Response(result)


# --- admin API (docs/contract/admin.md): session or personal token; permissions in docs/security.md--------------------------------


class AdminDataSourcesView(HumanAPIView):
    class AdminDataSourceInput(serializers.Serializer):
        source_id = serializers.CharField()
        name = serializers.CharField(required=False)
        dsn = serializers.CharField(
            help_text="PostgreSQL DSN; write-only, stored encrypted, never shown again"
        )

    @extend_schema(operation_id="admin_data_sources_list", responses={200: dict, **_ERRORS})
    def get(self, request: Request) -> Response:
        sources = selectors.data_sources_for_admin(actor_from_request(request))
        return Response({"data_sources": [data_source_out(s) for s in sources]})

    @extend_schema(
        operation_id="admin_data_sources_create",
        request=AdminDataSourceInput,
        responses={201: dict, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        data = body(request)
        source = product_sources.data_source_create(
            actor=actor_from_request(request),
            source_id=data.get("source_id"),
            name=data.get("name"),
            dsn=data.get("dsn"),
        )
        return Response(data_source_out(source), status=201)


class AdminProductsView(HumanAPIView):
    class AdminProductInput(serializers.Serializer):
        product_id = serializers.CharField(help_text="slug with version suffix, e.g. pg_customers_v1")
        name = serializers.CharField(required=False)
        description = serializers.CharField(required=False)
        operation = serializers.ChoiceField(choices=["read", "insert", "update", "delete"])
        source = serializers.CharField(required=False, help_text="data source id; default builtin")
        table = serializers.CharField()
        fields = serializers.ListField(child=serializers.DictField())
        key_fields = serializers.ListField(child=serializers.CharField(), required=False)
        allowed_purposes = serializers.ListField(child=serializers.CharField())
        max_rows = serializers.IntegerField(required=False)
        result_modes = serializers.ListField(child=serializers.CharField(), required=False)
        policies = serializers.ListField(child=serializers.CharField(), required=False)
        requires_approval = serializers.BooleanField(required=False)
        example_queries = serializers.ListField(child=serializers.DictField(), required=False)

    @extend_schema(operation_id="admin_products_list", responses={200: dict, **_ERRORS})
    def get(self, request: Request) -> Response:
        products = selectors.products_for_admin(actor_from_request(request))
        return Response({"products": [product_admin_out(p) for p in products]})

    @extend_schema(
        operation_id="admin_products_create", request=AdminProductInput, responses={201: dict, **_ERRORS}
    )
    def post(self, request: Request) -> Response:
        data = dict(body(request))
        product_id = data.pop("product_id", None)
        product = product_definitions.product_create(
            actor=actor_from_request(request), product_id=product_id, definition=data
        )
        return Response(product_admin_out(product), status=201)


class AdminProductView(HumanAPIView):
    @extend_schema(operation_id="admin_product_get", responses={200: dict, **_ERRORS})
    def get(self, request: Request, product_id: str) -> Response:
        return Response(
            product_admin_out(selectors.product_for_admin(actor_from_request(request), product_id))
        )

    @extend_schema(operation_id="admin_product_update", request=dict, responses={200: dict, **_ERRORS})
    def patch(self, request: Request, product_id: str) -> Response:
        product = product_definitions.product_update(
            actor=actor_from_request(request), product_id=product_id, changes=dict(body(request))
        )
        return Response(product_admin_out(product))


class AdminProductPublishView(HumanAPIView):
    @extend_schema(operation_id="admin_product_publish", request=None, responses={200: dict, **_ERRORS})
    def post(self, request: Request, product_id: str) -> Response:
        product = product_definitions.product_publish(
            actor=actor_from_request(request), product_id=product_id
        )
        return Response(product_admin_out(product))


class AdminProductGrantView(HumanAPIView):
    class AdminProductGrantInput(serializers.Serializer):
        agent_id = serializers.CharField()
        permissions = serializers.ListField(child=serializers.CharField(), required=False)

    @extend_schema(
        operation_id="admin_product_grant", request=AdminProductGrantInput, responses={201: dict, **_ERRORS}
    )
    def post(self, request: Request, product_id: str) -> Response:
        data = body(request)
        grant = product_definitions.product_grant(
            actor=actor_from_request(request),
            product_id=product_id,
            agent_id=data.get("agent_id"),
            permissions=data.get("permissions"),
        )
        return Response(grant_out(grant), status=201)
