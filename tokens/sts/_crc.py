"""CRC-16/MODBUS as STS uses it (reference.md section 2.4).

Polynomial 0x8005 reflected (0xA001), init 0xFFFF, no final XOR, over the 50 bits
Class|SubClass|Data left-padded to 7 bytes big-endian; currency tokens (CRC_C) append 0x01.
The result is stored byte-swapped in the low 16 bits of the block.
"""

from __future__ import annotations

__all__ = ["crc16_modbus", "sts_crc_field"]


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_modbus(data: bytes, crc: int = 0xFFFF) -> int:
    """Plain CRC-16/MODBUS (check value for b"123456789" is 0x4B37)."""
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def sts_crc_field(first50: int, *, currency: bool = False) -> int:
    """The 16-bit CRC field for the 50-bit value Class|SubClass|Data, already byte-swapped.

    Unrolled over the 7 big-endian bytes because it runs once per token built or checked.
    ``currency`` selects CRC_C (class 0 subclasses 4..7): one extra 0x01 byte.
    """
    t = _TABLE
    crc = 0x00FF ^ t[0xFF ^ (first50 >> 48 & 0xFF)]
    crc = (crc >> 8) ^ t[(crc ^ (first50 >> 40)) & 0xFF]
    crc = (crc >> 8) ^ t[(crc ^ (first50 >> 32)) & 0xFF]
    crc = (crc >> 8) ^ t[(crc ^ (first50 >> 24)) & 0xFF]
    crc = (crc >> 8) ^ t[(crc ^ (first50 >> 16)) & 0xFF]
    crc = (crc >> 8) ^ t[(crc ^ (first50 >> 8)) & 0xFF]
    crc = (crc >> 8) ^ t[(crc ^ first50) & 0xFF]
    if currency:
        crc = (crc >> 8) ^ t[(crc ^ 0x01) & 0xFF]
    return (crc & 0xFF) << 8 | crc >> 8
