"""numba kernels for DVID's compressed label block (:mod:`dvidql.codec.labelblock`).

numba is the optional ``fast`` extra: labelblock imports this module at its first use when
numba is installed, and keeps its numpy code as the fallback. The numpy decoder needs several
passes over every voxel (unpack bits, gather, transpose); the kernel reads each voxel's bits
and writes its label in one pass. Reading the labels at a few points costs numpy a few dozen
calls on tiny arrays whatever their number; its kernel is one call. The encoder's numpy bit
packing spends a byte on every bit first; its kernel does not. Kernels are cached on disk (no
recompiling at every start-up) and release the GIL, so worker threads code blocks in parallel.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["decode_into", "pack_values", "palette_indices_at"]

SUB = 8  # sub-block edge, as in labelblock


@numba.njit(cache=True, nogil=True)
def decode_into(out: np.ndarray, stream: np.ndarray, ns: np.ndarray, indices: np.ndarray,
                labels: np.ndarray) -> tuple[int, bool]:
    """Fill the (z, y, x) uint64 ``out`` from a block's parts, as labelblock's ``_layout``
    checked them (sizes consistent, every count at most 512): packed values ``stream``, label
    counts ``ns``, index lists ``indices`` into the palette ``labels``.

    Returns the largest palette index and whether some voxel's value is beyond its sub-block's
    labels, for the caller to raise the numpy decoder's errors, in its order; ``out`` is
    complete only when neither is wrong."""
    top = 0
    for i in range(indices.size):
        top = max(top, indices[i])
    if top >= labels.size:
        return top, False
    table = np.empty(SUB**3, np.uint64)  # this sub-block's labels
    gz, gy, gx = out.shape[0] // SUB, out.shape[1] // SUB, out.shape[2] // SUB
    first = 0  # this sub-block's list in indices
    at = 0  # the next row's first byte in stream
    s = 0
    for sz in range(gz):
        for sy in range(gy):
            for sx in range(gx):
                count = ns[s]
                s += 1
                for i in range(count):
                    table[i] = labels[indices[first + i]]
                first += count
                z0, y0, x0 = sz * SUB, sy * SUB, sx * SUB
                if count <= 1:
                    label = table[0] if count else np.uint64(0)
                    out[z0:z0 + SUB, y0:y0 + SUB, x0:x0 + SUB] = label
                    continue
                width = 1
                while (1 << width) < count:
                    width += 1
                mask = (1 << width) - 1
                # A row of 8 voxels (x) is `width` whole bytes. Its first 8 bytes, at most,
                # hold all of its values but the last of a 9-bit row, which ends in byte 9.
                nbytes = min(width, SUB)
                whole = min(64 // width, SUB)
                bad = False
                for z in range(z0, z0 + SUB):
                    for y in range(y0, y0 + SUB):
                        word = np.int64(0)
                        for i in range(nbytes):
                            word = (word << 8) | stream[at + i]
                        for x in range(whole):
                            value = (word >> (8 * nbytes - (x + 1) * width)) & mask
                            bad |= value >= count
                            out[z, y, x0 + x] = table[value]
                        if whole < SUB:
                            value = ((word << 8) | stream[at + nbytes]) & mask
                            bad |= value >= count
                            out[z, y, x0 + SUB - 1] = table[value]
                        at += width
                if bad:  # values of up to 2^width - 1 stayed inside table
                    return top, True
    return top, False


@numba.njit(cache=True, nogil=True)
def pack_values(values: np.ndarray, widths: np.ndarray, stream: np.ndarray) -> None:
    """Pack each sub-block's values (a row of 512 in ``values``) MSB-first in ``widths`` bits
    into ``stream``, sub-block after sub-block; those of width 0 take no bytes."""
    at = 0
    for s in range(values.shape[0]):
        width = widths[s]
        bits = np.int64(0)  # the `held` bits not yet written
        held = 0
        for k in range(SUB**3 if width else 0):
            bits = (bits << width) | values[s, k]
            held += width
            while held >= 8:
                held -= 8
                stream[at] = (bits >> held) & 0xFF
                at += 1
            bits &= (1 << held) - 1


@numba.njit(cache=True, nogil=True)
def palette_indices_at(data: np.ndarray, values: int, ns: np.ndarray, before: np.ndarray,
                       widths: np.ndarray, indices: np.ndarray, points: np.ndarray, gy: int,
                       gx: int) -> tuple[np.ndarray, bool]:
    """The palette index of the voxel at each (z, y, x) row of ``points`` (-1 in sub-blocks
    without labels, which hold label 0), from a block's bytes ``data`` whose packed values
    start at byte ``values``, and the parts labelblock's ``_layout`` read and checked: label
    counts ``ns``, offsets ``before`` (index-list entries before each sub-block in the low 32
    bits, bit widths before it above) and ``widths``.

    Also returns whether some point's value is beyond its sub-block's labels; the indices are
    then incomplete, and the caller raises the numpy code's error."""
    found = np.empty(points.shape[0], np.int64)
    for i in range(points.shape[0]):
        z, y, x = points[i, 0], points[i, 1], points[i, 2]
        s = ((z >> 3) * gy + (y >> 3)) * gx + (x >> 3)
        count = ns[s]
        if count == 0:
            found[i] = -1
            continue
        width = widths[s]
        value = 0
        if width:
            # up to 9 bits from bit `bit & 7` of a byte lie in that byte and the next
            bit = ((before[s] >> 32) << 9) + (((z & 7) * SUB + (y & 7)) * SUB + (x & 7)) * width
            at = values + (bit >> 3)
            word = np.int64(data[at]) << 8
            if at + 1 < data.size:
                word |= data[at + 1]
            value = (word >> (16 - width - (bit & 7))) & ((1 << width) - 1)
        if value >= count:
            return found, True
        found[i] = indices[(before[s] & 0xFFFFFFFF) + value]
    return found, False
