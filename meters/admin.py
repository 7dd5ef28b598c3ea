from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property

from .models import Meter
from .phones import InvalidPhoneNumber, normalize_kenyan_phone


class EstimatedCountPaginator(Paginator):
    """Unfiltered lists of millions of meters use PostgreSQL's row estimate, not COUNT(*)."""

    @cached_property
    def count(self) -> int:
        query = self.object_list.query
        if connection.vendor == "postgresql" and not query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [self.object_list.model._meta.db_table],
                )
                estimate = cursor.fetchone()[0]
            if estimate > 100_000:
                return estimate
        return super().count


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    list_display = (
        "meter_number",
        "customer_name",
        "phone",
        "account_number",
        "region",
        "sgc",
        "krn",
        "status",
        "key_state",
    )
    list_filter = ("status", "key_state", "region", "sgc", "krn")
    # Exact matches ride the unique and secondary indexes; a LIKE over millions of rows would not.
    search_fields = ("=meter_number", "=phone", "=account_number")
    search_help_text = "Meter number, phone (any Kenyan format) or account number"
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    readonly_fields = ("created_at", "updated_at")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Meter], search_term: str
    ) -> tuple[QuerySet[Meter], Any]:
        term = search_term.strip()
        try:
            # Care agents type what the customer reads out: "0712 345 678" finds "+254712345678".
            term = normalize_kenyan_phone(term)
        except InvalidPhoneNumber:
            pass
        return super().get_search_results(request, queryset, term)
