"""The invariants, counted at the end of the play: each is a number of violations, 0 when it holds.

Ground truth is what the simulated customers and their virtual meters saw. The system's figures
are read the way the manager reads them (the dashboard's funnel and its CSV exports, over HTTP as
a signed-in campaign manager) and from the rows (the campaigns app's recounts).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from typing import Any
from urllib.parse import urlencode

from django.db import connection
from django.db.models import Count

from campaigns.models import Batch, Campaign, CampaignDailyStat, Enrollment
from campaigns.selectors import (
    campaign_counters_live,
    campaign_counters_recount,
    campaign_daily_recount,
    segments_live_counts,
    segments_recount,
)
from meters.models import Meter
from sms.models import Message, MessageLog
from tokens.models import IssuedToken, KeyChangeSet

from . import endpoints
from .population import Customer
from .simulation import Http, Simulation

State = Enrollment.State


class Dashboard:
    """The staff dashboard over HTTP, signed in through the login page like a person."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.http = Http(port)
        self.cookies: dict[str, str] = {}
        page = self._get(endpoints.LOGIN)
        match = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if match is None:
            raise RuntimeError("no CSRF token on the login page")
        form = {"username": username, "password": password, "csrfmiddlewaretoken": match.group(1).decode()}
        response = self.http.request(
            "POST",
            endpoints.LOGIN,
            urlencode(form).encode(),
            self._headers({"Content-Type": "application/x-www-form-urlencoded"}),
        )
        self._keep_cookies(response.headers)
        if response.status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"dashboard login failed: HTTP {response.status}")

    def _headers(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())} if self.cookies else {}
        return {**headers, **(extra or {})}

    def _keep_cookies(self, headers: dict[str, str]) -> None:
        cookie_header = headers.get("set-cookie", "")
        for part in re.split(r",\s*(?=[A-Za-z_]+=)", cookie_header):
            name, _, rest = part.partition("=")
            if name.strip() in ("csrftoken", "sessionid"):
                self.cookies[name.strip()] = rest.split(";", 1)[0]

    def _get(self, path: str) -> bytes:
        response = self.http.request("GET", path, None, self._headers())
        self._keep_cookies(response.headers)
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status}")
        return response.body

    def funnel(self, campaign_id: int) -> dict[str, int]:
        data = json.loads(self._get(endpoints.DASHBOARD_DATA.format(campaign_id=campaign_id)))
        return {stage["key"]: int(stage["value"]) for stage in data["funnel"]}

    def export(self, name: str, **params: str) -> list[dict[str, str]]:
        path = endpoints.DASHBOARD_EXPORT.format(name=name) + (f"?{urlencode(params)}" if params else "")
        text = self._get(path).decode("utf-8-sig")
        return list(csv.DictReader(io.StringIO(text)))

    def close(self) -> None:
        self.http.close()


def expected_state(customer: Customer) -> str:
    if customer.confirmed:
        return State.CONFIRMED
    if customer.flagged:
        return State.NON_COMPLIANT
    if customer.reported_rejection:
        return State.FAILED
    if customer.got_codes:
        return State.CODES_ISSUED
    if customer.notices:
        return State.NOTIFIED
    return State.SCHEDULED


def truth_funnel(sim: Simulation) -> dict[str, int]:
    customers = sim.customers
    return {
        "scheduled": sim.manager_scheduled,
        "notified": sum(1 for c in customers if sim.gateway_notices.get(c.phone, 0) > 0),
        "codes_issued": sum(1 for c in customers if c.got_codes),
        "confirmed": sum(1 for c in customers if c.confirmed),
        "failed": sum(1 for c in customers if c.reported_rejection and not c.flagged and not c.confirmed),
        "non_compliant": sum(1 for c in customers if c.flagged),
        "outside_batch": 0,
    }


def _differences(expected: dict[str, int], got: dict[str, Any]) -> dict[str, tuple[int, Any]]:
    return {key: (value, got.get(key)) for key, value in expected.items() if got.get(key) != value}


