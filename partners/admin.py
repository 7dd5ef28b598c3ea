from __future__ import annotations

import ipaddress

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .models import Partner, PartnerApiKey, PartnerDailyTotal
from .services import partner_api_key_create, partner_api_key_revoke


class PartnerForm(forms.ModelForm):
    class Meta:
        model = Partner
        fields = ("name", "active", "min_vend_amount", "max_vend_amount", "daily_limit", "allowed_ips", "throttle_rate")

    def clean_allowed_ips(self) -> str:
        text = self.cleaned_data["allowed_ips"]
        for line in text.replace(",", "\n").splitlines():
            if line.strip():
                try:
                    ipaddress.ip_network(line.strip(), strict=False)
                except ValueError:
                    raise forms.ValidationError(f"{line.strip()!r} is not an IP address or CIDR network") from None
        return text


class PartnerApiKeyInline(admin.TabularInline):
    model = PartnerApiKey
    extra = 0
    fields = ("prefix", "name", "created_at", "created_by", "revoked_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Partner | None = None) -> bool:
        return False  # keys are created by the "Create an API key" action, which shows the key once


@admin.register(Partner)
class PartnerAdmin(admin.ModelAdmin):
    form = PartnerForm
    list_display = ("name", "active", "min_vend_amount", "max_vend_amount", "daily_limit", "throttle_rate")
    list_filter = ("active",)
    search_fields = ("name",)
    inlines = [PartnerApiKeyInline]
    actions = ["create_api_key"]

    @admin.action(description="Create an API key (shown once)")
    def create_api_key(self, request: HttpRequest, queryset: QuerySet[Partner]) -> None:
        for partner in queryset:
            api_key, raw_key = partner_api_key_create(partner=partner, name="admin", actor=request.user)
            # Shown once in this message; only the hash is stored, so it cannot be shown again.
            self.message_user(
                request,
                f"New API key for {partner.name} (copy it now, it will not be shown again): {raw_key}",
                messages.WARNING,
            )


@admin.register(PartnerApiKey)
class PartnerApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "partner", "name", "created_at", "created_by", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "partner__name")
    fields = ("partner", "prefix", "name", "created_at", "created_by", "revoked_at")
    readonly_fields = fields
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request: HttpRequest, queryset: QuerySet[PartnerApiKey]) -> None:
        count = sum(partner_api_key_revoke(api_key=key, actor=request.user) for key in queryset)
        self.message_user(request, f"Revoked {count} key(s).")


@admin.register(PartnerDailyTotal)
class PartnerDailyTotalAdmin(admin.ModelAdmin):
    list_display = ("partner", "day", "amount", "vend_count")
    list_filter = ("day",)
    readonly_fields = ("partner", "day", "amount", "vend_count")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
