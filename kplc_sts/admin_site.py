"""The admin site: the default one, with its lists and the care desk's search read from the replica.

The admin's list pages (changelists), its index (the care desk's front door with the queue counts)
and the care search are what staff browse; a second or two of replica lag does not change what an
agent does there. The change form, the care actions and every POST stay on the primary: they
decide something (kplc_sts/replica.py says why this is opt-in).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

from kplc_sts.replica import lag_tolerant_view

# The names of the admin views whose GET requests tolerate lag.
LAG_TOLERANT_ADMIN_VIEWS = frozenset({"index", "changelist_view", "find_view"})


class StaffAdminSite(admin.AdminSite):
    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        wrapped = super().admin_view(view, cacheable)
        if getattr(view, "__name__", "") in LAG_TOLERANT_ADMIN_VIEWS:
            return lag_tolerant_view(wrapped)
        return wrapped


class StaffAdminConfig(AdminConfig):
    default_site = "kplc_sts.admin_site.StaffAdminSite"
