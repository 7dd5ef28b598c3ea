from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from meters.admin import EstimatedCountPaginator, ReadOnlyAdminMixin

from .models import ReversalRequest, Vend, VendingKey
from .services import reversal_request_resolve


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


@admin.register(Vend)
class VendAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every sale, for care and auditors. The stored response (it holds token digits) is never shown."""

    list_display = ("created_at", "partner", "reference", "meter_column", "amount", "units", "with_codes")
    list_filter = ("partner",)
    search_fields = ("=reference", "=meter__meter_number")
    search_help_text = "The partner's reference or the meter number"
    list_select_related = ("partner", "meter")
    fields = (
        "public_id",
        "partner",
        "reference",
        "meter",
        "amount",
        "units",
        "customer_phone",
        "key_change_set",
        "created_at",
    )
    readonly_fields = fields
    paginator = EstimatedCountPaginator
    show_full_result_count = False

    @admin.display(description="meter", ordering="meter__meter_number")
    def meter_column(self, obj: Vend) -> str:
        return obj.meter.meter_number

    @admin.display(description="codes", boolean=True)
    def with_codes(self, obj: Vend) -> bool:
        return obj.key_change_set_id is not None


@admin.register(ReversalRequest)
class ReversalRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The reversal queue. Deciding never un-issues a token: an STS token cannot be revoked."""

    list_display = ("created_at", "vend", "reason", "status", "requested_by", "resolved_by", "resolved_at")
    list_filter = ("status",)
    search_fields = ("=vend__reference", "=vend__meter__meter_number")
    list_select_related = ("vend__meter", "vend__partner")
    readonly_fields = (
        "vend",
        "reason",
        "status",
        "requested_by",
        "created_at",
        "resolved_at",
        "resolved_by",
        "resolution_note",
    )
    actions = ("approve", "reject")

    def has_resolve_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("tokens.change_reversalrequest")

    def _resolve(self, request: HttpRequest, queryset: QuerySet[ReversalRequest], *, approve: bool) -> None:
        verb = "approved" if approve else "rejected"
        resolved = sum(
            reversal_request_resolve(
                reversal=reversal, approve=approve, note=f"{verb} in the admin", actor=request.user
            )
            for reversal in queryset.filter(status=ReversalRequest.Status.OPEN)
        )
        self.message_user(request, f"{resolved} reversal request(s) {verb}; the tokens stay issued.", messages.SUCCESS)

    @admin.action(description="Approve (refund outside the token system)", permissions=["resolve"])
    def approve(self, request: HttpRequest, queryset: QuerySet[ReversalRequest]) -> None:
        self._resolve(request, queryset, approve=True)

    @admin.action(description="Reject", permissions=["resolve"])
    def reject(self, request: HttpRequest, queryset: QuerySet[ReversalRequest]) -> None:
        self._resolve(request, queryset, approve=False)
