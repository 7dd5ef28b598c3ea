"""The simulated population: customers, their meters (register rows and virtual meters holding the
real decoder keys) and how each behaves, all drawn from one seed.

Defaults, and why (every share can be changed with `Behaviour`):

- Regions: KPLC's prepaid customers are concentrated around Nairobi; the shares below follow the
  utility's regional customer counts roughly (Nairobi and its environs about a third, then the
  Coast, Central and Mt Kenya, the Rift and Western). Two supply groups split them.
- Purchase frequency: a spread from several times a week (small daily buyers) to rarely, and some
  who do not buy at all during the campaign (vacant premises, large credit left). The mixture is
  set by hand from KPLC's published figures: with the share of customers who buy soon after
  their notice, about half of the scheduled meters should be updated within two weeks of their
  notice and three quarters after seven weeks (a back-of-envelope fit, not yet checked by a full run).
- Channels: mobile money (tokens reach the customer by SMS only, as with M-Pesa), banks and agents
  (the receipt shows them; the SMS follows).
- Faults in people: invalid or blacklisted phones (the gateway answers 403/406), phones whose SMS
  are never delivered (the report says Failed), customers who lose the SMS and fetch the codes on
  *977#, who type the credit token first, who confirm on *977#, and meters that refuse the codes.
"""

from __future__ import annotations

import csv
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tokens.sts import (
    DecodedToken,
    DecoderKeyRequest,
    EntryResult,
    RejectReason,
    VirtualMeter,
    derive_decoder_keys,
    luhn_check_digit,
    pan_from_meter_number,
)

T = TypeVar("T")

REGIONS: tuple[tuple[str, float, str], ...] = (
    # region, share of customers, supply group
    ("Nairobi", 0.34, "600675"),
    ("Coast", 0.12, "600727"),
    ("Central", 0.12, "600675"),
    ("Mt Kenya", 0.10, "600675"),
    ("North Rift", 0.09, "600727"),
    ("Central Rift", 0.08, "600727"),
    ("West Kenya", 0.09, "600727"),
    ("South Nyanza", 0.06, "600727"),
)
SUPPLY_GROUPS = tuple(sorted({sgc for _, _, sgc in REGIONS}))
FIRST_NAMES = ("Wanjiru", "Otieno", "Achieng", "Kamau", "Mwangi", "Njeri", "Kiptoo", "Chebet", "Omondi", "Amina")
LAST_NAMES = ("Kariuki", "Odhiambo", "Mutua", "Wambui", "Kimani", "Ruto", "Hassan", "Nyaga", "O\u2019Brien", "Were")


@dataclass(frozen=True)
class Behaviour:
    """Shares and rates the population is drawn with (see the module docstring for the reasons)."""

    # (mean days between purchases, share of customers); None: no purchase during the campaign.
    purchase_intervals: tuple[tuple[float | None, float], ...] = (
        (3.5, 0.03),
        (7.0, 0.07),
        (30.0, 0.25),
        (60.0, 0.35),
        (180.0, 0.18),
        (None, 0.12),
    )
    # Multiplies every purchase rate, and the share who buy soon after their notice: a what-if for
    # busier or quieter buying (and a way to fit a large population into a shared machine's time).
    purchase_scale: float = 1.0
    responds_to_notice: float = 0.35  # buys within a couple of days of the notice
    notice_response_mean_days: float = 1.5
    # Issue 15's reminders, an assumption of the model (no KPLC figure): a reminder read makes this
    # share of its readers buy soon (as a notice does), or fetch on *977# the codes they hold untyped.
    responds_to_reminder: float = 0.25
    channels: tuple[tuple[str, float], ...] = (("mobile_money", 0.6), ("bank", 0.25), ("agent", 0.15))
    invalid_phone: float = 0.01  # the gateway answers 403 InvalidPhoneNumber
    blacklisted_phone: float = 0.01  # 406 UserInBlacklist
    undelivered_phone: float = 0.02  # accepted, then the report says Failed (AbsentSubscriber)
    loses_sms: float = 0.05  # deletes or never sees the SMS: fetches codes and token on *977#
    wrong_order: float = 0.08  # types the credit token before the codes
    confirms_on_ussd: float = 0.3
    non_compliant_meter: float = 0.01  # the meter refuses the codes: a field visit
    partner_retry: float = 0.03  # the partner's call times out and it retries with the same reference
    partner_double_submit: float = 0.005  # two identical requests at once (a double click)

    def mean_purchases(self, days: float) -> float:
        """Expected purchases per customer in `days` (the load a rehearsal plans for). A customer who
        responds to the notice buys earlier, not more often: the response replaces the next purchase."""
        return (
            sum(share * days / interval for interval, share in self.purchase_intervals if interval)
            * self.purchase_scale
        )


class RefusingMeter(VirtualMeter):
    """A meter whose firmware cannot take key change tokens (KPLC's "non-compliant" meters): it
    keeps its old key, so the credit token under the new key fails too."""

    def _key_change(self, decoded: DecodedToken) -> EntryResult:
        return EntryResult(False, RejectReason.UNSUPPORTED, decoded, "this meter cannot take key change tokens")


