"""Both rehearsal curves in one picture: without and with the endgame features (issue 15).

    python scripts/endgame_rehearsal_plot.py var/reh-base var/reh-endgame docs/endgame-rehearsal.png

Reads each run's curve.csv and report.json; plots the share of meters truly on the new key (the
virtual meters' ground truth) and the share with their codes issued, per simulated day. A model's
outcome: the customer's response to a reminder is an assumption (rehearsal.population.Behaviour).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _load(run: Path) -> tuple[list[dict[str, str]], dict]:
    with (run / "curve.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    return rows, json.loads((run / "report.json").read_text())


def main(base_dir: str, endgame_dir: str, out: str) -> None:
    fig, ax = plt.subplots(figsize=(9, 5), dpi=110)
    for path, label, colour in (
        (base_dir, "without", "#7f7f7f"),
        (endgame_dir, "with reminders + codes push", "#d62728"),
    ):
        rows, report = _load(Path(path))
        meters = report["parameters"]["meters"]
        days = list(range(1, len(rows) + 1))
        new_key = [100.0 * int(r["on_new_key_total"]) / meters for r in rows]
        codes = [100.0 * int(r["codes_issued_total"]) / meters for r in rows]
        scheduled = [100.0 * int(r["scheduled_total"]) / meters for r in rows]
        ax.plot(days, new_key, color=colour, linewidth=2.2, label=f"on the new key, {label}")
        ax.plot(days, codes, color=colour, linewidth=1.2, linestyle="--", label=f"codes issued, {label}")
        if label == "without":
            ax.plot(days, scheduled, color="#1f77b4", linewidth=1, linestyle=":", label="scheduled (same plan)")
    ax.set_xlabel("simulated day")
    ax.set_ylabel("% of the rehearsal's meters")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title("Campaign rehearsal with and without the endgame features (a model's outcome)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    sys.stdout.write(out + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
