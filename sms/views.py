"""Africa's Talking delivery reports. AT signs nothing: the secret in the URL is the guard."""

from __future__ import annotations

import hmac
import json
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .services import delivery_report_receive

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def delivery_report(request: HttpRequest, secret: str) -> HttpResponse:
    expected = settings.SMS_DELIVERY_REPORT_SECRET or ""
    if not expected or not hmac.compare_digest(secret.encode(), expected.encode()):
        return HttpResponse(status=404)  # say nothing about whether the path exists
    if (request.content_type or "").startswith("application/json"):
        try:
            data = json.loads(request.body or b"{}")
        except ValueError:
            return JsonResponse({"error": "invalid JSON"}, status=400)
        if not isinstance(data, dict):
            return JsonResponse({"error": "expected an object"}, status=400)
    else:
        data = request.POST
    provider_id = str(data.get("id") or "").strip()
    status = str(data.get("status") or "").strip()
    if not provider_id or not status:
        return JsonResponse({"error": "id and status are required"}, status=400)
    retry = str(data.get("retryCount") or "").strip()
    delivery_report_receive(
        provider_message_id=provider_id,
        status=status,
        failure_reason=str(data.get("failureReason") or ""),
        phone_number=str(data.get("phoneNumber") or ""),
        network_code=str(data.get("networkCode") or ""),
        retry_count=int(retry) if retry.isdigit() else None,
    )
    return JsonResponse({"status": "ok"})
