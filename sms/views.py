"""Africa's Talking delivery reports. AT signs nothing: the secret in the URL is the guard."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from kplc_sts.callbacks import callback_allowed

from .payloads import DeliveryReportPayload
from .services import delivery_report_receive

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def delivery_report(request: HttpRequest, secret: str) -> HttpResponse:
    expected = settings.SMS_DELIVERY_REPORT_SECRET or ""
    if not expected or not callback_allowed(
        request, offered=secret, secret=expected, networks=settings.SMS_DLR_ALLOWED_NETWORKS, name="delivery report"
    ):
        return HttpResponse(status=404)  # say nothing about whether the path exists
    if (request.content_type or "").startswith("application/json"):
        try:
            data = json.loads(request.body or b"{}")
        except (ValueError, RecursionError):  # RecursionError: JSON nested deep enough to exhaust the stack
            return JsonResponse({"error": "invalid JSON"}, status=400)
        if not isinstance(data, dict):
            return JsonResponse({"error": "expected an object"}, status=400)
    else:
        data = request.POST
    report = DeliveryReportPayload.from_payload(data)
    if report.errors:
        return JsonResponse({"error": "id and status are required", "fields": report.errors}, status=400)
    delivery_report_receive(**report.values)
    return JsonResponse({"status": "ok"})
