"""Virtual STS meter. Work in progress."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class RejectReason(enum.Enum):
    """Why a virtual meter rejected a token."""

    CRC_MISMATCH = "crc_mismatch"
    USED = "used"
    OLD = "old"


@dataclass(frozen=True)
class EntryResult:
    accepted: bool
    reason: RejectReason | None = None


class VirtualMeter:
    """A software STS meter."""