def _credit_tokens_check(
    campaign: Campaign, by_meter_id: dict[int, Customer]
) -> tuple[int, int, dict[str, dict[str, Any]]]:
    """Credit tokens issued but never accepted by their meter, old-key tokens stranded by the update
    (the brief's problem 4, not a violation), and up to five examples of the first kind."""
    not_accepted = stranded = 0
    examples: dict[str, dict[str, Any]] = {}
    for meter_id, digits, krn, vend_id in IssuedToken.objects.filter(kind=IssuedToken.Kind.CREDIT).values_list(
        "meter_id", "digits", "krn", "vend_id"
    ):
        customer = by_meter_id[meter_id]
        if digits in customer.typed:
            continue
        if customer.non_compliant and krn == campaign.to_krn:
            continue  # its meter cannot take the new key: refused by design, and care flagged it
        if digits in customer.stranded and krn == campaign.from_krn:
            stranded += 1  # an old-key token the customer had not loaded before the codes
            continue
        not_accepted += 1
        if len(examples) < 5:
            # Which token (its last digits, as the trace shows them), which vend, and what the customer did.
            examples[customer.meter_number] = {
                "token": digits[-4:],
                "krn": krn,
                "vend_id": vend_id,
                "channel": customer.channel,
                "trace": customer.trace,
            }
    return not_accepted, stranded, examples


