"""The care desk in the admin: the Meter page (with the desk's story and actions), open cases, the
field-visit queue and meters whose SMS keep failing."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import CharField, IntegerField, Q, QuerySet
from django.db.models.expressions import RawSQL
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from meters.admin import EstimatedCountPaginator, ReadOnlyAdminMixin
from meters.models import Meter
from meters.phones import kenyan_phone_or_none

from . import services
from .desk import CHANGE_ENROLLMENT, RESEND, CareDeskMixin
from .models import CareCase, CaseComment, FailingSmsMeter, FieldVisitMeter, UssdLanguage
from .selectors import FAILING_SMS_THRESHOLD

admin.site.site_header = "KPLC care desk"
admin.site.site_title = "KPLC care desk"
admin.site.index_title = "Care desk"
# The front door lists the queues and folds every record under it: the model sidebar only took
# 280 px from the case queue and the meter page.
admin.site.enable_nav_sidebar = False


def meter_link(meter: Meter | None) -> str:
    if meter is None:
        return "-"
    return format_html('<a href="{}">{}</a>', reverse("admin:meters_meter_change", args=[meter.pk]), meter.meter_number)


class CaseCommentInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Comments are read here and added through the case form, so each one is attributed and audited."""

    model = CaseComment
    extra = 0
    fields = ("at", "author_label", "body")
    readonly_fields = fields


class CareCaseForm(forms.ModelForm):
    add_comment = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    close_with_resolution = forms.CharField(
        required=False, max_length=300, help_text="Fill in to close the case with this resolution"
    )

    class Meta:
        model = CareCase
        fields = ("meter", "phone", "kind", "summary", "assigned_to")


@admin.register(CareCase)
class CareCaseAdmin(admin.ModelAdmin):
    form = CareCaseForm
    # The queue opens filtered on open cases (see changelist_view): no status column, so the list
    # fits at 1366 px beside the filters.
    list_display = ("reference", "opened_at", "meter_column", "kind", "source", "assigned_to", "phone")
    list_filter = ("status", "kind", "source", "assigned_to")
    search_fields = ("=meter__meter_number", "=phone")
    list_select_related = ("meter", "assigned_to")
    raw_id_fields = ("meter",)
    inlines = [CaseCommentInline]
    actions = ["assign_to_me", "close_cases"]
    readonly_fields = (
        "source",
        "status",
        "opened_at",
        "opened_by",
        "assigned_at",
        "closed_at",
        "closed_by",
        "resolution",
    )

    @admin.display(description="meter", ordering="meter__meter_number")
    def meter_column(self, obj: CareCase) -> str:
        return meter_link(obj.meter)

    def get_fields(self, request: HttpRequest, obj: CareCase | None = None) -> Any:
        if obj is None:
            return ["meter", "phone", "kind", "summary"]
        fields = ["meter", "phone", "kind", "summary", "assigned_to", *self.readonly_fields]
        if obj.status == CareCase.Status.OPEN and self.has_change_permission(request, obj):
            fields += ["add_comment", "close_with_resolution"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: CareCase | None = None) -> tuple[str, ...]:
        if obj is None:
            return ()
        return ("meter", "phone", "kind", "summary", *self.readonly_fields)

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        # The case list opens as the queue: open cases, oldest first.
        if not any(key.startswith("status") for key in request.GET) and "q" not in request.GET:
            return HttpResponseRedirect(request.path + "?status__exact=open&o=2")
        return super().changelist_view(request, extra_context)

    def save_model(self, request: HttpRequest, obj: CareCase, form: CareCaseForm, change: bool) -> None:
        if not change:
            case = services.care_case_open(
                meter=obj.meter,
                kind=obj.kind,
                source=CareCase.Source.AGENT,
                phone=obj.phone or (obj.meter.phone if obj.meter else ""),
                summary=obj.summary,
                actor=request.user,
            )
            obj.pk, obj.opened_at, obj.source = case.pk, case.opened_at, case.source
            return
        if "assigned_to" in form.changed_data:
            services.care_case_assign(case=obj, assignee=form.cleaned_data["assigned_to"], actor=request.user)
        if form.cleaned_data.get("add_comment"):
            services.care_case_comment(case=obj, body=form.cleaned_data["add_comment"], actor=request.user)
        if form.cleaned_data.get("close_with_resolution"):
            services.care_case_close(
                case=obj, resolution=form.cleaned_data["close_with_resolution"], actor=request.user
            )

    def has_delete_permission(self, request: HttpRequest, obj: CareCase | None = None) -> bool:
        return False  # a case is closed, never deleted

    @admin.action(description="Assign to me", permissions=["change"])
    def assign_to_me(self, request: HttpRequest, queryset: QuerySet[CareCase]) -> None:
        for case in queryset.filter(status=CareCase.Status.OPEN):
            services.care_case_assign(case=case, assignee=request.user, actor=request.user)

    @admin.action(description="Close (resolved)", permissions=["change"])
    def close_cases(self, request: HttpRequest, queryset: QuerySet[CareCase]) -> None:
        closed = sum(
            services.care_case_close(case=case, resolution="Closed from the queue.", actor=request.user)
            for case in queryset.filter(status=CareCase.Status.OPEN)
        )
        self.message_user(request, f"{closed} case(s) closed.")


