"""Demo staff accounts, one per role. Demo only: the password is printed and well known."""

from __future__ import annotations

import os
from typing import TextIO

from django.contrib.auth.models import Group, User

from .roles import AUDITOR, CAMPAIGN_MANAGER, CARE_AGENT, CARE_SUPERVISOR

DEMO_USERS = {
    "manager": CAMPAIGN_MANAGER,
    "agent": CARE_AGENT,
    "supervisor": CARE_SUPERVISOR,
    "auditor": AUDITOR,
}


def seed(stdout: TextIO) -> None:
    password = os.environ.get("DEMO_PASSWORD", "demo-pass-2024")
    if not User.objects.filter(username="admin").exists():
        User.objects.create_superuser("admin", "admin@example.invalid", password)
    for username, role in DEMO_USERS.items():
        user, created = User.objects.get_or_create(username=username, defaults={"is_staff": True})
        if created:
            user.set_password(password)
            user.save()
        user.groups.add(Group.objects.get(name=role))
    stdout.write(
        f"Staff logins (password {password!r}): admin (superuser), "
        + ", ".join(f"{name} ({role})" for name, role in DEMO_USERS.items())
    )
