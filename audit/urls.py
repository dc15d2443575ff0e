from django.urls import path

from audit import api

urlpatterns = [
    path("admin/audit-log", api.AuditLogView.as_view(), name="admin-audit-log"),
]
