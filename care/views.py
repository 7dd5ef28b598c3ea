"""The Africa's Talking USSD callback (POST /ussd/<USSD_CALLBACK_SECRET>/)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from kplc_sts.callbacks import callback_allowed

from .ussd_backend import ussd_request_handle


@csrf_exempt  # Africa's Talking posts a plain form with no CSRF token
@require_POST
def ussd_callback(request: HttpRequest, secret: str | None = None) -> HttpResponse:
    # The posted phoneNumber is believed only because the secret URL is known to AT alone.
    if not callback_allowed(
        request,
        offered=secret,
        secret=settings.USSD_CALLBACK_SECRET,
        networks=settings.USSD_ALLOWED_NETWORKS,
        name="USSD",
    ):
        return HttpResponse(status=404)
    reply = ussd_request_handle(
        session_id=request.POST.get("sessionId", ""),
        phone_number=request.POST.get("phoneNumber", ""),
        text=request.POST.get("text", ""),
        service_code=request.POST.get("serviceCode", ""),
    )
    response = HttpResponse(reply, content_type="text/plain; charset=utf-8")
    response["Cache-Control"] = "no-store"  # a screen may carry codes or token digits
    return response