class ReadOnlyMeterQueue(ReadOnlyAdminMixin, admin.ModelAdmin):
    """A queue of meters; each row opens the meter's story page in the meter admin."""

    list_display: tuple[str, ...] = ("meter_column", "customer_name", "phone", "region", "key_state", "updated_at")
    list_filter = ("region",)
    search_fields = ("=meter_number", "=phone", "=account_number")
    actions = None

    @admin.display(description="meter", ordering="meter_number")
    def meter_column(self, obj: Meter) -> str:
        return meter_link(obj)

    def change_view(self, request: HttpRequest, object_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        return HttpResponseRedirect(reverse("admin:meters_meter_change", args=[object_id]))


@admin.register(FieldVisitMeter)
class FieldVisitMeterAdmin(ReadOnlyMeterQueue):
    def get_queryset(self, request: HttpRequest) -> QuerySet[Meter]:
        return (
            super()
            .get_queryset(request)
            .filter(Q(status=Meter.Status.NON_COMPLIANT) | Q(key_state=Meter.KeyState.NON_COMPLIANT))
        )


@admin.register(FailingSmsMeter)
class FailingSmsMeterAdmin(ReadOnlyMeterQueue):
    list_display: tuple[str, ...] = (
        "meter_column",
        "customer_name",
        "phone",
        "failed_sms",
        "last_failure",
        "region",
        "key_state",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Meter]:
        from sms.selectors import failing_count_sql, failing_meters_sql, last_failure_sql

        # Failed messages are in the outbox for a minute, then in the log: count both.
        meter_column = f'"{Meter._meta.db_table}"."id"'
        failing_sql, failing_params = failing_meters_sql(threshold=FAILING_SMS_THRESHOLD)
        count_sql, count_params = failing_count_sql(meter_column=meter_column)
        last_sql, last_params = last_failure_sql(meter_column=meter_column)
        return (
            super()
            .get_queryset(request)
            .filter(pk__in=RawSQL(failing_sql, failing_params))  # noqa: S611 - table and column names only
            .annotate(
                failed_sms_count=RawSQL(count_sql, count_params, output_field=IntegerField()),  # noqa: S611
                last_failure_reason=RawSQL(last_sql, last_params, output_field=CharField()),  # noqa: S611
            )
        )

    @admin.display(description="failed SMS", ordering="failed_sms_count")
    def failed_sms(self, obj: Any) -> int:
        return obj.failed_sms_count

    @admin.display(description="last failure reason")
    def last_failure(self, obj: Any) -> str:
        return obj.last_failure_reason or ""


@admin.register(UssdLanguage)
class UssdLanguageAdmin(admin.ModelAdmin):
    list_display = ("phone", "language", "updated_at")
    search_fields = ("=phone",)
    readonly_fields = ("phone", "language", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Meter)
class MeterAdmin(CareDeskMixin, admin.ModelAdmin):
    change_form_template = "care/meter_story.html"  # the desk's story and actions around the form
    list_display = (
        "meter_number",
        "customer_name",
        "phone",
        "account_number",
        "region",
        "sgc",
        "krn",
        "status",
        "key_state",
    )
    list_filter = ("status", "key_state", "region", "sgc", "krn")
    # Exact matches ride the unique and secondary indexes; a LIKE over millions of rows would not.
    search_fields = ("=meter_number", "=phone", "=account_number")
    search_help_text = "Meter number, phone (any Kenyan format), account number, or the 20 digits of a token"
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    # Campaign state: changed only through the services (care actions, vends, USSD), never typed in.
    readonly_fields = ("status", "key_state", "created_at", "updated_at")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Meter], search_term: str
    ) -> tuple[QuerySet[Meter], Any]:
        term = search_term.strip()
        # Care agents type what the customer reads out: "0712 345 678" finds "+254712345678".
        term = kenyan_phone_or_none(term) or term
        digits = services.token_digits_clean(term)
        if len(digits) == 20 and digits.isdigit():
            # A token read out by the customer: found through its keyed digest, never a digits scan.
            meter_ids = {match.meter.pk for match in services.token_find(digits=digits)}
            return queryset.filter(pk__in=meter_ids), False
        return super().get_search_results(request, queryset, term)

    actions = ["resend_codes", "mark_confirmed", "flag_non_compliant"]

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RESEND)

    def has_enrollment_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(CHANGE_ENROLLMENT)

    @admin.action(description="Resend update codes by SMS", permissions=["resend"])
    def resend_codes(self, request: HttpRequest, queryset: QuerySet[Meter]) -> None:
        sent = skipped = 0
        for meter in queryset[:500]:
            try:
                sent += services.meter_codes_send(meter=meter, actor=request.user)
            except services.CareError:
                skipped += 1
        self.message_user(request, f"Codes queued for {sent} meter(s); {skipped} had no codes issued.")

    @admin.action(description="Mark confirmed on the new key", permissions=["enrollment"])
    def mark_confirmed(self, request: HttpRequest, queryset: QuerySet[Meter]) -> None:
        changed = sum(
            services.meter_confirm(meter=meter, actor=request.user, reason="confirmed by care")
            for meter in queryset[:500]
        )
        self.message_user(request, f"{changed} meter(s) marked confirmed.")

    @admin.action(description="Flag non-compliant (field visit)", permissions=["enrollment"])
    def flag_non_compliant(self, request: HttpRequest, queryset: QuerySet[Meter]) -> None:
        changed = sum(
            services.meter_flag_non_compliant(meter=meter, reason="flagged by care", actor=request.user)
            for meter in queryset[:500]
        )
        self.message_user(request, f"{changed} meter(s) flagged for a field visit.", messages.SUCCESS)
