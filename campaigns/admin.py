"""Read-only admin for campaigns, batches and enrollments (auditors, care, managers).

Every change goes through campaigns.services (counters, events and the audit log move together),
from the dashboard or the care desk: nothing here adds, edits or deletes. Lists of millions of
rows page on the primary key with an estimated count.
"""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from meters.admin import EstimatedCountPaginator, ReadOnlyAdminMixin
from meters.models import Meter
from meters.phones import kenyan_phone_or_none

from .models import Batch, Campaign, Enrollment, EnrollmentEvent


def _meter_ids(term: str) -> QuerySet | None:
    """Meters a care agent's search term names: a meter number or a phone (any Kenyan format)."""
    term = term.strip()
    if not term:
        return None
    phone = kenyan_phone_or_none(term)
    if phone:
        return Meter.objects.filter(phone=phone).values("pk")
    return Meter.objects.filter(meter_number=term).values("pk")


@admin.register(Campaign)
class CampaignAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "name",
        "status",
        "from_krn",
        "to_krn",
        "deadline",
        "daily_capacity",
        "enrolled",
        "notified",
        "codes_issued",
        "confirmed",
        "done",
        "outside_batch",
        "failed",
        "non_compliant",
    )
    list_filter = ("status",)
    search_fields = ("name",)


@admin.register(Batch)
class BatchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "campaign",
        "number",
        "status",
        "scheduled_at",
        "enrolled",
        "notified",
        "codes_issued",
        "confirmed",
        "capacity_overridden",
    )
    list_filter = ("status", "campaign")
    list_select_related = ("campaign",)
    search_fields = ("=number",)


class EnrollmentEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = EnrollmentEvent
    fields = ("at", "from_state", "to_state", "actor_label", "reason")
    readonly_fields = fields
    ordering = ("at", "id")
    extra = 0
    can_delete = False


@admin.register(Enrollment)
class EnrollmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "meter", "campaign", "batch", "origin", "state", "enrolled_at", "state_changed_at")
    list_filter = ("state", "origin", "campaign")
    list_select_related = ("meter", "campaign", "batch", "batch__campaign")
    search_fields = ("=meter__meter_number",)  # the real search is _meter_ids (indexed columns)
    search_help_text = "Meter number or phone (any Kenyan format)"
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    ordering = ("-id",)
    inlines = [EnrollmentEventInline]
    raw_id_fields = ("meter", "batch")

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        meters = _meter_ids(search_term)
        return (queryset if meters is None else queryset.filter(meter_id__in=meters)), False


@admin.register(EnrollmentEvent)
class EnrollmentEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "enrollment", "from_state", "to_state", "at", "actor_label", "reason")
    list_filter = ("to_state",)
    list_select_related = ("enrollment",)
    search_fields = ("=enrollment__meter__meter_number",)
    search_help_text = "Meter number or phone (any Kenyan format)"
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    ordering = ("-id",)
    raw_id_fields = ("enrollment",)

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        meters = _meter_ids(search_term)
        if meters is None:
            return queryset, False
        return queryset.filter(enrollment__meter_id__in=meters), False
