"""Admin helpers for millions of rows, shared by the apps' admins. The Meter admin itself is the
care desk's (`care.admin.MeterAdmin`): care agents are who open a meter."""

from __future__ import annotations

from typing import Any

from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest
from django.utils.functional import cached_property


class EstimatedCountPaginator(Paginator):
    """Unfiltered lists of millions of meters use PostgreSQL's row estimate, not COUNT(*)."""

    @cached_property
    def count(self) -> int:
        queryset: Any = self.object_list
        if connection.vendor == "postgresql" and not queryset.query.where:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                    [queryset.model._meta.db_table],
                )
                estimate = cursor.fetchone()[0]
            if estimate > 100_000:
                return estimate
        return super().count


class ReadOnlyAdminMixin:
    """For records written only by services (outbox, campaign trail, vends): view, never edit."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