@dataclass(eq=False)  # a person: equal only to themself, and hashable
class Customer:
    index: int
    meter_number: str
    phone: str
    region: str
    sgc: str
    name: str
    channel: str
    interval_days: float | None
    phone_fate: str  # ok, invalid, blacklisted, undelivered
    loses_sms: bool
    wrong_order: bool
    confirms: bool
    responds_to_notice: bool
    non_compliant: bool
    meter: VirtualMeter | None = None
    purchase_generation: int = 0  # a planned purchase with an older number was replaced
    # What happened to the customer (the ground truth the invariants compare with).
    typed: set[str] = field(default_factory=set)  # digits the meter accepted
    stranded: set[str] = field(default_factory=set)  # old-key tokens that arrived after the update
    code_sets: list[tuple[str, ...]] = field(default_factory=list)  # every set of codes seen, any channel
    notices: int = 0
    reminders: int = 0
    got_codes: bool = False
    # The codes reached the phone only in an SMS the customer never read (a codes push: no receipt
    # to type them from): issued, rightly, yet not typed until the next purchase brings them again.
    codes_unread: bool = False
    confirmed: bool = False
    reported_rejection: bool = False
    flagged: bool = False
    bought_after_open: bool = False
    purchases: int = 0
    unexpected_rejections: int = 0
    expected_rejections: int = 0
    trace: list[str] = field(default_factory=list)  # what the customer did, for the report's examples

    def note(self, what: str) -> None:
        if len(self.trace) < 40:
            self.trace.append(what)

    @property
    def reachable(self) -> bool:
        return self.phone_fate in ("ok", "undelivered")


def meter_number_for(index: int) -> str:
    partial = f"54{index:08d}"
    return partial + str(luhn_check_digit(partial))


def _pick(rng: random.Random, options: Sequence[tuple[T, float]]) -> T:
    roll, total = rng.random(), 0.0
    for value, share in options:
        total += share
        if roll < total:
            return value
    return options[-1][0]


def customers_draw(count: int, *, seed: int, behaviour: Behaviour) -> list[Customer]:
    rng = random.Random(seed)
    regions = [((region, sgc), share) for region, share, sgc in REGIONS]
    customers = []
    for index in range(count):
        region, sgc = _pick(rng, regions)
        roll = rng.random()
        fate = (
            "invalid"
            if roll < behaviour.invalid_phone
            else "blacklisted"
            if roll < behaviour.invalid_phone + behaviour.blacklisted_phone
            else "undelivered"
            if roll < behaviour.invalid_phone + behaviour.blacklisted_phone + behaviour.undelivered_phone
            else "ok"
        )
        channel = _pick(rng, behaviour.channels)
        if fate in ("invalid", "blacklisted"):
            channel = "bank" if channel == "mobile_money" else channel  # no SMS: the receipt is the only way
        customers.append(
            Customer(
                index=index,
                meter_number=meter_number_for(index),
                phone=f"+2547{index:08d}",
                region=region,
                sgc=sgc,
                name=f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}",
                channel=channel,
                interval_days=_pick(rng, behaviour.purchase_intervals),
                phone_fate=fate,
                loses_sms=rng.random() < behaviour.loses_sms or fate == "undelivered",
                wrong_order=rng.random() < behaviour.wrong_order,
                confirms=rng.random() < behaviour.confirms_on_ussd,
                responds_to_notice=rng.random() < behaviour.responds_to_notice * min(behaviour.purchase_scale, 1.0),
                non_compliant=rng.random() < behaviour.non_compliant_meter,
            )
        )
    return customers


REGISTER_HEADER = "meter_number,sgc,ti,krn,kt,ea,dkga,base_date,ken,account_number,customer_name,phone,region".split(
    ","
)
ACCOUNT_PREFIX = "REH"  # marks rows a rehearsal made: a database with any other meter holds a real register


def register_write(customers: Sequence[Customer], path: Path) -> None:
    """The utility's register export for the population (imported through the real import)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(REGISTER_HEADER)
        for c in customers:
            writer.writerow(
                [c.meter_number, c.sgc, "01", "1", "2", "07", "02", "1993", "255", f"{ACCOUNT_PREFIX}{c.index:08d}",
                 c.name, c.phone, c.region]
            )  # fmt: skip


def vending_keys_draw(seed: int) -> dict[tuple[str, int], bytes]:
    """Odd-parity DES vending keys per supply group, for the old (KRN 1) and new (KRN 2) revision."""
    rng = random.Random(seed * 7919 + 17)
    keys = {}
    for sgc in SUPPLY_GROUPS:
        for krn in (1, 2):
            key = bytearray()
            for _ in range(8):
                byte = rng.randrange(256) & 0xFE
                key.append(byte | (bin(byte).count("1") % 2 == 0))
            keys[(sgc, krn)] = bytes(key)
    return keys


def virtual_meters_make(customers: Sequence[Customer], keys: dict[tuple[str, int], bytes]) -> None:
    """Give each customer the meter on the wall: its real decoder key, derived from the old vending key."""
    requests = [
        DecoderKeyRequest(
            dkga="02",
            vending_key=keys[(c.sgc, 1)],
            pan=pan_from_meter_number(c.meter_number),
            sgc=c.sgc,
            ti=1,
            krn=1,
            kt=2,
            base_date=1993,
        )
        for c in customers
    ]
    for customer, decoder_key in zip(customers, derive_decoder_keys(requests), strict=True):
        kind = RefusingMeter if customer.non_compliant else VirtualMeter
        customer.meter = kind(decoder_key=decoder_key, krn=1, kt=2, ti=1, base_date=1993, sgc=customer.sgc)


def gateway_numbers(customers: Sequence[Customer]) -> dict[str, dict[str, int] | dict[str, str]]:
    """What the gateway knows about the numbers: their status codes and failing delivery reports."""
    status = {
        c.phone: 403 if c.phone_fate == "invalid" else 406
        for c in customers
        if c.phone_fate in ("invalid", "blacklisted")
    }
    failures = {c.phone: "AbsentSubscriber" for c in customers if c.phone_fate == "undelivered"}
    return {"number_status": status, "dlr_failures": failures}
