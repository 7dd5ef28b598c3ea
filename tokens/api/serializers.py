"""Request validation and the documented response shapes of the partner API."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django.core.validators import RegexValidator
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from meters.phones import InvalidPhoneNumber, normalize_kenyan_phone
from tokens.sts import InvalidMeterNumber, validate_meter_number

REFERENCE_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
# KES as a JSON string with at most two decimals. A sign is part of the format so that "-100" is
# judged by the same rule as "5": a well-formed amount below the partner's minimum (422
# AMOUNT_TOO_LOW), never a format error.
AMOUNT_PATTERN = r"^-?[0-9]{1,10}(\.[0-9]{1,2})?$"
AMOUNT_FORMAT = 'The amount must be KES as a decimal string with at most 2 decimals, e.g. "100.00".'


def clean_meter_number(value: Any) -> str:
    if not isinstance(value, str):
        raise serializers.ValidationError("The meter number must be a string of 11 or 13 digits.")
    try:
        return validate_meter_number(value)
    except InvalidMeterNumber:
        raise serializers.ValidationError(
            "Not a valid meter number: 11 or 13 digits whose last digit is the Luhn check digit."
        ) from None


@extend_schema_field(OpenApiTypes.STR)
class MeterNumberField(serializers.Field):
    def to_internal_value(self, data: Any) -> str:
        return clean_meter_number(data)

    def to_representation(self, value: str) -> str:
        return value


@extend_schema_field({"type": "string", "pattern": AMOUNT_PATTERN, "example": "100.00"})
class AmountField(serializers.Field):
    """The one amount rule: a JSON string of KES with at most 2 decimals (a JSON number is refused,
    since a float cannot carry cents exactly); its range is the partner's limits, checked by the
    vend service (422 AMOUNT_TOO_LOW / AMOUNT_TOO_HIGH)."""

    def to_internal_value(self, data: Any) -> Decimal:
        if not isinstance(data, str):
            raise serializers.ValidationError(f"{AMOUNT_FORMAT} A JSON number is not accepted.")
        if not re.fullmatch(AMOUNT_PATTERN, data):
            raise serializers.ValidationError(AMOUNT_FORMAT)
        return Decimal(data)

    def to_representation(self, value: Decimal) -> str:
        return str(value)


class VendRequestSerializer(serializers.Serializer):
    meter_number = MeterNumberField(help_text="11 or 13 digits, Luhn-valid")
    amount = AmountField(
        help_text='KES as a JSON string with at most 2 decimals, e.g. "100.00" (a JSON number is refused). '
        "Below or above your limits: 422 AMOUNT_TOO_LOW / AMOUNT_TOO_HIGH"
    )
    reference = serializers.RegexField(
        REFERENCE_PATTERN,
        max_length=64,
        help_text="Your unique reference (1-64 of A-Z a-z 0-9 . _ : -); retry with it to get the same vend",
        error_messages={"invalid": "The reference must be 1-64 characters of A-Z a-z 0-9 . _ : -"},
    )
    customer_phone = serializers.CharField(
        required=False, allow_blank=True, max_length=20, help_text="Kenyan mobile for the SMS, e.g. +254712345678"
    )

    def validate_customer_phone(self, value: str) -> str:
        if not value:
            return ""
        try:
            return normalize_kenyan_phone(value)
        except InvalidPhoneNumber:
            raise serializers.ValidationError("Not a Kenyan mobile number (+2547..., 07..., 01...).") from None


class ReversalRequestSerializer(serializers.Serializer):
    # The pattern puts "not blank" into the schema: a reason of spaces is trimmed to "" and refused,
    # so the schema must not call it valid either.
    reason = serializers.CharField(
        max_length=500,
        help_text="Why the sale should be reversed",
        validators=[RegexValidator(r"\S", message="Give a reason.")],
    )


# --- Response shapes (documentation only: responses are built by tokens.services) -------------------


class TokenSerializer(serializers.Serializer):
    position = serializers.IntegerField(help_text="Type the tokens in this order: 1, 2, 3")
    kind = serializers.ChoiceField(choices=["reset_code", "update_code", "credit"])
    # The API's field name (partners parse it); it shadows Field.label, which a Serializer never reads.
    label = serializers.CharField(help_text='"Update code 1", "Update code 2" or "Token"')  # type: ignore[assignment]
    digits = serializers.CharField(help_text="20 digits")
    display = serializers.CharField(help_text="Grouped 4-4-4-4-4, e.g. 1234-5678-9012-3456-7890")


class LevySerializer(serializers.Serializer):
    name = serializers.CharField()
    amount = serializers.CharField()


class TariffSerializer(serializers.Serializer):
    currency = serializers.CharField()
    amount = serializers.CharField()
    rate_per_kwh = serializers.CharField(help_text="KES per kWh, levies and VAT included")
    energy_charge = serializers.CharField()
    levies = LevySerializer(many=True)
    vat = serializers.CharField()


class VendResponseSerializer(serializers.Serializer):
    vend_id = serializers.UUIDField()
    reference = serializers.CharField()
    meter_number = serializers.CharField()
    amount = serializers.CharField()
    currency = serializers.CharField()
    units = serializers.CharField(help_text="kWh the token credits (never less than paid for)")
    unit = serializers.CharField()
    tariff = TariffSerializer()
    key_change = serializers.BooleanField(help_text="True when update codes 1 and 2 come first")
    tokens = TokenSerializer(many=True)
    instruction = serializers.CharField()
    sms_queued = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class ReprintResponseSerializer(VendResponseSerializer):
    reprint = serializers.BooleanField()
    reprinted_at = serializers.DateTimeField()


class MeterResponseSerializer(serializers.Serializer):
    meter_number = serializers.CharField()
    customer_name = serializers.CharField(help_text="Masked, e.g. J*** W******")
    region = serializers.CharField()
    can_vend = serializers.BooleanField()
    reason = serializers.CharField(allow_null=True, help_text="Error code that would refuse a vend, if any")
    pending_update = serializers.BooleanField(help_text="A vend now carries update codes 1 and 2")
    key_state = serializers.CharField()
    min_amount = serializers.CharField()
    max_amount = serializers.CharField()


class ReversalResponseSerializer(serializers.Serializer):
    reference = serializers.CharField()
    status = serializers.CharField()
    reason = serializers.CharField()
    requested_at = serializers.DateTimeField()
    tokens_revoked = serializers.BooleanField(help_text="Always false: an STS token cannot be revoked")
    message = serializers.CharField()


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine code, e.g. UNKNOWN_METER")
    message = serializers.CharField()
    field = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()
