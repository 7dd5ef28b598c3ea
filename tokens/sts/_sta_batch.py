"""Bitsliced EA07 (STA) encryption of many blocks at once, each under its own key.

Used by the batch API (``build_tokens``) for campaigns that re-key thousands of meters. The
per-token path (:class:`tokens.sts._sta.StaCipher`) costs ~6 us per block; this one ~1-2 us.

Bitslicing: for N blocks, ``plane[j]`` is an N-bit integer whose bit b is bit j of block b.
Python's big-int AND/XOR then process all N blocks in one operation each:

* the permutation (docs/sts-protocol.md §7.1, step 2) is free: it only renames planes;
* each S-box is evaluated as Boolean algebra from its algebraic normal form (ANF), computed from
  the tables at import time; SUB1 or SUB2 is chosen per block with the key plane as a mask:
  ``out = SUB1(a) ^ (sel & (SUB1 ^ SUB2)(a))``;
* the key rotation is free as well: round r's selector for nibble i is bit (4i + 3 - r) of
  K' = ROTR(~DK, 12), i.e. a fixed key plane.

Converting blocks to planes and back is a 64x64 bit-matrix transpose done on one big integer
(six delta swaps), plus strided memoryview copies; it costs about as much as the 16 rounds.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from ._sta import PRODUCTION, StaTables

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["encrypt_many"]

_MASK64 = (1 << 64) - 1
_LITTLE = sys.byteorder == "little"


def _anf(truth: Sequence[int]) -> list[int]:
    """Möbius transform: ANF coefficients (monomial masks u over 4 inputs) of a 4-input function."""
    coeffs = list(truth)
    for bit in (1, 2, 4, 8):
        for u in range(16):
            if u & bit:
                coeffs[u] ^= coeffs[u ^ bit]
    return [u for u in range(16) if coeffs[u]]


@lru_cache(maxsize=4)
def _sbox_program(tables: StaTables) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
    """For each output bit b: the monomials of SUB1 bit b, and of (SUB1 xor SUB2) bit b."""
    base = tuple(tuple(_anf([tables.sub1[x] >> b & 1 for x in range(16)])) for b in range(4))
    diff = tuple(tuple(_anf([(tables.sub1[x] ^ tables.sub2[x]) >> b & 1 for x in range(16)])) for b in range(4))
    return base, diff


@lru_cache(maxsize=8)
def _transpose_masks(matrices: int) -> tuple[tuple[int, int], ...]:
    """Delta-swap masks for transposing ``matrices`` consecutive 64x64 bit matrices.

    Row r of a matrix is 64-bit word r; element (r, c) is bit 64r + c. Step s swaps (r, c) and
    (r + s, c - s) for r & s == 0 and c & s != 0: they are 63s bits apart.
    """
    steps = []
    for s in (32, 16, 8, 4, 2, 1):
        pattern = 0
        for r in range(64):
            if not r & s:
                for c in range(64):
                    if c & s:
                        pattern |= 1 << (64 * r + c)
        mask = int.from_bytes(pattern.to_bytes(512, "little") * matrices, "little")
        steps.append((63 * s, mask))
    return tuple(steps)


def _transpose(value: int, matrices: int) -> int:
    for shift, mask in _transpose_masks(matrices):
        t = ((value >> shift) ^ value) & mask
        value ^= t ^ (t << shift)
    return value


def _words_to_planes(words: Sequence[int], matrices: int) -> list[int]:
    data = array("Q", words)
    data.extend([0] * (64 * matrices - len(data)))
    if not _LITTLE:
        data.byteswap()
    flipped = _transpose(int.from_bytes(data.tobytes(), "little"), matrices)
    rows = memoryview(flipped.to_bytes(512 * matrices, "little")).cast("Q")
    # plane j = word j of every matrix, in matrix order (bit 64q + c = bit j of block 64q + c)
    return [int.from_bytes(rows[j::64].tobytes(), "little") for j in range(64)]


def _planes_to_words(planes: Sequence[int], matrices: int, count: int) -> list[int]:
    raw = bytearray(512 * matrices)
    rows = memoryview(raw).cast("Q")
    for j, plane in enumerate(planes):
        rows[j::64] = memoryview(plane.to_bytes(8 * matrices, "little")).cast("Q")
    flipped = _transpose(int.from_bytes(raw, "little"), matrices)
    out = array("Q", flipped.to_bytes(512 * matrices, "little"))
    if not _LITTLE:
        out.byteswap()
    return out.tolist()[:count]


# An S-box layer in bitsliced form: four input planes, the key-selector plane, all-ones -> four output planes.
SboxProgram = Callable[[int, int, int, int, int, int], tuple[int, int, int, int]]


def _production_sbox(a0: int, a1: int, a2: int, a3: int, sel: int, ones: int) -> tuple[int, int, int, int]:
    """SUB1 (sel bit 0) or SUB2 (sel bit 1) of the production tables, as Boolean algebra.

    Straight-line form of the ANF that ``_sbox_program(PRODUCTION)`` computes (a test checks the
    two agree on every input); written out because the generic loop is 3x slower.
    """
    a01 = a0 & a1
    a02 = a0 & a2
    a03 = a0 & a3
    a12 = a1 & a2
    a13 = a1 & a3
    a23 = a2 & a3
    a012 = a01 & a2
    a013 = a01 & a3
    a023 = a0 & a23
    a123 = a1 & a23
    return (
        a1 ^ a02 ^ a12 ^ a3 ^ a03 ^ a13 ^ a013 ^ a23 ^ a123
        ^ (sel & (a1 ^ a01 ^ a2 ^ a12 ^ a03 ^ a13 ^ a23 ^ a023 ^ a123)),
        ones ^ a01 ^ a2 ^ a02 ^ a12 ^ a012 ^ a3 ^ a13 ^ a23 ^ a023 ^ a123
        ^ (sel & (ones ^ a1 ^ a02 ^ a12 ^ a012 ^ a03 ^ a13 ^ a013 ^ a23 ^ a123)),
        ones ^ a0 ^ a12 ^ a123 ^ (sel & (a1 ^ a02 ^ a12 ^ a3 ^ a13 ^ a023 ^ a123)),
        ones ^ a1 ^ a01 ^ a02 ^ a03 ^ a13 ^ a013 ^ a23 ^ a023 ^ (sel & (a2 ^ a02 ^ a12 ^ a012 ^ a013 ^ a23)),
    )  # fmt: skip


def _generic_sbox(tables: StaTables) -> SboxProgram:
    base, diff = _sbox_program(tables)

    def sbox(a0: int, a1: int, a2: int, a3: int, sel: int, ones: int) -> tuple[int, int, int, int]:
        a01 = a0 & a1
        a23 = a2 & a3
        mono = (
            ones, a0, a1, a01, a2, a0 & a2, a1 & a2, a01 & a2,
            a3, a0 & a3, a1 & a3, a01 & a3, a23, a0 & a23, a1 & a23, a01 & a23,
        )  # fmt: skip
        outs = []
        for b in range(4):
            out = 0
            for u in base[b]:
                out ^= mono[u]
            d = 0
            for u in diff[b]:
                d ^= mono[u]
            outs.append(out ^ (d & sel))
        return outs[0], outs[1], outs[2], outs[3]

    return sbox


def encrypt_many(blocks: Sequence[int], keys: Sequence[int], tables: StaTables = PRODUCTION) -> list[int]:
    """STA-encrypt ``blocks[i]`` under ``keys[i]`` (64-bit ints) for all i at once."""
    count = len(blocks)
    if count != len(keys):
        raise ValueError("one key per block")
    if count == 0:
        return []
    matrices = -(-count // 64)
    state = _words_to_planes(blocks, matrices)
    # K' = ROTR(~DK, 12) per block (§7.1, step 1)
    aligned = [((~k & _MASK64) >> 12 | (~k & 0xFFF) << 52) for k in keys]
    key_planes = _words_to_planes(aligned, matrices)
    ones = (1 << (64 * matrices)) - 1
    sbox: SboxProgram = _production_sbox if tables is PRODUCTION else _generic_sbox(tables)
    # where output bit b of nibble i goes: (PERM[4i], PERM[4i+1], PERM[4i+2], PERM[4i+3])
    targets = [tables.perm[4 * i : 4 * i + 4] for i in range(16)]
    for r in range(16):
        new_state = [0] * 64
        for i in range(16):
            # round r, nibble i: selector = bit 4i+3 of ROTL(K', r) = bit (4i+3-r) mod 64 of K'
            a0, a1, a2, a3 = state[4 * i : 4 * i + 4]
            o0, o1, o2, o3 = sbox(a0, a1, a2, a3, key_planes[(4 * i + 3 - r) % 64], ones)
            p0, p1, p2, p3 = targets[i]
            new_state[p0] = o0
            new_state[p1] = o1
            new_state[p2] = o2
            new_state[p3] = o3
        state = new_state
    return _planes_to_words(state, matrices, count)
