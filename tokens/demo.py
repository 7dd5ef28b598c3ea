"""Demo vending keys: random single-DES keys for the demo supply group, wrapped under the KEK.

Only check values are printed; the key bytes exist in memory just long enough to be wrapped.
"""

from __future__ import annotations

import secrets
from typing import TextIO

from .custody import vending_key_load

DEMO_SGC = "600675"
# (KRN, base date): the current key and the one the campaign re-keys meters to.
DEMO_KEYS = ((1, 1993), (2, 2014))


def random_des_key() -> bytes:
    """Eight random bytes with odd parity in each byte, as DES keys are written."""
    key = bytearray(secrets.token_bytes(8))
    for index, byte in enumerate(key):
        high = byte & 0xFE
        key[index] = high | ((bin(high).count("1") + 1) % 2)
    return bytes(key)


def seed(stdout: TextIO) -> None:
    for krn, base_date in DEMO_KEYS:
        vending_key = vending_key_load(
            sgc=DEMO_SGC, krn=krn, dkga="02", base_date=base_date, key=random_des_key(), actor_label="seed_demo"
        )
        stdout.write(
            f"Demo vending key SGC {vending_key.sgc} KRN {vending_key.krn} base date {base_date}: "
            f"check value {vending_key.check_value}"
        )
