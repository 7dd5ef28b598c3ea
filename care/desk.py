"""The care desk inside the Django admin: a meter's whole story on one page, and its actions.

`CareDeskMixin` is mixed into the Meter admin (`care.admin.MeterAdmin`). Each action is a POST to
/admin/meters/meter/<id>/care/<action>/, checks its own permission, calls one service and comes
back to the meter page. Token digits appear only in a response rendered for a user holding
`tokens.view_token_digits` (or the supervisor who just issued a management token), and each such
response is recorded in the audit log.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.http import urlencode

from accounts.roles import roles_phrase
from meters.models import Meter
from tokens import errors as vend_errors
from tokens.models import KeyChangeSet
from tokens.services import management_token_issue
from tokens.sts import format_token

from . import services
from .models import CareCase
from .selectors import meter_story_load
from .status import desk_status, meter_timeline

VIEW_DIGITS = "tokens.view_token_digits"
ISSUE_MANAGEMENT = "tokens.issue_management_token"
RESEND = "meters.resend_codes"
CHANGE_ENROLLMENT = "campaigns.change_enrollment"
OPEN_CASE = "care.add_carecase"

# Subclasses of class 2 management tokens the desk may issue (tokens.sts.management_token).
MANAGEMENT_KINDS = {
    "clear_tamper": (5, "Clear tamper"),
    "clear_credit": (1, "Clear credit"),
    "power_limit": (0, "Set maximum power limit"),
}


class DecodeForm(forms.Form):
    digits = forms.CharField(label="Token the customer typed", max_length=40)


class ManagementTokenForm(forms.Form):
    kind = forms.ChoiceField(choices=[(k, label) for k, (_, label) in MANAGEMENT_KINDS.items()])
    watts = forms.IntegerField(
        required=False, min_value=1, max_value=65535, help_text="Power limit in watts (power limit only)"
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("kind") == "power_limit" and not data.get("watts"):
            raise forms.ValidationError("Give the power limit in watts.")
        return data


class CaseOpenForm(forms.Form):
    kind = forms.ChoiceField(choices=CareCase.Kind.choices)
    summary = forms.CharField(max_length=300, widget=forms.Textarea(attrs={"rows": 2}))


class FlagForm(forms.Form):
    reason = forms.CharField(max_length=200)


def masked(digits: str) -> str:
    return "****-****-****-****-" + digits[-4:]


def _role_names(user: Any) -> list[str]:
    if user.is_superuser:
        return ["superuser"]
    return sorted(user.groups.values_list("name", flat=True))


def permission_refusal(user: Any, permission: str) -> str:
    """Why a desk action is refused and who can do it, for the 403 page."""
    what = PERMISSION_WORDS.get(permission, "this action")
    mine = ", ".join(_role_names(user)) or "no role"
    return f"{what} needs {roles_phrase(permission)}; you are signed in as {user.get_username()} ({mine})."


PERMISSION_WORDS = {
    VIEW_DIGITS: "Showing token digits",
    ISSUE_MANAGEMENT: "Issuing a management token",
    RESEND: "Resending codes and tokens, and decoding what a customer typed,",
    CHANGE_ENROLLMENT: "Marking a meter confirmed or flagging it for a field visit",
    OPEN_CASE: "Opening a care case",
}


def management_refusal(meter: Meter, label: str) -> str:
    """Why no management token can be made for a meter still on its retired key, and the way on."""
    what = f"No {label.lower()} token can be made for meter {meter.meter_number} yet"
    key = f"it is still on key revision {meter.krn}, which the TID rollover retired"
    if meter.key_state == Meter.KeyState.CODES_ISSUED:
        return (
            f"{what}: {key}. Have the customer type update code 1, then update code 2 (resend them by SMS if "
            "they were lost); once the meter accepted them, mark it confirmed and issue the token again."
        )
    return (
        f"{what}: {key}, and its update codes are not issued yet. They come with the customer's next purchase "
        "(or on *977#, menu 1): have the customer type update codes 1 and 2, mark the meter confirmed, then "
        "issue the token again."
    )


class CareDeskMixin:
    """Adds the meter story page and its care actions to a ModelAdmin of `Meter`."""

    def get_urls(self) -> list[Any]:
        urls = super().get_urls()  # type: ignore[misc]
        wrap = self.admin_site.admin_view  # type: ignore[attr-defined]
        return [
            path("find/", wrap(self.find_view), name="meters_meter_find"),
            path("<int:pk>/care/<slug:action>/", wrap(self.care_action_view), name="meters_meter_care"),
            *urls,
        ]

    # --- the front door's one search -----------------------------------------------------------

    def find_view(self, request: HttpRequest) -> HttpResponse:
        """One search box: meter number, phone in any common form, account or token digits. One
        meter found opens its page; several (one phone, many meters) list them; none says so."""
        if not self.has_view_or_change_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied("Finding a customer needs a staff role that can read meters.")
        term = request.GET.get("q", "").strip()
        if not term:
            return HttpResponseRedirect(reverse("admin:index"))
        found, _ = self.get_search_results(request, self.get_queryset(request), term)  # type: ignore[attr-defined]
        ids = list(found.values_list("pk", flat=True)[:2])
        if len(ids) == 1:
            return HttpResponseRedirect(reverse("admin:meters_meter_change", args=[ids[0]]))
        if ids:
            return HttpResponseRedirect(f"{reverse('admin:meters_meter_changelist')}?{urlencode({'q': term})}")
        messages.warning(
            request,
            f"No meter matches “{term}”. Check the digits with the customer: a meter number has 11 or 13 digits, "
            "a token 20; a phone may be typed as 0712 345 678 or +254 712 345 678.",
        )
        return HttpResponseRedirect(f"{reverse('admin:index')}?{urlencode({'q': term})}")

    # --- the story -----------------------------------------------------------------------------

    def meter_story(self, request: HttpRequest, meter: Meter) -> dict[str, Any]:
        user = request.user
        story = meter_story_load(meter)
        for token in story.tokens:
            token.masked = masked(token.digits)  # type: ignore[attr-defined]
        for kcs in story.code_sets:
            kcs.masked_codes = [f"{n}) {masked(c)}" for n, c in enumerate(kcs.codes, 1)]  # type: ignore[attr-defined]
        can = {
            "resend": user.has_perm(RESEND),
            "enrollment": user.has_perm(CHANGE_ENROLLMENT),
            "digits": user.has_perm(VIEW_DIGITS),
            "management": user.has_perm(ISSUE_MANAGEMENT),
            "case": user.has_perm(OPEN_CASE),
            # Care staff only: decoding is a desk tool (audited), not part of read-only oversight.
            "decode": user.has_perm(RESEND),
        }
        return {
            "meter": meter,
            "data": story,
            "status": desk_status(story),
            "timeline": meter_timeline(story),
            "current_key": story.current_key,
            "enrollments": story.enrollments,
            "sms_messages": story.messages,
            "sms_failing": story.sms_failing,
            "code_sets": story.code_sets,
            "tokens": story.tokens,
            "cases": story.cases,
            "audit_events": story.audit_events,
            "can": can,
            "can_any": any(can.values()),
            "roles": ", ".join(_role_names(user)) or "no role",
            "care_roles": roles_phrase(RESEND),
            "decode_form": DecodeForm(),
            "management_form": ManagementTokenForm(),
            "case_form": CaseOpenForm(),
            "flag_form": FlagForm(),
            "management_kinds": MANAGEMENT_KINDS,
        }

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = extra_context or {}
        meter = Meter.objects.filter(pk=object_id).first() if str(object_id).isdigit() else None
        if meter is not None and self.has_view_or_change_permission(request, meter):  # type: ignore[attr-defined]
            extra_context["story"] = self.meter_story(request, meter)
            extra_context.setdefault("title", f"Meter {meter.meter_number}")
            extra_context.setdefault("subtitle", "")  # the desk names the customer; no second heading
        return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]

    # --- actions -------------------------------------------------------------------------------

    def care_action_view(self, request: HttpRequest, pk: int, action: str) -> HttpResponse:
        meter = get_object_or_404(Meter, pk=pk)
        if not self.has_view_or_change_permission(request, meter):  # type: ignore[attr-defined]
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseRedirect(self._story_url(meter))
        handler = self.CARE_ACTIONS.get(action)
        if handler is None:
            raise PermissionDenied
        try:
            return handler(self, request, meter)
        except (services.CareError, vend_errors.VendError) as exc:
            messages.error(request, str(exc))
        return HttpResponseRedirect(self._story_url(meter))

    def _story_url(self, meter: Meter) -> str:
        return reverse("admin:meters_meter_change", args=[meter.pk])

    def _require(self, request: HttpRequest, permission: str) -> None:
        if not request.user.has_perm(permission):
            raise PermissionDenied(permission_refusal(request.user, permission))

    def _care_resend_codes(self, request: HttpRequest, meter: Meter) -> HttpResponse:
        self._require(request, RESEND)
        if services.meter_codes_send(meter=meter, actor=request.user):
            messages.success(request, f"Update codes queued by SMS to {meter.phone}.")
        else:
            messages.warning(request, "The meter has no registered phone.")
        return HttpResponseRedirect(self._story_url(meter))

    def _care_resend_token(self, request: HttpRequest, meter: Meter) -> HttpResponse:
        self._require(request, RESEND)
        if services.meter_last_token_send(meter=meter, actor=request.user):
            messages.success(request, f"Last token queued by SMS to {meter.phone}.")
        else:
            messages.warning(request, "The meter has no registered phone.")
        return HttpResponseRedirect(self._story_url(meter))

    def _care_confirm(self, request: HttpRequest, meter: Meter) -> HttpResponse:
        self._require(request, CHANGE_ENROLLMENT)
        changed = services.meter_confirm(meter=meter, actor=request.user, reason="confirmed by care")
        messages.success(request, "Marked confirmed on the new key." if changed else "Already confirmed.")
        return HttpResponseRedirect(self._story_url(meter))

    def _care_flag(self, request: HttpRequest, meter: Meter) -> HttpResponse:
        self._require(request, CHANGE_ENROLLMENT)
        form = FlagForm(request.POST)
        if not form.is_valid():
            raise services.CareError("Say why the meter needs a field visit.")
        changed = services.meter_flag_non_compliant(meter=meter, reason=form.cleaned_data["reason"], actor=request.user)
        messages.success(request, "Flagged for a field visit." if changed else "Already flagged.")
        return HttpResponseRedirect(self._story_url(meter))

    def _care_open_case(self, request: HttpRequest, meter: Meter) -> HttpResponse:
        self._require(request, OPEN_CASE)
        form = CaseOpenForm(request.POST)
        if not form.is_valid():
            raise services.CareError("Choose a kind and write a summary.")
        case = services.care_case_open(
            meter=meter,
            kind=form.cleaned_data["kind"],
            source=CareCase.Source.AGENT,
            phone=meter.phone,
            summary=form.cleaned_data["summary"],
            actor=request.user,
        )
        messages.success(request, f"Case {case.reference} opened.")
        return HttpResponseRedirect(self._story_url(meter))

    def _care_decode(self, request: HttpRequest, meter: Meter) -> HttpResponse:
        self._require(request, RESEND)
        form = DecodeForm(request.POST)
        if not form.is_valid():
            raise services.CareError("Type the token's digits.")
        explanation = services.token_explain(meter=meter, typed=form.cleaned_data["digits"], actor=request.user)
        return self._story_response(request, meter, explanation=explanation)

    def _care_reveal(self, request: HttpRequest, meter: Meter) -> HttpResponse:
        self._require(request, VIEW_DIGITS)
        tokens = services.token_digits_reveal(meter=meter, actor=request.user)
        revealed = [(t, format_token(t.digits)) for t in tokens]
        code_sets = [
            (kcs, [f"{n}) {format_token(c)}" for n, c in enumerate(kcs.codes, 1)])
            for kcs in KeyChangeSet.objects.filter(meter=meter)
        ]
        return self._story_response(request, meter, revealed=revealed, revealed_codes=code_sets)

    def _care_management_token(self, request: HttpRequest, meter: Meter) -> HttpResponse:
        self._require(request, ISSUE_MANAGEMENT)
        form = ManagementTokenForm(request.POST)
        if not form.is_valid():
            raise services.CareError("; ".join(str(e) for errors in form.errors.values() for e in errors))
        subclass, label = MANAGEMENT_KINDS[form.cleaned_data["kind"]]
        value = {0: form.cleaned_data.get("watts") or 0, 1: 0xFFFF}.get(subclass, 0)
        try:
            token = management_token_issue(meter=meter, subclass=subclass, value=value, actor=request.user)
        except vend_errors.KeyChangeRequired:
            raise services.CareError(management_refusal(meter, label)) from None
        issued = {"label": label, "display": format_token(token.digits), "tid": token.tid, "krn": token.krn}
        return self._story_response(request, meter, issued=issued)

    def _story_response(self, request: HttpRequest, meter: Meter, **result: Any) -> HttpResponse:
        opts = Meter._meta
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": opts,
            "title": f"Meter {meter.meter_number}",
            "original": meter,
            "story": self.meter_story(request, meter),
            "result": result,
        }
        return TemplateResponse(request, "care/meter_result.html", context)

    # The URL's action name -> its handler: greppable from the template's form action to the code.
    CARE_ACTIONS: dict[str, Any] = {
        "resend-codes": _care_resend_codes,
        "resend-token": _care_resend_token,
        "confirm": _care_confirm,
        "flag": _care_flag,
        "open-case": _care_open_case,
        "decode": _care_decode,
        "reveal": _care_reveal,
        "management-token": _care_management_token,
    }
