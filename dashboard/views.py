"""Staff dashboard views: thin, the figures come from dashboard.services and campaigns.services."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.roles import roles_phrase
from campaigns import rules
from campaigns import services as campaign_services
from campaigns.models import Batch, Campaign
from campaigns.selectors import reminder_rule_for, reminders_due
from campaigns.texts import TemplateError, reminder_render
from kplc_sts import clock
from kplc_sts.formats import staff_date, staff_datetime
from kplc_sts.replica import lag_tolerant_view
from sms.quiet import quiet_hours
from tokens import services as token_services

from . import services
from .forms import CodesPushForm, ReminderRuleForm, ScheduleBatchForm

VIEW_PERMISSION = "campaigns.view_campaign"
SCHEDULE_PERMISSION = "campaigns.schedule_batch"
BATCHES_PER_PAGE = 25
FAILED_PER_PAGE = 50


def staff_view(permission: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Anonymous users go to the login page; signed-in users without `permission` get the 403 page,
    told which roles have it."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if not request.user.has_perm(permission):
                raise PermissionDenied(f"This page needs {roles_phrase(permission)}.")
            return view(request, *args, **kwargs)

        return login_required(checked)

    return decorator


def _campaign_from_request(request: HttpRequest) -> Campaign | None:
    campaign_id = request.GET.get("campaign", "")
    if campaign_id.isdigit():
        return get_object_or_404(Campaign, pk=int(campaign_id))
    return services.campaign_current()


def _base_context(request: HttpRequest, nav: str, campaign: Campaign | None) -> dict[str, Any]:
    return {
        "nav": nav,
        "campaign": campaign,
        "campaigns": Campaign.objects.order_by("-created_at", "-id").only("id", "name", "status")[:50],
        "can_schedule": request.user.has_perm(SCHEDULE_PERMISSION),
    }


# --- overview --------------------------------------------------------------------------------------


@lag_tolerant_view
@require_GET
@staff_view(VIEW_PERMISSION)
def home(request: HttpRequest) -> HttpResponse:
    campaign = _campaign_from_request(request)
    if campaign is None:
        return render(request, "dashboard/no_campaign.html", _base_context(request, "overview", None))
    return redirect("dashboard:overview", campaign_id=campaign.pk)


@lag_tolerant_view
@require_GET
@staff_view(VIEW_PERMISSION)
def overview(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    today = clock.localdate()
    target = services.campaign_target(campaign=campaign)
    context = _base_context(request, "overview", campaign)
    context.update(
        target=target,
        funnel=services.funnel_stages(counters=campaign, target=target.meters),
        projection=services.campaign_projection(campaign=campaign, target=target.meters, today=today),
        recent_days=list(
            reversed(services.campaign_daily_series(campaign=campaign, today=today, max_days=14, days_ahead=7))
        ),
        recent_batches=campaign.batches.order_by("-scheduled_at", "-number")[:5],
        regions=services.campaign_region_progress(campaign=campaign, today=today),
        sms=services.campaign_sms_tally(campaign=campaign),
        plan=services.campaign_plan_projection(campaign=campaign, target=target.meters, now=clock.now()),
        today=today,
    )
    return render(request, "dashboard/overview.html", context)


@lag_tolerant_view
@require_GET
@staff_view(VIEW_PERMISSION)
def overview_data(request: HttpRequest, campaign_id: int) -> JsonResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    today = clock.localdate()
    target = services.campaign_target(campaign=campaign)
    series = services.campaign_daily_series(campaign=campaign, today=today)
    projection = services.campaign_projection(campaign=campaign, target=target.meters, today=today)
    return JsonResponse(
        {
            "campaign": {"id": campaign.pk, "name": campaign.name, "deadline": campaign.deadline.isoformat()},
            "funnel": [
                {"key": s.key, "label": s.label, "value": s.value}
                for s in services.funnel_stages(counters=campaign, target=target.meters)
            ],
            "daily": {
                "days": [row["day"].isoformat() for row in series],
                **{field: [row[field] for row in series] for field in services.DAILY_FIELDS},
                "capacity": campaign.daily_capacity,
                "today": today.isoformat(),
            },
            "regions": [
                {
                    "region": r.region or "(no region)",
                    "target": r.target,
                    "done": r.done,
                    "share": round(r.share, 1),
                    "rate_per_day": round(r.rate_per_day, 1),
                    "needed_per_day": r.needed_per_day,
                    "on_track": r.on_track,
                }
                for r in services.campaign_region_progress(campaign=campaign, today=today)
            ],
            "projection": {
                "rate_per_day": round(projection.rate_per_day, 1),
                "needed_per_day": projection.needed_per_day,
                "remaining": projection.remaining,
                "projected_date": projection.projected_date.isoformat() if projection.projected_date else None,
                "on_track": projection.on_track,
            },
        }
    )


# --- batches ---------------------------------------------------------------------------------------


@lag_tolerant_view
@require_GET
@staff_view(VIEW_PERMISSION)
def batch_list(request: HttpRequest) -> HttpResponse:
    campaign = _campaign_from_request(request)
    if campaign is None:
        return render(request, "dashboard/no_campaign.html", _base_context(request, "batches", None))
    batches = campaign.batches.order_by("-number")
    status = request.GET.get("status", "")
    if status in Batch.Status.values:
        batches = batches.filter(status=status)
    page = Paginator(batches, BATCHES_PER_PAGE).get_page(request.GET.get("page"))
    tallies = services.batch_sms_tallies(batch_ids=[batch.pk for batch in page])
    for batch in page:
        batch.sms = tallies[batch.pk]  # type: ignore[attr-defined]
        batch.bar = services.batch_progress_bar(batch)  # type: ignore[attr-defined]
    context = _base_context(request, "batches", campaign)
    context.update(page=page, status=status, statuses=Batch.Status.choices)
    return render(request, "dashboard/batch_list.html", context)


def _batch_context(request: HttpRequest, batch: Batch) -> dict[str, Any]:
    after = request.GET.get("after", "")
    failed = services.batch_failed_enrollments(
        batch=batch, after_id=int(after) if after.isdigit() else 0, limit=FAILED_PER_PAGE + 1
    )
    context = _base_context(request, "batches", batch.campaign)
    context.update(
        batch=batch,
        funnel=[
            stage
            for stage in services.funnel_stages(counters=batch, target=batch.enrolled)[1:]
            if stage.key != "outside_batch"
        ],
        sms=services.batch_sms_tallies(batch_ids=[batch.pk])[batch.pk],
        failure_reasons=services.batch_failure_reasons(batch=batch),
        failed=failed[:FAILED_PER_PAGE],
        failed_next=failed[FAILED_PER_PAGE - 1].pk if len(failed) > FAILED_PER_PAGE else None,
        failed_after=after,
        can_pause=Batch.Status.PAUSED in rules.BATCH_TRANSITIONS[batch.status],
        can_resume=batch.status == Batch.Status.PAUSED,
        can_cancel=Batch.Status.CANCELLED in rules.BATCH_TRANSITIONS[batch.status],
    )
    return context


@lag_tolerant_view
@require_GET
@staff_view(VIEW_PERMISSION)
def batch_detail(request: HttpRequest, batch_id: int) -> HttpResponse:
    batch = get_object_or_404(Batch.objects.select_related("campaign"), pk=batch_id)
    return render(request, "dashboard/batch_detail.html", _batch_context(request, batch))


@lag_tolerant_view
@require_GET
@staff_view(VIEW_PERMISSION)
def batch_delivery_data(request: HttpRequest, batch_id: int) -> JsonResponse:
    batch = get_object_or_404(Batch, pk=batch_id)
    return JsonResponse(services.batch_delivery_series(batch=batch))


# Each action, and what it did in words (not "Batch 3 cancelled; it is now cancelled.").
BATCH_ACTIONS = {
    "pause": (campaign_services.batch_pause, "paused", "its unsent notices are held until you resume it"),
    "resume": (campaign_services.batch_resume, "resumed", "its held notices are being sent"),
    "cancel": (
        campaign_services.batch_cancel,
        "cancelled",
        "its unsent notices are cancelled and the meters not yet notified are free for another batch",
    ),
}


@require_POST
@staff_view(SCHEDULE_PERMISSION)
def batch_action(request: HttpRequest, batch_id: int, action: str) -> HttpResponse:
    if action not in BATCH_ACTIONS:
        raise Http404
    batch = get_object_or_404(Batch, pk=batch_id)
    service, done, effect = BATCH_ACTIONS[action]
    try:
        batch = service(batch=batch, actor=request.user)
    except campaign_services.CampaignError as exc:
        messages.error(request, f"Batch {batch.number} was not {done}: {exc}.")
    else:
        messages.success(request, f"Batch {batch.number} {done}: {effect}.")
    return redirect("dashboard:batch_detail", batch_id=batch.pk)


# --- scheduling --------------------------------------------------------------------------------------


def _preview_payload(form: ScheduleBatchForm) -> dict[str, Any]:
    data = form.cleaned_data
    preview = campaign_services.batch_preview(
        campaign=form.campaign,
        regions=data.get("regions") or [],
        sgcs=data.get("sgcs") or [],
        limit=data["limit"],
        scheduled_at=data["scheduled_at"],
    )
    preview["day"] = preview["day"].isoformat() if isinstance(preview["day"], date) else preview["day"]
    preview["after_deadline"] = data["scheduled_at"].date() > form.campaign.deadline
    return preview


def _capacity_message(exc: campaign_services.CapacityExceeded) -> str:
    room = max(exc.capacity - exc.load, 0)
    return (
        f"{staff_date(exc.day)} already has {exc.load:,} meters scheduled; {exc.adding:,} more would exceed "
        f"the campaign's daily capacity of {exc.capacity:,}. Schedule at most {room:,} meters that day, pick "
        "another day, or tick the override (it is recorded in the audit log)."
    )


@require_http_methods(["GET", "POST"])
@staff_view(SCHEDULE_PERMISSION)
def batch_schedule(request: HttpRequest) -> HttpResponse:
    campaign = _campaign_from_request(request)
    if campaign is None:
        return render(request, "dashboard/no_campaign.html", _base_context(request, "schedule", None))
    preview = None
    if request.method == "POST":
        form = ScheduleBatchForm(request.POST, campaign=campaign)
        if form.is_valid():
            if request.POST.get("action") == "preview":
                preview = _preview_payload(form)
            else:
                data = form.cleaned_data
                try:
                    batch = campaign_services.batch_schedule(
                        campaign=campaign,
                        regions=data["regions"],
                        sgcs=data["sgcs"],
                        limit=data["limit"],
                        scheduled_at=data["scheduled_at"],
                        override_capacity=data["override_capacity"],
                        actor=request.user,
                    )
                except campaign_services.CapacityExceeded as exc:
                    # The preview first: add_error() drops the field from cleaned_data.
                    preview = _preview_payload(form)
                    form.add_error("limit", _capacity_message(exc))
                except campaign_services.CampaignError as exc:
                    preview = _preview_payload(form)
                    message = str(exc)
                    if "no meters match" in message:
                        message = (
                            "No meters match this selection: every meter of these regions and supply groups "
                            "is already enrolled or not on the old key. Widen the selection."
                        )
                    form.add_error(None, message)
                else:
                    note = " (capacity overridden, recorded in the audit log)" if batch.capacity_overridden else ""
                    messages.success(
                        request,
                        f"Batch {batch.number} scheduled: {batch.enrolled:,} meters on "
                        f"{staff_datetime(batch.scheduled_at)}{note}.",
                    )
                    return redirect("dashboard:batch_detail", batch_id=batch.pk)
    else:
        tomorrow = (timezone.localtime(clock.now()) + timedelta(days=1)).date()
        # Suggest what still fits tomorrow, so the first preview is not an over-capacity warning.
        room = campaign.daily_capacity - campaign_services.campaign_day_load(campaign=campaign, day=tomorrow)
        form = ScheduleBatchForm(
            campaign=campaign,
            initial={
                "date": tomorrow,
                "time": "09:00",
                "limit": min(room if room > 0 else campaign.daily_capacity, 10_000),
            },
        )
    context = _base_context(request, "schedule", campaign)
    context.update(form=form, preview=preview, preview_url=reverse("dashboard:batch_preview"))
    return render(request, "dashboard/batch_schedule.html", context)


@require_GET
@staff_view(SCHEDULE_PERMISSION)
def batch_preview(request: HttpRequest) -> JsonResponse:
    campaign = _campaign_from_request(request)
    if campaign is None:
        raise Http404
    form = ScheduleBatchForm(request.GET, campaign=campaign)
    if not form.is_valid():
        return JsonResponse(
            {"valid": False, "errors": {field: [str(e) for e in errs] for field, errs in form.errors.items()}},
            status=400,
        )
    return JsonResponse({"valid": True, **_preview_payload(form)})


# --- vending health -----------------------------------------------------------------------------------


@lag_tolerant_view
@require_GET
@staff_view(VIEW_PERMISSION)
def vending_health(request: HttpRequest) -> HttpResponse:
    context = _base_context(request, "vending", services.campaign_current())
    context.update(health=services.vending_health(now=clock.now()))
    return render(request, "dashboard/vending_health.html", context)


@lag_tolerant_view
@require_GET
@staff_view(VIEW_PERMISSION)
def vending_data(request: HttpRequest) -> JsonResponse:
    health = services.vending_health(now=clock.now())
    return JsonResponse(
        {
            "minutes": [timezone.localtime(m["minute"]).strftime("%H:%M") for m in health.minutes],
            "vends": [m["vends"] for m in health.minutes],
            "with_codes": [m["with_codes"] for m in health.minutes],
            "errors": health.errors,
            "queue": {"queued": health.queue.queued, "sending": health.queue.sending},
        }
    )


# --- CSV export -------------------------------------------------------------------------------------


@lag_tolerant_view
@require_GET
@staff_view(VIEW_PERMISSION)
def export_csv(request: HttpRequest, name: str) -> StreamingHttpResponse:
    export = services.EXPORTS.get(name)
    if export is None:
        raise Http404
    params = {key: request.GET.get(key, "") for key in ("campaign", "batch", "state")}
    suffix = "".join(f"-{key}{value}" for key, value in params.items() if value)
    stamp = timezone.localtime(clock.now()).strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(
        services.csv_stream(header=export.header, rows=export.rows(params)), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="{name}{suffix}-{stamp}.csv"'
    return response


# --- the endgame: who is left, codes push, reminders ------------------------------------------------

PUSH_PERMISSION = "campaigns.push_codes"
REMINDER_PERMISSION = "campaigns.change_reminderrule"


def _endgame_context(request: HttpRequest, nav: str, campaign: Campaign) -> dict[str, Any]:
    context = _base_context(request, nav, campaign)
    context.update(
        can_push=request.user.has_perm(PUSH_PERMISSION),
        can_remind=request.user.has_perm(REMINDER_PERMISSION),
        sms_cost_kes=settings.SMS_COST_KES,
    )
    return context


@require_GET
@staff_view(VIEW_PERMISSION)
def who_is_left(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    target = services.campaign_target(campaign=campaign)
    context = _endgame_context(request, "left", campaign)
    context.update(
        title="Who is left",
        left=services.campaign_left(campaign=campaign),
        plan=services.campaign_plan_projection(campaign=campaign, target=target.meters, now=clock.now()),
        rule=reminder_rule_for(campaign),
        grace_days=settings.ENDGAME_INFERENCE_GRACE_DAYS,
    )
    return render(request, "dashboard/who_is_left.html", context)


@require_GET
@staff_view(VIEW_PERMISSION)
def who_is_left_csv(request: HttpRequest, campaign_id: int) -> StreamingHttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    reason = request.GET.get("reason", "")
    if reason not in {r.key for r in rules.LEFT_REASONS}:
        raise Http404("unknown reason")
    region = request.GET.get("region")
    stamp = timezone.localtime(clock.now()).strftime("%Y%m%d-%H%M")
    rows = services.left_csv_rows(campaign=campaign, reason=reason, region=region)
    response = StreamingHttpResponse(
        services.csv_stream(header=services.LEFT_CSV_HEADER, rows=rows), content_type="text/csv; charset=utf-8"
    )
    region_part = f"-{slugify(region) or 'no-region'}" if region is not None else ""
    response["Content-Disposition"] = f'attachment; filename="left-{campaign.pk}-{reason}{region_part}-{stamp}.csv"'
    return response


@require_http_methods(["GET", "POST"])
@staff_view(PUSH_PERMISSION)
def codes_push(request: HttpRequest, campaign_id: int) -> HttpResponse:
    """Choose a selection, see the count and the SMS cost, then confirm: two steps, one form."""
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    data = request.POST if request.method == "POST" else (request.GET if request.GET else None)
    form = CodesPushForm(data, campaign=campaign)
    preview = None
    if data is not None and form.is_valid():
        batch, days = form.selected_batch(), form.cleaned_data.get("notified_days")
        if request.method == "POST" and request.POST.get("action") == "confirm":
            sent = token_services.codes_push(campaign=campaign, batch=batch, notified_days=days, actor=request.user)
            services.left_cache_clear(campaign=campaign)
            if sent:
                messages.success(
                    request,
                    f"Update codes sent by SMS to {sent:,} meters (KES {token_services.sms_cost(sent)}); "
                    "their customers type codes 1 and 2, then their next token.",
                )
            else:
                messages.info(request, "Nothing sent: every meter of this selection already has its codes.")
            return redirect("dashboard:who_is_left", campaign_id=campaign.pk)
        preview = token_services.codes_push_preview(campaign=campaign, batch=batch, notified_days=days)
    context = _endgame_context(request, "left", campaign)
    context.update(title="Send the codes without a purchase", form=form, preview=preview)
    return render(request, "dashboard/codes_push.html", context)


@require_http_methods(["GET", "POST"])
@staff_view(REMINDER_PERMISSION)
def reminder_rule(request: HttpRequest, campaign_id: int) -> HttpResponse:
    campaign = get_object_or_404(Campaign, pk=campaign_id)
    rule = reminder_rule_for(campaign)
    if request.method == "POST":
        form = ReminderRuleForm(request.POST)
        if form.is_valid():
            try:
                rule = campaign_services.reminder_rule_save(campaign=campaign, actor=request.user, **form.cleaned_data)
            except TemplateError as exc:
                form.add_error(None, str(exc))
            else:
                services.left_cache_clear(campaign=campaign)
                state = "on" if rule.enabled else "off"
                messages.success(request, f"Reminder rule saved: reminders are {state}.")
                return redirect("dashboard:reminder_rule", campaign_id=campaign.pk)
    else:
        form = ReminderRuleForm(
            initial={
                "enabled": rule.enabled,
                "notified_days": rule.notified_days,
                "codes_days": rule.codes_days,
                "max_per_meter": rule.max_per_meter,
                "template": rule.template,
            }
        )
    now = clock.now()
    due = reminders_due(campaign=campaign, rule=rule, now=now).count() if rule.pk else None
    context = _endgame_context(request, "left", campaign)
    context.update(
        title="Reminders",
        form=form,
        rule=rule,
        due=due,
        due_cost=token_services.sms_cost(due or 0),
        quiet=quiet_hours(now),
        quiet_start=settings.SMS_QUIET_START,
        quiet_end=settings.SMS_QUIET_END,
        sample=reminder_render(
            template=rule.template, meter_number="54000000015", name="Jane Wanjiru", deadline=campaign.deadline
        ),
    )
    return render(request, "dashboard/reminder_rule.html", context)
