"""Locked-out sign-ins in the admin: supervisors see them and unlock them, and each unlock is audited."""

from __future__ import annotations

from axes.admin import AccessAttemptAdmin
from axes.models import AccessAttempt
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from .lockout import UNLOCK_PERMISSION, attempts_unlock


class LockoutAdmin(AccessAttemptAdmin):
    actions = ["unlock"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AccessAttempt | None = None) -> bool:
        return False

    def has_unlock_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(UNLOCK_PERMISSION)

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # unlocking goes through the audited action only
        return actions

    def has_delete_permission(self, request: HttpRequest, obj: AccessAttempt | None = None) -> bool:
        return False

    @admin.action(description="Unlock (audited)", permissions=["unlock"])
    def unlock(self, request: HttpRequest, queryset: QuerySet[AccessAttempt]) -> None:
        count = attempts_unlock(attempts=queryset, actor=request.user)
        self.message_user(request, f"{count} sign-in lock(s) lifted.", messages.SUCCESS)


if admin.site.is_registered(AccessAttempt):
    admin.site.unregister(AccessAttempt)
admin.site.register(AccessAttempt, LockoutAdmin)
