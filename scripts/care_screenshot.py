# ruff: noqa: T201 - a developer script: progress output
"""Screenshots of the care desk with the demo data -> docs/care-front-door.png, docs/care-meter.png.

    make run &                      # the demo, on $PORT (8000 by default)
    .venv/bin/python scripts/care_screenshot.py [--url http://127.0.0.1:8000]

Signs in as the demo care agent in headless Chromium (1366 px wide, Africa/Nairobi), saves the
front door, then searches for the demo customer who mistyped update code 1 by her phone, as she
would say it, and saves her meter page.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PASSWORD = os.environ.get("DEMO_PASSWORD", "demo-pass-2024")
METER = "54000000023"  # care.demo: bought codes, typed update code 1 wrong, reported it on *977#


def spoken_phone(meter_number: str) -> str:
    """The meter's phone from the demo database, as a customer reads it out: "0797 678 177"."""
    with sqlite3.connect(ROOT / "var" / "db.sqlite3") as db:
        (phone,) = db.execute("SELECT phone FROM meters_meter WHERE meter_number = ?", [meter_number]).fetchone()
    return f"0{phone[4:7]} {phone[7:10]} {phone[10:]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=f"http://127.0.0.1:{os.environ.get('PORT') or '8000'}")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    from tests.browser import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM_PATH") or "/usr/bin/chromium", args=CHROMIUM_ARGS
        )
        page = browser.new_context(viewport={"width": 1366, "height": 820}, timezone_id="Africa/Nairobi").new_page()
        page.goto(f"{args.url}/admin/login/")
        page.fill("#id_username", "agent")
        page.fill("#id_password", PASSWORD)
        page.click("input[type=submit]")
        page.wait_for_selector("#find-customer")
        page.fill("#find-q", spoken_phone(METER))
        page.screenshot(path=str(ROOT / "docs" / "care-front-door.png"))
        page.click("#find-customer button[type=submit]")
        page.wait_for_selector("#status-line")
        page.screenshot(path=str(ROOT / "docs" / "care-meter.png"), full_page=True)
        browser.close()
    print("docs/care-front-door.png docs/care-meter.png")


if __name__ == "__main__":
    main()
