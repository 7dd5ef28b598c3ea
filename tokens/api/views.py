"""The vending partner API: thin views over tokens.services."""

from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest, HttpResponse
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework.decorators import api_view, authentication_classes, permission_classes
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from kplc_sts import clock
from kplc_sts.metrics import vend_observe
from meters.models import Meter
from partners.authentication import ApiKeyAuthentication, IsPartner, PartnerRateThrottle
from tokens import errors, services

from .errorcodes import error_extension, error_table
from .exceptions import api_error_count, api_exception_handler, error_body
from .serializers import (
    ErrorSerializer,
    MeterResponseSerializer,
    ReprintResponseSerializer,
    ReversalRequestSerializer,
    ReversalResponseSerializer,
    VendRequestSerializer,
    VendResponseSerializer,
    clean_meter_number,
)

JSON = "application/json"
ERRORS = {status: OpenApiResponse(ErrorSerializer) for status in (400, 401, 403, 404, 409, 415, 422, 429, 503)}


def _json(body: str, status: int, **headers: str) -> HttpResponse:
    response = HttpResponse(body, status=status, content_type=JSON)
    for name, value in headers.items():
        response[name] = value
    return response


class PartnerAPIView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsPartner]
    throttle_classes = [PartnerRateThrottle]

    def get_exception_handler(self) -> Any:
        return api_exception_handler

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        # Vend, replay and reprint bodies carry token digits: no browser, proxy or CDN may keep them.
        response["Cache-Control"] = "no-store"
        return response

    @property
    def partner(self) -> Any:
        principal: Any = self.request.user  # a PartnerPrincipal: IsPartner let the request in
        return principal.partner


class MeterView(PartnerAPIView):
    @extend_schema(
        summary="Confirm the customer before a sale",
        description="Masked name, region, whether a vend is possible now, and whether it will carry the "
        "update codes. A meter number failing the Luhn check is refused before any lookup." + error_table("meter"),
        responses={200: MeterResponseSerializer, **ERRORS},
        extensions={"x-error-codes": error_extension("meter")},
    )
    def get(self, request: Request, meter_number: str) -> Response:
        try:
            number = clean_meter_number(meter_number)
        except ValidationError:
            raise errors.InvalidMeterNumber(
                "Not a valid meter number: 11 or 13 digits whose last digit is the Luhn check digit."
            ) from None
        meter = Meter.objects.filter(meter_number=number).first()
        if meter is None:
            raise errors.UnknownMeter(f"No meter {number} in the register.")
        body = services.meter_summary(meter=meter)
        body["min_amount"] = str(self.partner.min_vend_amount)
        body["max_amount"] = str(self.partner.max_vend_amount)
        return Response(body)


class VendCreateView(PartnerAPIView):
    @extend_schema(
        summary="Sell a token",
        description="Idempotent on `reference`: the same request again returns the first response byte for byte "
        "(header `Idempotent-Replayed: true`); the same reference with a different request is 409 "
        "DUPLICATE_REFERENCE. For a meter due its update, `tokens` holds Update code 1, Update code 2 "
        "and the credit Token (3), to be typed in that order." + error_table("vend"),
        request=VendRequestSerializer,
        responses={201: VendResponseSerializer, **ERRORS},
        extensions={"x-error-codes": error_extension("vend")},
        examples=[
            OpenApiExample(
                "Vend",
                request_only=True,
                value={
                    "meter_number": "54000000015",  # Luhn-valid: the example must be accepted
                    "amount": "100.00",
                    "reference": "BANK-20261101-000123",
                    "customer_phone": "+254712345678",
                },
            )
        ],
    )
    def post(self, request: Request) -> HttpResponse:
        started = time.monotonic()
        try:
            response = self._vend(request)
        except Exception as exc:
            vend_observe(
                outcome=exc.code if isinstance(exc, errors.VendError) else _outcome(exc),
                started=started,
            )
            raise
        vend_observe(outcome="replayed" if response.get("Idempotent-Replayed") else "issued", started=started)
        return response

    def _vend(self, request: Request) -> HttpResponse:
        serializer = VendRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        outcome = services.vend_create(
            partner=self.partner,
            meter_number=data["meter_number"],
            amount=data["amount"],
            reference=data["reference"],
            customer_phone=data.get("customer_phone", ""),
        )
        headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
        return _json(outcome.body, outcome.status, **headers)


class VendDetailView(PartnerAPIView):
    @extend_schema(
        summary="The vend's response again (after a timeout)",
        description="Returns exactly the body the vend first returned." + error_table("vend_detail"),
        responses={200: VendResponseSerializer, **ERRORS},
        extensions={"x-error-codes": error_extension("vend_detail")},
    )
    def get(self, request: Request, reference: str) -> HttpResponse:
        vend = services.vend_get(partner=self.partner, reference=reference)
        return _json(services.vend_response_body(vend), 200)


class VendReprintView(PartnerAPIView):
    @extend_schema(
        summary="Reprint a receipt",
        description="The same tokens, marked as a reprint. Every reprint is recorded in the audit log."
        + error_table("reprint"),
        responses={200: ReprintResponseSerializer, **ERRORS},
        extensions={"x-error-codes": error_extension("reprint")},
    )
    def get(self, request: Request, reference: str) -> Response:
        return Response(services.vend_reprint(partner=self.partner, reference=reference))


class VendReversalView(PartnerAPIView):
    @extend_schema(
        summary="Request a reversal",
        description="Recorded with its reason and passed to customer care. It never un-issues a token: an STS "
        "token cannot be revoked, so `tokens_revoked` is always false. Repeating the request returns the first one."
        + error_table("reversal"),
        request=ReversalRequestSerializer,
        responses={201: ReversalResponseSerializer, 200: ReversalResponseSerializer, **ERRORS},
        extensions={"x-error-codes": error_extension("reversal")},
        examples=[OpenApiExample("Reversal", request_only=True, value={"reason": "Customer paid twice at the till"})],
    )
    def post(self, request: Request, reference: str) -> Response:
        serializer = ReversalRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reversal, created = services.reversal_request_create(
            partner=self.partner, reference=reference, reason=serializer.validated_data["reason"]
        )
        body = {
            "reference": reference,
            "status": reversal.status,
            "reason": reversal.reason,
            "requested_at": clock.api_timestamp(reversal.created_at),
            "tokens_revoked": False,
            "message": "Reversal request recorded for customer care. The token was not revoked: an STS token "
            "cannot be revoked once issued and stays valid in the meter.",
        }
        return Response(body, status=201 if created else 200)


def _outcome(exc: Exception) -> str:
    from rest_framework import exceptions as drf

    if isinstance(exc, drf.ValidationError):
        return "INVALID_REQUEST"
    if isinstance(exc, drf.APIException):
        return str(exc.get_codes()).upper()[:40] if isinstance(exc.get_codes(), str) else "REFUSED"
    return "ERROR"


@extend_schema(exclude=True)
@api_view(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"])
@authentication_classes([])
@permission_classes([])
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> Response:
    """Unknown paths under /api/v1/ get the API's JSON error, not the site's HTML 404 page."""
    api_error_count("NOT_FOUND")
    return Response(error_body("NOT_FOUND", "No such API endpoint."), status=404)
