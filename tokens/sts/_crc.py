"""CRC-16/MODBUS as STS uses it (docs/sts-protocol.md §3.4).

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


def _field_by_loop(first50: int, currency: bool) -> int:
    """The STS CRC field the plain way: CRC over the 7 (8) bytes, then byte-swapped."""
    data = first50.to_bytes(7, "big") + (b"\x01" if currency else b"")
    crc = crc16_modbus(data)
    return (crc & 0xFF) << 8 | crc >> 8


def _affine_tables(currency: bool) -> tuple[int, tuple[tuple[int, ...], ...]]:
    """``(C, L)`` with field(first50) = C ^ L[0][byte 0] ^ ... ^ L[6][byte 6] (big-endian bytes).

    A CRC over a fixed-length message is affine in the message bits (XOR-linear plus a constant
    from the initial value), so each byte position contributes independently: seven lookups
    instead of seven dependent shift/XOR/lookup steps. The byte swap is linear too and included.
    """
    constant = _field_by_loop(0, currency)
    tables = tuple(
        tuple(_field_by_loop(value << (8 * (6 - position)), currency) ^ constant for value in range(256))
        for position in range(7)
    )
    return constant, tables


_PLAIN = _affine_tables(currency=False)
_CURRENCY = _affine_tables(currency=True)


def sts_crc_field(first50: int, currency: bool = False) -> int:
    """The 16-bit CRC field for the 50-bit value Class|SubClass|Data, already byte-swapped.

    Runs once per token built or checked, hence the table form (see :func:`_affine_tables`).
    ``currency`` selects CRC_C (class 0 subclasses 4..7): one extra 0x01 byte.
    """
    constant, (t0, t1, t2, t3, t4, t5, t6) = _CURRENCY if currency else _PLAIN
    b0, b1, b2, b3, b4, b5, b6 = first50.to_bytes(7, "big")
    return constant ^ t0[b0] ^ t1[b1] ^ t2[b2] ^ t3[b3] ^ t4[b4] ^ t5[b5] ^ t6[b6]
