"""django-csp's middleware with the settings' policy built once per process instead of per response.

django-csp 4 rebuilds the header string from CONTENT_SECURITY_POLICY on every response: a copy of
the settings, two `dataclasses.asdict`, about sixty calls (1 % of a vend's instructions, measured
with bench/vend_instructions.sh). For a response no view has touched the string is always the same.
"""

from __future__ import annotations

import functools
import http.client
from typing import Any

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.middleware import CheckableLazyObject, CSPMiddleware
from csp.utils import build_policy
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from django.http.response import HttpResponseBase

# What django-csp's decorators (csp_update, csp_replace, csp, csp_exempt) leave on a response:
# such a response takes the library's own path, which reads them.
VIEW_OVERRIDES = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_exempt",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
    "_csp_exempt_ro",
)
DEBUG_EXEMPT = (http.client.INTERNAL_SERVER_ERROR, http.client.NOT_FOUND)


@functools.cache
def settings_policy(report_only: bool) -> tuple[str, tuple[str, ...]]:
    """The header the settings give a response no view changed, and the URL prefixes it skips."""
    name = "CONTENT_SECURITY_POLICY_REPORT_ONLY" if report_only else "CONTENT_SECURITY_POLICY"
    policy: dict[str, Any] = getattr(settings, name, None) or {}
    return build_policy(report_only=report_only), tuple(policy.get("EXCLUDE_URL_PREFIXES") or ())


@receiver(setting_changed)
def _settings_policy_forget(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("CONTENT_SECURITY_POLICY"):
        settings_policy.cache_clear()


class SettingsPolicyCSPMiddleware(CSPMiddleware):
    def process_response(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        # A nonce is per request, a decorator's change per view: the library builds those.
        if getattr(request, "_csp_nonce", None) is not None or any(hasattr(response, a) for a in VIEW_OVERRIDES):
            return super().process_response(request, response)
        if response.status_code in DEBUG_EXEMPT and settings.DEBUG:
            return response
        for header, report_only in ((HEADER, False), (HEADER_REPORT_ONLY, True)):
            policy, excluded = settings_policy(report_only)
            if policy and header not in response and not request.path_info.startswith(excluded):
                response[header] = policy
        # As the library does: a template asking for a nonce after the header is written is an error.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response
