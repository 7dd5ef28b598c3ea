from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from .models import VendingKey


@admin.register(VendingKey)
class VendingKeyAdmin(admin.ModelAdmin):
    """Read-only: keys are loaded with `manage.py load_vending_key`; only the KCV is shown."""

    list_display = ("sgc", "krn", "base_date", "dkga", "key_bits", "check_value", "loaded_at", "loaded_by")
    list_filter = ("dkga", "base_date")
    search_fields = ("sgc",)
    fields = ("sgc", "krn", "base_date", "dkga", "key_bits", "check_value", "loaded_at", "loaded_by")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: VendingKey | None = None) -> bool:
        return False
