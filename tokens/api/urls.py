from __future__ import annotations

from django.urls import path, re_path

from . import views

app_name = "vending_api"

# Trailing slashes optional: a partner's POST to /vends must not be redirected (and lose its body).
urlpatterns = [
    re_path(r"^meters/(?P<meter_number>[^/]+)/?$", views.MeterView.as_view(), name="meter"),
    re_path(r"^vends/?$", views.VendCreateView.as_view(), name="vend-create"),
    re_path(r"^vends/(?P<reference>[^/]+)/?$", views.VendDetailView.as_view(), name="vend-detail"),
    re_path(r"^vends/(?P<reference>[^/]+)/reprint/?$", views.VendReprintView.as_view(), name="vend-reprint"),
    re_path(r"^vends/(?P<reference>[^/]+)/reversal/?$", views.VendReversalView.as_view(), name="vend-reversal"),
    path("", views.not_found),
    re_path(r"^.*$", views.not_found),
]
