"""Staff roles as Django groups, kept in step with this table after every `migrate`.

A permission is "app_label.codename". "view:*" grants every view permission of the project's
own apps (read-only access everywhere). Permissions of apps not installed yet are skipped.
"""

from __future__ import annotations

from typing import Any

CAMPAIGN_MANAGER = "Campaign manager"
CARE_AGENT = "Care agent"
CARE_SUPERVISOR = "Care supervisor"
AUDITOR = "Auditor"

PROJECT_APPS = ("audit", "meters", "tokens", "campaigns", "sms", "partners", "care")

ROLES: dict[str, list[str]] = {
    CAMPAIGN_MANAGER: [
        "view:*",
        "campaigns.add_campaign",
        "campaigns.change_campaign",
        "campaigns.add_batch",
        "campaigns.change_batch",
        "campaigns.schedule_batch",
        # The endgame: codes sent without a purchase (audited) and the reminder rule.
        "campaigns.push_codes",
        "campaigns.add_reminderrule",
        "campaigns.change_reminderrule",
    ],
    CARE_AGENT: [
        "view:*",
        "campaigns.change_enrollment",
        "care.add_carecase",
        "care.change_carecase",
        "care.add_casecomment",
        "meters.resend_codes",
    ],
    CARE_SUPERVISOR: [
        "view:*",
        "campaigns.change_enrollment",
        "care.add_carecase",
        "care.change_carecase",
        "care.add_casecomment",
        "meters.resend_codes",
        "tokens.view_token_digits",
        "tokens.issue_management_token",
        "tokens.change_reversalrequest",
        # Lift a staff sign-in lockout (django-axes); the unlock is audited.
        "axes.view_accessattempt",
        "axes.delete_accessattempt",
    ],
    AUDITOR: ["view:*"],
}


def roles_holding(permission: str) -> list[str]:
    """The roles that grant `permission` ("app_label.codename"), for refusals that say who may."""
    app_label, _, codename = permission.partition(".")
    reads_everything = app_label in PROJECT_APPS and codename.startswith("view_") and codename != "view_token_digits"
    return [role for role, names in ROLES.items() if permission in names or (reads_everything and "view:*" in names)]


def roles_phrase(permission: str) -> str:
    """ "the Care supervisor role", "the Care agent or Care supervisor role", "one of the roles A, B, C"."""
    roles = roles_holding(permission)
    if not roles:
        return "a role your administrator grants"
    if len(roles) <= 2:
        return f"the {' or '.join(roles)} role"
    return f"one of the roles {', '.join(roles)}"


def roles_sync() -> None:
    """Create the role groups and set their permissions exactly to ROLES."""
    from django.contrib.auth.models import Group, Permission

    permissions = Permission.objects.select_related("content_type")
    by_name = {f"{p.content_type.app_label}.{p.codename}": p for p in permissions}
    for role, names in ROLES.items():
        granted = []
        for name in names:
            if name == "view:*":
                granted += [
                    p
                    for key, p in by_name.items()
                    if p.content_type.app_label in PROJECT_APPS
                    and p.codename.startswith("view_")
                    and key != "tokens.view_token_digits"
                ]
            elif name in by_name:
                granted.append(by_name[name])
        group, _ = Group.objects.get_or_create(name=role)
        group.permissions.set(granted)


def roles_sync_after_migrate(sender: Any, **kwargs: Any) -> None:
    from django.apps import apps

    # post_migrate fires once per app with models, and each app's permissions are created by its
    # own signal: sync once, after the last such app, when every permission exists.
    with_models = [config for config in apps.get_app_configs() if config.models_module is not None]
    if sender.name == with_models[-1].name:
        roles_sync()
