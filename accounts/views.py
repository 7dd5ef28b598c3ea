"""Second-factor pages: enrol an authenticator app once, then type its code after each sign-in."""

from __future__ import annotations

from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django_otp import login as otp_login
from django_otp import match_token
from django_otp.plugins.otp_totp.models import TOTPDevice

from audit.services import audit_record

from .twofactor import device_secret, safe_next


class TokenForm(forms.Form):
    token = forms.RegexField(regex=r"^\d{6,8}$", label="Code from your authenticator app", max_length=8)


@never_cache
@login_required
def setup(request: HttpRequest) -> HttpResponse:
    user: User = request.user  # type: ignore[assignment]  # login_required: never anonymous here
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        return HttpResponseRedirect(f"{reverse('accounts:2fa-verify')}?{urlencode({'next': safe_next(request)})}")
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first() or TOTPDevice.objects.create(
        user=user, name="authenticator", confirmed=False
    )
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(form.cleaned_data["token"]):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            otp_login(request, device)
            audit_record(action="auth.2fa_enrolled", actor=user, target=user)
            return HttpResponseRedirect(safe_next(request))
        form.add_error("token", "That code is not right. Check the clock of your phone and try again.")
    context = {
        "form": form,
        "secret": device_secret(device),
        "config_url": device.config_url,
        "next": safe_next(request),
    }
    return render(request, "accounts/2fa_setup.html", context)


@never_cache
@login_required
def verify(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device = match_token(request.user, form.cleaned_data["token"])
        if device is not None:
            otp_login(request, device)
            return HttpResponseRedirect(safe_next(request))
        audit_record(action="auth.2fa_failed", actor=request.user, target=request.user)  # type: ignore[arg-type]
        form.add_error("token", "That code is not right.")
    return render(request, "accounts/2fa_verify.html", {"form": form, "next": safe_next(request)})
