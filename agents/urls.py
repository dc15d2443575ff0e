from django.urls import path

from agents import api

urlpatterns = [
    path("capabilities", api.CapabilitiesView.as_view(), name="capabilities"),
]
