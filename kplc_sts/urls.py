from csp.decorators import csp_update
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from care.views import ussd_callback

from . import metrics, views

urlpatterns = [
    # A newcomer opening the server's address lands on the dashboard (the login page first), and
    # browsers asking for /favicon.ico on every page get the icon instead of a 404.
    path("", RedirectView.as_view(pattern_name="dashboard:home", permanent=False), name="home"),
    path("favicon.ico", RedirectView.as_view(url=f"{settings.STATIC_URL}favicon.svg", permanent=True)),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/2fa/", include("accounts.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("api/v1/", include("tokens.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as a file, so CSP keeps script-src 'self'
    # here too; Swagger UI sets a few inline styles, which only this page allows.
    path(
        "api/docs/",
        csp_update({"style-src": ["'unsafe-inline'"]})(SpectacularSwaggerSplitView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("sms/", include("sms.urls")),
    # Africa's Talking is configured with /ussd/<USSD_CALLBACK_SECRET>/; the bare path is for a
    # deployment without a secret (the demo) and refuses once one is set.
    path("ussd/<str:secret>/", ussd_callback, name="ussd-secret"),
    path("ussd/", ussd_callback, name="ussd"),
    path("dashboard/", include("dashboard.urls")),
]
