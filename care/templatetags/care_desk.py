"""The care desk's template helpers: the front door's queues and the one way to name an actor."""

from __future__ import annotations

from typing import Any

from django import template

from care.models import CareCase
from care.selectors import care_queues_count
from care.status import actor_display

register = template.Library()

CARE_PERMISSION = "meters.resend_codes"  # who the front door is for first: care agents and supervisors


@register.filter(name="actor")
def actor_filter(label: str) -> str:
    return actor_display(label)


@register.inclusion_tag("care/_front_door.html", takes_context=True)
def care_front_door(context: dict[str, Any]) -> dict[str, Any]:
    request = context["request"]
    user = request.user
    can_read_meters = user.has_perm("meters.view_meter")
    return {
        "request": request,
        "query": request.GET.get("q", ""),
        "can_read_meters": can_read_meters,
        "is_care": user.has_perm(CARE_PERMISSION),
        "queues": care_queues_count(user=user) if can_read_meters else None,
        "can_reversals": user.has_perm("tokens.view_reversalrequest"),
        # The oldest open cases first, as the queue is worked; the agent's own at the top.
        "open_cases": sorted(
            CareCase.objects.filter(status=CareCase.Status.OPEN)
            .select_related("meter", "assigned_to")
            .order_by("opened_at", "pk")[:8],
            key=lambda case: case.assigned_to_id != user.pk,
        )
        if user.has_perm("care.view_carecase")
        else [],
    }
