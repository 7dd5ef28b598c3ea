"""Number formatting for the dashboard (django.contrib.humanize is not installed)."""

from __future__ import annotations

from typing import Any

from django import template

register = template.Library()


@register.filter
def num(value: Any) -> str:
    """12345 -> "12,345"; floats keep one decimal; None -> "–"."""
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


@register.filter
def pct(value: Any, total: Any = None) -> str:
    """pct(part, total) -> "42.0 %"; pct(float) formats an already computed percentage."""
    try:
        if total is None:
            return "–" if value is None else f"{float(value):.1f} %"
        total = float(total)
        return f"{100.0 * float(value) / total:.1f} %" if total else "–"
    except (TypeError, ValueError):
        return "–"


@register.filter
def get(mapping: Any, key: Any) -> Any:
    """mapping[key] in a template (None when absent)."""
    return mapping.get(key) if hasattr(mapping, "get") else None
