from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from accounts.roles import AUDITOR, CAMPAIGN_MANAGER, CARE_AGENT, CARE_SUPERVISOR, ROLES, roles_sync


@pytest.mark.django_db
def test_every_role_exists_as_a_group_after_migrate() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {CAMPAIGN_MANAGER, CARE_AGENT, CARE_SUPERVISOR, AUDITOR}


@pytest.mark.django_db
def test_auditor_can_only_view() -> None:
    codenames = set(Group.objects.get(name=AUDITOR).permissions.values_list("codename", flat=True))
    assert codenames, "the auditor role has no permissions at all"
    assert all(codename.startswith("view_") for codename in codenames)
    assert "view_meter" in codenames and "view_auditevent" in codenames


@pytest.mark.django_db
def test_sync_restores_permissions_changed_by_hand() -> None:
    manager = Group.objects.get(name=CAMPAIGN_MANAGER)
    manager.permissions.clear()
    roles_sync()
    granted = {f"{p.content_type.app_label}.{p.codename}" for p in manager.permissions.select_related("content_type")}
    expected_concrete = {name for name in ROLES[CAMPAIGN_MANAGER] if name != "view:*"}
    assert expected_concrete & granted == expected_concrete & set(_all_permission_names())


def _all_permission_names() -> list[str]:
    from django.contrib.auth.models import Permission

    return [f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.select_related("content_type")]
