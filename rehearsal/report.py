"""The rehearsal's output: report.json, curve.csv (one row per simulated day) and curve.png."""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .simulation import Simulation, percentile

KPLC_METERS = 7_400_000
# Kenya Power's published progress of "Update Token Meter Yako" (millions of meters updated; scheduled).
KPLC_LAUNCH = dt.date(2024, 6, 12)
KPLC_DEADLINE = dt.date(2024, 8, 31)
KPLC_UPDATED = (
    (dt.date(2024, 6, 12), 0.0),
    (dt.date(2024, 7, 3), 2.0),
    (dt.date(2024, 7, 15), 4.2),
    (dt.date(2024, 8, 21), 5.64),
)
KPLC_SCHEDULED = ((dt.date(2024, 7, 15), 7.2), (dt.date(2024, 8, 21), 7.4))


def kplc_updated_scaled(day: dt.date, meters: int) -> float | None:
    """KPLC's updated count on `day`, interpolated between the published points and scaled to `meters`."""
    for (d0, v0), (d1, v1) in zip(KPLC_UPDATED, KPLC_UPDATED[1:], strict=False):
        if d0 <= day <= d1:
            share = (day - d0).days / max((d1 - d0).days, 1)
            return round((v0 + share * (v1 - v0)) * 1e6 * meters / KPLC_METERS, 1)
    return None


def daily_rows(sim: Simulation) -> list[dict[str, Any]]:
    rows = []
    cumulative = {"scheduled": 0, "got_codes": 0, "on_new_key": 0, "confirmed": 0, "flagged": 0}
    first = dt.datetime.fromtimestamp(sim.start_ts, tz=dt.UTC)
    start_day = sim.day_of(sim.start_ts)
    del first
    for offset in range(sim.days):
        day = start_day + dt.timedelta(days=offset)
        stats = sim.days_stats.get(day)
        if stats is None:
            from .simulation import DayStats

            stats = DayStats()
        for key in cumulative:
            cumulative[key] += getattr(stats, key)
        p50, p99 = percentile(stats.vend_latencies, 0.5), percentile(stats.vend_latencies, 0.99)
        peak_hour = max((n for (d, _), n in sim.hour_vends.items() if d == day), default=0)
        rows.append(
            {
                "day": day.isoformat(),
                "scheduled_total": cumulative["scheduled"],
                "notices": stats.notices,
                "reminders": stats.reminders,
                "sms": stats.sms,
                "vends": stats.vends,
                "vends_with_codes": stats.vends_with_codes,
                "peak_hour_vends": peak_hour,
                "vend_p50_ms": round(p50 * 1000, 1) if p50 is not None else "",
                "vend_p99_ms": round(p99 * 1000, 1) if p99 is not None else "",
                "ussd_sessions": stats.ussd_sessions,
                "codes_issued_total": cumulative["got_codes"],
                "on_new_key_total": cumulative["on_new_key"],
                "confirmed_total": cumulative["confirmed"],
                "field_visits_total": cumulative["flagged"],
                "dashboard_done": stats.system_done if stats.system_done is not None else "",
                "lag_max_s": round(stats.lag_max, 1),
                "kplc_updated_scaled": kplc_updated_scaled(day, len(sim.customers)) or "",
            }
        )
    return rows


def capacity_at_kplc(sim: Simulation, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What this run's load says the system needs at Kenya Power's 7.4 M meters (scaled linearly:
    the same behaviour, 7.4 M / N times as many customers)."""
    scale = KPLC_METERS / max(len(sim.customers), 1)
    peak_hour = max(sim.hour_vends.values(), default=0)
    peak_day = max(rows, key=lambda row: row["vends"], default=None)
    peak_notices = max((row["notices"] for row in rows), default=0)
    peak_sms = max((row["sms"] for row in rows), default=0)
    purchase_scale = sim.behaviour.purchase_scale or 1.0
    return {
        "scale": round(scale, 2),
        "peak_vends_per_second": round(peak_hour * scale / 3600, 1),
        # A run with --purchase-scale s bought s times as often as the default behaviour: vends at
        # the default rate are 1/s times these (notices do not depend on it).
        "purchase_scale": purchase_scale,
        "peak_vends_per_second_at_default_purchase_rate": round(peak_hour * scale / 3600 / purchase_scale, 1),
        "peak_hour_vends": round(peak_hour * scale),
        "peak_day_vends": round((peak_day or {}).get("vends", 0) * scale),
        "peak_day": (peak_day or {}).get("day"),
        "notices_per_day_peak": round(peak_notices * scale),
        "sms_per_day_peak": round(peak_sms * scale),
        "sms_per_second_peak_day_average": round(peak_sms * scale / 86400, 1),
    }


def write_outputs(out: Path, report: dict[str, Any], rows: Sequence[dict[str, Any]], meters: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    with (out / "curve.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]) if rows else ["day"])
        writer.writeheader()
        writer.writerows(rows)
    curve_png(out / "curve.png", rows, meters, title=report.get("title", ""))


def curve_png(path: Path, rows: Sequence[dict[str, Any]], meters: int, *, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display: render straight to the file
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    days = [dt.date.fromisoformat(row["day"]) for row in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 7.5), sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    top.plot(
        days,
        [row["on_new_key_total"] for row in rows],
        color="#1b7837",
        lw=2.2,
        label="on the new key (virtual meters)",
    )
    top.plot(
        days,
        [row["dashboard_done"] if row["dashboard_done"] != "" else None for row in rows],
        color="#5aae61",
        lw=1.2,
        ls="--",
        label="dashboard: updated (codes issued, confirmed or field visit)",
    )
    top.plot(days, [row["scheduled_total"] for row in rows], color="#999999", lw=1.2, label="scheduled")
    kplc_days = [d for d, _ in KPLC_UPDATED]
    kplc_values = [v * 1e6 * meters / KPLC_METERS for _, v in KPLC_UPDATED]
    top.plot(
        kplc_days,
        kplc_values,
        color="#c51b7d",
        marker="o",
        lw=1.5,
        label=f"Kenya Power published, scaled to {meters:,}",
    )
    top.plot(
        [d for d, _ in KPLC_SCHEDULED],
        [v * 1e6 * meters / KPLC_METERS for _, v in KPLC_SCHEDULED],
        color="#de77ae",
        marker="s",
        ls=":",
        label="Kenya Power scheduled, scaled",
    )
    top.axvline(KPLC_DEADLINE, color="#444444", ls="-.", lw=1)
    top.text(KPLC_DEADLINE, meters * 0.02, " deadline 31 Aug", fontsize=8, rotation=90, va="bottom")
    top.set_ylabel("meters (cumulative)")
    top.set_ylim(0, meters * 1.05)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    top.set_title(title or f"Campaign rehearsal: {meters:,} customers")
    bottom.bar(days, [row["vends"] for row in rows], color="#4393c3", label="vends per simulated day")
    bottom.set_ylabel("vends per day")
    latency = bottom.twinx()
    latency.plot(
        days,
        [row["vend_p99_ms"] if row["vend_p99_ms"] != "" else None for row in rows],
        color="#d6604d",
        marker=".",
        lw=1.2,
        label="vend p99 latency (ms)",
    )
    latency.set_ylabel("p99 ms")
    handles = bottom.get_legend_handles_labels()[0] + latency.get_legend_handles_labels()[0]
    bottom.legend(handles, [h.get_label() for h in handles], loc="upper right", fontsize=8)
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%d %b"))
    bottom.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
