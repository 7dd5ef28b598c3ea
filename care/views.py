"""The Africa's Talking USSD callback (POST /ussd/)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .ussd_backend import ussd_request_handle


@csrf_exempt  # Africa's Talking posts a plain form with no CSRF token
@require_POST
def ussd_callback(request: HttpRequest) -> HttpResponse:
    reply = ussd_request_handle(
        session_id=request.POST.get("sessionId", ""),
        phone_number=request.POST.get("phoneNumber", ""),
        text=request.POST.get("text", ""),
        service_code=request.POST.get("serviceCode", ""),
    )
    return HttpResponse(reply, content_type="text/plain; charset=utf-8")