def invariants_check(
    sim: Simulation, *, campaign: Campaign, dashboard: Dashboard
) -> tuple[dict[str, int], dict[str, Any]]:
    """(violations per invariant, details worth showing when one is not zero)."""
    customers = sim.customers
    by_meter_id = {
        meter_id: sim.by_meter[number]
        for meter_id, number in Meter.objects.filter(account_number__startswith="REH").values_list("pk", "meter_number")
    }
    violations: dict[str, int] = {}
    details: dict[str, Any] = {}

    # 1. Exactly one notice at the gateway for every scheduled customer with a reachable phone.
    enrollments = list(
        Enrollment.objects.filter(campaign=campaign, batch__isnull=False).values_list(
            "meter_id", "batch_id", "codes_issued_at", "confirmed_at", "non_compliant_at"
        )
    )
    started = dict(Batch.objects.filter(campaign=campaign).values_list("pk", "notices_created_at"))
    lost = doubled = 0
    lost_examples: list[str] = []
    for meter_id, batch_id, codes_at, confirmed_at, non_compliant_at in enrollments:
        customer = by_meter_id[meter_id]
        accepted = sim.gateway_notices.get(customer.phone, 0)
        if accepted > 1:
            doubled += 1
        notices_at = started.get(batch_id)
        updated_first = [at for at in (codes_at, confirmed_at, non_compliant_at) if at is not None]
        # A meter updated before its batch's notices were written rightly gets none.
        still_due = notices_at is not None and not (updated_first and min(updated_first) <= notices_at)
        if customer.reachable and still_due and accepted == 0:
            lost += 1
            if len(lost_examples) < 5:
                lost_examples.append(customer.meter_number)
    violations["notices_lost"] = lost
    violations["notices_doubled"] = doubled
    end = dt.datetime.fromtimestamp(sim.end_ts, tz=dt.UTC)
    violations["batches_not_started"] = Batch.objects.filter(
        campaign=campaign, status=Batch.Status.SCHEDULED, scheduled_at__lt=end
    ).count()
    details["notices_lost_examples"] = lost_examples

    # 2. The same codes on every channel and every re-delivery, and the ones stored.
    stored = {
        by_meter_id[meter_id]: tuple(codes)
        for meter_id, codes in KeyChangeSet.objects.filter(campaign=campaign).values_list("meter_id", "codes")
    }
    differ = 0
    for customer in customers:
        seen = set(customer.code_sets)
        if len(seen) > 1 or (seen and stored.get(customer) not in seen):
            differ += 1
    violations["codes_differ_between_channels"] = differ

    # 3. Every token issued was accepted when typed in order; buyers after the batch opened are on the new key.
    new_krn = campaign.to_krn
    not_accepted, stranded, not_accepted_examples = _credit_tokens_check(campaign, by_meter_id)
    violations["tokens_not_accepted"] = not_accepted
    details["tokens_not_accepted_examples"] = not_accepted_examples
    details["old_tokens_stranded_after_update"] = stranded
    violations["unexpected_meter_rejections"] = sim.invariants.unexpected_meter_rejections
    details["unexpected_rejection_traces"] = (
        {c.meter_number: c.trace for c in customers if c.unexpected_rejections}
        if sim.invariants.unexpected_meter_rejections
        else {}
    )
    if len(details["unexpected_rejection_traces"]) > 5:
        details["unexpected_rejection_traces"] = dict(list(details["unexpected_rejection_traces"].items())[:5])
    non_compliant_ids = set(Meter.objects.filter(status=Meter.Status.NON_COMPLIANT).values_list("pk", flat=True))
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT v.meter_id, b.id, max(v.created_at) FROM {IssuedToken._meta.db_table} t
            JOIN tokens_vend v ON v.id = t.vend_id
            JOIN {Enrollment._meta.db_table} e ON e.meter_id = v.meter_id AND e.campaign_id = %s
            JOIN {Batch._meta.db_table} b ON b.id = e.batch_id
            WHERE v.created_at >= b.scheduled_at AND b.status <> %s
            GROUP BY v.meter_id, b.id
            """,  # noqa: S608 - table names from the models
            [campaign.pk, Batch.Status.CANCELLED],
        )
        # Open from its scheduled time, but not before its enrollments were committed (the simulator
        # saw batch_schedule return): a vend in between could not see them.
        bought_after_open = sorted(
            {
                meter_id
                for meter_id, batch_id, last_vend in cursor.fetchall()
                if batch_id not in sim.batch_visible_at or last_vend >= sim.batch_visible_at[batch_id]
            }
        )
    stuck = [
        by_meter_id[m].meter_number
        for m in bought_after_open
        if by_meter_id[m].meter.krn != new_krn and m not in non_compliant_ids  # type: ignore[union-attr]
    ]
    violations["bought_after_open_not_on_new_key"] = len(stuck)
    details["not_on_new_key_examples"] = {number: sim.by_meter[number].trace for number in stuck[:5]}

    # 4. No credit token under the old key after a meter's rollover; TIDs strictly increasing per meter and key.
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            SELECT count(*) FROM {IssuedToken._meta.db_table} t
            JOIN {KeyChangeSet._meta.db_table} k ON k.meter_id = t.meter_id AND k.campaign_id = %s
            LEFT JOIN {Enrollment._meta.db_table} e ON e.meter_id = t.meter_id AND e.campaign_id = %s
            WHERE t.krn = k.from_krn AND t.issued_at > k.created_at
              AND (e.non_compliant_at IS NULL OR t.issued_at < e.non_compliant_at)
            """,  # noqa: S608
            [campaign.pk, campaign.pk],
        )
        violations["old_key_token_after_rollover"] = int(cursor.fetchone()[0])
        cursor.execute(
            f"""
            SELECT count(*) FROM (
                SELECT tid, lag(tid) OVER (PARTITION BY meter_id, sgc, krn ORDER BY issued_at, id) AS previous
                FROM {IssuedToken._meta.db_table}
            ) ordered WHERE previous IS NOT NULL AND tid <= previous
            """  # noqa: S608
        )
        violations["tid_not_increasing"] = int(cursor.fetchone()[0])

    # 5. The manager's numbers are the truth: the dashboard's funnel, the CSV exports, the counters' recounts.
    truth = truth_funnel(sim)
    funnel = dashboard.funnel(campaign.pk)
    funnel_diff = _differences(truth, funnel)
    violations["dashboard_funnel_vs_truth"] = sum(abs(int(a) - int(b or 0)) for a, b in funnel_diff.values())
    details["funnel"] = {"dashboard": funnel, "truth": truth}
    on_new_key = sum(1 for c in customers if c.meter is not None and c.meter.krn == new_krn)
    # Every customer who got the codes and could type them is on the new key; one whose only copy
    # was a pushed SMS left unread is rightly "codes issued, not typed" (who-is-left says so).
    unread = sum(1 for c in customers if c.got_codes and c.codes_unread and not c.non_compliant)
    compliant_with_codes = sum(1 for c in customers if c.got_codes and not c.non_compliant) - unread
    details["virtual_meters_on_new_key"] = on_new_key
    details["codes_delivered_unread"] = unread
    violations["virtual_meters_vs_codes_issued"] = abs(on_new_key - compliant_with_codes) + abs(
        funnel.get("codes_issued", 0) - sum(1 for c in customers if c.got_codes)
    )
    row = next((r for r in dashboard.export("campaigns") if r["id"] == str(campaign.pk)), {})
    csv_counters = {
        key: int(row.get(key, -1) or 0) for key in ("notified", "codes_issued", "confirmed", "non_compliant")
    }
    csv_counters["scheduled"] = int(row.get("enrolled", -1) or 0)
    csv_counters["failed"] = int(row.get("failed", -1) or 0)
    csv_diff = _differences({k: truth[k] for k in csv_counters}, csv_counters)
    per_meter = dashboard.export("enrollments", campaign=str(campaign.pk))
    state_mismatch = 0
    mismatch_examples: list[tuple[str, str, str | None]] = []
    seen_meters = set()
    for line in per_meter:
        owner = sim.by_meter.get(line["meter_number"])
        seen_meters.add(line["meter_number"])
        expected = expected_state(owner) if owner is not None else None
        if line["state"] != expected:
            state_mismatch += 1
            if len(mismatch_examples) < 5:
                mismatch_examples.append((line["meter_number"], line["state"], expected))
    # A customer the truth says was reached (notice, codes) must be in the export.
    missing = sum(1 for c in customers if (c.got_codes or c.notices) and c.meter_number not in seen_meters)
    violations["csv_export_vs_truth"] = (
        sum(abs(int(a) - int(b)) for a, b in csv_diff.values()) + state_mismatch + missing
    )
    details["csv"] = {
        "campaign_row_differences": csv_diff,
        "state_mismatch_examples": mismatch_examples,
        "missing": missing,
    }
    live, recount = campaign_counters_live(campaign=campaign), campaign_counters_recount(campaign=campaign)
    daily = {
        row["day"]: {k: row[k] for k in ("codes_issued", "confirmed", "done", "failed")}
        for row in CampaignDailyStat.objects.filter(campaign=campaign).values(
            "day", "codes_issued", "confirmed", "done", "failed"
        )
    }
    daily_recount = campaign_daily_recount(campaign=campaign)
    daily_diff = sum(
        abs(daily.get(day, {}).get(k, 0) - daily_recount.get(day, {}).get(k, 0))
        for day in set(daily) | set(daily_recount)
        for k in ("codes_issued", "confirmed", "done", "failed")
    )
    segments_live, segments_counted = segments_live_counts(), segments_recount()
    segment_diff = sum(1 for a, b in zip(segments_live, segments_counted, strict=True) if a != b)
    violations["counters_vs_recount"] = sum(abs(live[k] - recount[k]) for k in recount) + daily_diff + segment_diff
    details["counters"] = {"live": live, "recount": recount}

    # 6. No 5xx; no SMS with token digits to a phone other than the meter's.
    violations["server_errors"] = sim.invariants.server_errors
    violations["token_sms_to_other_phone"] = sim.invariants.token_sms_to_other_phone
    # And the play itself: retries answered byte for byte, nothing refused or shown that should not be.
    violations["replay_mismatch"] = sim.invariants.replay_mismatch
    violations["unexpected_api_refusals"] = sim.invariants.unexpected_api_refusals
    violations["ussd_unexpected_screens"] = sim.invariants.ussd_unexpected_screens
    violations["simulator_errors"] = sim.invariants.simulator_errors
    details["outbox"] = {
        row["status"]: row["n"] for row in Message.objects.values("status").annotate(n=Count("pk")).order_by()
    }
    details["sms_log"] = {
        row["status"]: row["n"] for row in MessageLog.objects.values("status").annotate(n=Count("pk")).order_by()
    }
    return violations, details


def faults_injected(sim: Simulation, *, wanted: dict[str, bool]) -> dict[str, int]:
    """A fault asked for but never injected is a failed rehearsal too (it proved nothing)."""
    missing = {}
    if wanted.get("kill_worker") and not sim.killed:
        missing["kill_worker_not_injected"] = 1
    if wanted.get("redis_restart") and not sim.redis_restarted:
        missing["redis_restart_not_injected"] = 1
    return missing
