"""Demo register: ~3,000 synthetic meters with valid Luhn numbers, loaded through the importer."""

from __future__ import annotations

import csv
import random
import tempfile
from pathlib import Path
from typing import TextIO

from tokens.sts import luhn_check_digit

from .services import HEADER, meter_import

DEMO_METERS = 3000
REGIONS = ("Nairobi", "Mombasa", "Kisumu", "Nakuru", "Eldoret", "Nyeri", "Machakos", "Kakamega")
FIRST_NAMES = (
    "Wanjiru", "Otieno", "Akinyi", "Kiprop", "Mutua", "Njeri", "Wafula", "Chebet", "Kamau", "Atieno",
    "Mwangi", "Nafula", "Kiptoo", "Wambui", "Omondi", "Jepkemboi", "Muthoni", "Barasa", "Nyambura", "Kilonzo",
)  # fmt: skip
SURNAMES = (
    "Kamau", "Odhiambo", "Achieng", "Kibet", "Musyoka", "Wambui", "Wekesa", "Cherono", "Njoroge", "Ouma",
    "Maina", "Makokha", "Rotich", "Gathoni", "Owino", "Kosgei", "Karanja", "Simiyu", "Wairimu", "Mutiso",
)  # fmt: skip


def demo_meter_number(index: int) -> str:
    """11-digit DRN: manufacturer code 54, an 8-digit serial and the Luhn check digit."""
    partial = f"54{index:08d}"
    return partial + str(luhn_check_digit(partial))


def demo_rows(count: int = DEMO_METERS) -> list[list[str]]:
    rng = random.Random(2024)  # the same demo data on every machine
    rows = []
    for index in range(1, count + 1):
        rows.append(
            [
                demo_meter_number(index),
                "600675",
                "1",
                "1",
                "2",
                "07",
                "02",
                "1993",
                "255",
                f"{rng.randrange(10**9, 10**10)}",
                f"{rng.choice(FIRST_NAMES)} {rng.choice(SURNAMES)}",
                f"+2547{rng.randrange(10**8):08d}",
                REGIONS[index % len(REGIONS)],
            ]
        )
    return rows


def seed(stdout: TextIO) -> None:

    with tempfile.TemporaryDirectory(prefix="kplc-demo-") as tmp:
        path = Path(tmp) / "demo-meters.csv"
        with open(path, "w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(HEADER)
            writer.writerows(demo_rows())
        result = meter_import(path=path, actor_label="seed_demo")
    stdout.write(f"Demo meters: {result.inserted} inserted, {result.updated} updated ({len(REGIONS)} regions).")
