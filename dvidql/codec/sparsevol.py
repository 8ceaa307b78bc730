"""Sparse volumes of DVID (dvid-reference.md §4.4): ``rles``, ``srles`` and ``blocks``.

A run-length sparse volume is a list of runs along x, each ``int32 x, y, z, length`` (voxel
coordinates of the run's first voxel). ``rles`` prefixes the runs with a 12-byte header
(payload descriptor 0, 3 dimensions, run dimension 0 = x, voxel count left 0 as DVID does, run
count); ``srles`` is the bare runs, so it can be streamed. Runs are kept as an (n, 4) int32
array.

``blocks`` is a binary mask per block: a header ``uint32 gx, gy, gz`` (sub-blocks per block
edge) and ``uint64`` foreground label, then per block ``int32 x0, y0, z0`` (its first voxel)
and a flag, 0 all background, 1 all foreground, 2 mixed; a mixed block is followed by its
gx*gy*gz 8^3 sub-blocks (z, y, x order, x fastest), each a flag of the same meaning and, if
mixed, a 64-byte mask with one bit per voxel. The reference leaves the bit order open; DVID's
writer and reader (``PositionedBlock.WriteBinaryBlock`` and ``BinaryBlock.Read`` in
janelia-flyem/dvid ``datatype/common/labels/compressed.go``, through its ``bitMask`` table
0x01, 0x02, ... 0x80) number voxels z, y, x with x fastest and put voxel i in bit ``i % 8``
of byte ``i // 8`` counting from the least significant bit -- the opposite of the MSB-first
packing of the compressed label block.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from typing_extensions import Buffer

from dvidql.codec.labelblock import MAX_EDGE, SUB, SUB_VOXELS

__all__ = [
    "BlockRuns",
    "MaskBlock",
    "decode_blocks",
    "decode_rles",
    "decode_srles",
    "encode_blocks",
    "encode_rles",
    "encode_srles",
    "mask_runs",
]

MaskBlock = tuple[tuple[int, int, int], np.ndarray]  # (x0, y0, z0) and a (z, y, x) bool mask

_RLES_HEADER = struct.Struct("<BBBBII")  # descriptor, dimensions, run dimension, 0, voxels, runs
_RUN = 16
_BLOCKS_HEADER = struct.Struct("<IIIQ")  # gx, gy, gz, foreground label
_BLOCK_HEADER = 13  # int32 x0, y0, z0 and a flag
_MASK = SUB_VOXELS // 8  # bytes of a mixed sub-block's bit mask
_BACKGROUND, _FOREGROUND, _MIXED = 0, 1, 2


def mask_runs(mask: np.ndarray, offset: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """The x runs of a (z, y, x) boolean mask whose first voxel is at ``offset`` (x, y, z),
    in z, y, x order: an (n, 4) int32 array of x, y, z, length."""
    if mask.ndim != 3:
        raise ValueError(f"a sparse volume mask has 3 dimensions, not {mask.ndim}")
    padded = np.zeros((*mask.shape[:2], mask.shape[2] + 2), np.int8)
    padded[:, :, 1:-1] = mask.astype(bool)
    edges = np.diff(padded, axis=2)  # +1 where a run starts, -1 just past its end
    z, y, x = np.nonzero(edges > 0)
    ends = np.nonzero(edges < 0)[2]
    ox, oy, oz = offset
    return np.stack([x + ox, y + oy, z + oz, ends - x], axis=1).astype(np.int32)


class BlockRuns:
    """Runs cut at block boundaries and grouped by block, to paint one block's mask at a
    time (a split's runs may cover many blocks; their masks need not all exist at once)."""

    def __init__(self, runs: np.ndarray, block: tuple[int, int, int]) -> None:
        """``runs``: (n, 4) x, y, z, length; ``block``: the x, y, z block size."""
        runs = np.asarray(runs, np.int64).reshape(-1, 4)
        bx, by, bz = block
        self.shape = (bz, by, bx)
        x, y, z, length = runs.T
        first, last = x // bx, (x + length - 1) // bx
        pieces = last - first + 1
        which = np.repeat(np.arange(len(runs)), pieces)
        k = np.arange(len(which)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        cell = first[which] + k
        start = np.maximum(x[which], cell * bx)
        end = np.minimum(x[which] + length[which] - 1, cell * bx + bx - 1)
        keys = np.stack([cell, y[which] // by, z[which] // bz], axis=1)
        self.coords, inverse = np.unique(keys, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        self._bounds = np.searchsorted(inverse[order], np.arange(len(self.coords) + 1))
        local = np.stack([start - cell * bx, end - cell * bx, y[which] % by, z[which] % bz],
                         axis=1)
        self._local = local[order]

    def __len__(self) -> int:
        return len(self.coords)

    def mask(self, i: int) -> np.ndarray:
        """The (z, y, x) mask of block ``i`` (of ``coords``)."""
        part = self._local[self._bounds[i]:self._bounds[i + 1]]
        bz, by, bx = self.shape
        edges = np.zeros((bz, by, bx + 1), np.int32)
        np.add.at(edges, (part[:, 3], part[:, 2], part[:, 0]), 1)
        np.add.at(edges, (part[:, 3], part[:, 2], part[:, 1] + 1), -1)
        return np.cumsum(edges, axis=2)[:, :, :bx] > 0


def encode_srles(runs: np.ndarray) -> bytes:
    return np.ascontiguousarray(runs, "<i4").tobytes()


def decode_srles(data: Buffer) -> np.ndarray:
    size = memoryview(data).nbytes
    if size % _RUN:
        raise ValueError(f"streamed runs of {size} bytes are not a whole number of "
                         f"{_RUN}-byte runs")
    return _runs(np.frombuffer(data, "<i4").reshape(-1, 4))


def encode_rles(runs: np.ndarray) -> bytes:
    return _RLES_HEADER.pack(0, 3, 0, 0, 0, len(runs)) + encode_srles(runs)


def decode_rles(data: Buffer) -> np.ndarray:
    """The runs of an ``rles`` body; only binary (descriptor 0) x-run volumes exist in
    practice, so anything else is refused."""
    size = memoryview(data).nbytes
    if size < _RLES_HEADER.size:
        raise ValueError(f"sparse volume of {size} bytes is shorter than its "
                         f"{_RLES_HEADER.size}-byte header")
    descriptor, dims, run_dim, _, _, count = _RLES_HEADER.unpack_from(data)
    if (descriptor, dims, run_dim) != (0, 3, 0):
        raise ValueError(f"sparse volume has payload descriptor {descriptor}, {dims} "
                         f"dimensions and run dimension {run_dim}; only 0, 3 and 0 are read")
    if size != _RLES_HEADER.size + _RUN * count:
        raise ValueError(f"sparse volume of {count} runs needs "
                         f"{_RLES_HEADER.size + _RUN * count} bytes, not {size}")
    return _runs(np.frombuffer(data, "<i4", 4 * count, _RLES_HEADER.size).reshape(-1, 4))


def _runs(runs: np.ndarray) -> np.ndarray:
    if (runs[:, 3] <= 0).any():
        raise ValueError("sparse volume has a run of length 0 or less")
    return runs.astype(np.int32)


def encode_blocks(label: int, blocks: Sequence[MaskBlock],
                  shape: tuple[int, int, int] = (64, 64, 64)) -> bytes:
    """The ``blocks`` body of masks of one (z, y, x) ``shape``, flagging solid blocks and
    sub-blocks so only mixed sub-blocks carry bits. The header is written even without blocks
    (DVID answers 404 there instead), so an empty volume round-trips."""
    gz, gy, gx = _blocks_grid(shape)
    if not 0 <= label < 1 << 64:
        raise ValueError(f"foreground label {label} is not a uint64")
    if any(np.shape(mask) != tuple(shape) for _, mask in blocks):
        raise ValueError(f"every block mask must have the shape {tuple(shape)}")
    n, m = len(blocks), gz * gy * gx
    offsets = np.array([offset for offset, _ in blocks], np.int64).reshape(n, 3)
    if ((offsets < -(1 << 31)) | (offsets >= 1 << 31)).any():
        raise ValueError("block offsets must fit in int32")
    masks = np.array([mask for _, mask in blocks], bool).reshape(n, *shape)
    sub = (masks.reshape(n, gz, SUB, gy, SUB, gx, SUB).transpose(0, 1, 3, 5, 2, 4, 6)
           .reshape(n, m, SUB_VOXELS))
    counts = np.count_nonzero(sub, axis=2)
    sub_flags = np.full((n, m), _MIXED, np.uint8)
    sub_flags[counts == 0] = _BACKGROUND
    sub_flags[counts == SUB_VOXELS] = _FOREGROUND
    flags = np.full(n, _MIXED, np.uint8)
    flags[(sub_flags == _BACKGROUND).all(axis=1)] = _BACKGROUND
    flags[(sub_flags == _FOREGROUND).all(axis=1)] = _FOREGROUND
    # byte sizes of the sub-block records: none unless the block is mixed
    records = np.where(flags[:, None] == _MIXED, 1 + _MASK * (sub_flags == _MIXED), 0)
    sizes = _BLOCK_HEADER + records.sum(axis=1)
    starts = _BLOCKS_HEADER.size + np.cumsum(sizes) - sizes
    out = np.zeros(_BLOCKS_HEADER.size + int(sizes.sum()), np.uint8)
    out[:_BLOCKS_HEADER.size] = np.frombuffer(_BLOCKS_HEADER.pack(gx, gy, gz, label), np.uint8)
    out[starts[:, None] + np.arange(12)] = offsets.astype("<i4").view(np.uint8).reshape(n, 12)
    out[starts + 12] = flags
    sub_starts = (starts + _BLOCK_HEADER)[:, None] + np.cumsum(records, axis=1) - records
    written = records > 0
    out[sub_starts[written]] = sub_flags[written]
    bits = sub_flags == _MIXED  # only in mixed blocks
    out[(sub_starts[bits] + 1)[:, None] + np.arange(_MASK)] = np.packbits(
        sub[bits], axis=1, bitorder="little")
    return out.tobytes()


def decode_blocks(data: Buffer) -> tuple[int, list[MaskBlock]]:
    """The foreground label and the blocks of a ``blocks`` body, each mask a view of one
    (n, z, y, x) array. Records have variable sizes, so finding them walks the flags (one
    step per block and per sub-block of a mixed block); the voxels are filled in numpy."""
    raw = bytes(data)
    size = len(raw)
    if size < _BLOCKS_HEADER.size:
        raise ValueError(f"binary blocks of {size} bytes are shorter than their "
                         f"{_BLOCKS_HEADER.size}-byte header")
    gx, gy, gz, label = _BLOCKS_HEADER.unpack_from(raw)
    shape = (SUB * gz, SUB * gy, SUB * gx)
    _blocks_grid(shape, (gx, gy, gz))
    m = gx * gy * gz
    starts: list[int] = []
    flags = bytearray()
    sub_flags = bytearray()
    mask_starts: list[int] = []
    pos = _BLOCKS_HEADER.size
    while pos < size:
        if pos + _BLOCK_HEADER > size:
            raise ValueError(f"binary block at byte {pos} is truncated: its header needs "
                             f"{_BLOCK_HEADER} bytes, {size - pos} are left")
        flag = raw[pos + 12]
        if flag > _MIXED:
            raise ValueError(f"binary block at byte {pos} has flag {flag}, not 0, 1 or 2")
        starts.append(pos)
        flags.append(flag)
        pos += _BLOCK_HEADER
        if flag != _MIXED:
            continue
        for _ in range(m):
            if pos >= size:
                raise ValueError(f"mixed binary block at byte {starts[-1]} is truncated: "
                                 f"its {m} sub-blocks end past the {size} bytes")
            sub_flag = raw[pos]
            sub_flags.append(sub_flag)
            if sub_flag == _MIXED:
                mask_starts.append(pos + 1)
                pos += 1 + _MASK
            elif sub_flag > _MIXED:
                raise ValueError(f"sub-block at byte {pos} has flag {sub_flag}, "
                                 f"not 0, 1 or 2")
            else:
                pos += 1
        if pos > size:
            raise ValueError(f"mixed binary block at byte {starts[-1]} is truncated: "
                             f"its last sub-block mask ends past the {size} bytes")
    arr = np.frombuffer(raw, np.uint8)
    n = len(starts)
    offsets = arr[np.array(starts, np.int64).reshape(n, 1) + np.arange(12)].view("<i4")
    block_flags = np.frombuffer(flags, np.uint8)
    subs = np.repeat(block_flags[:, None], m, axis=1)  # a solid block's sub-blocks are alike
    subs[block_flags == _MIXED] = np.frombuffer(sub_flags, np.uint8).reshape(-1, m)
    voxels = np.repeat((subs == _FOREGROUND)[..., None], SUB_VOXELS, axis=2)
    voxels[subs == _MIXED] = np.unpackbits(
        arr[np.array(mask_starts, np.int64).reshape(-1, 1) + np.arange(_MASK)],
        axis=1, bitorder="little").view(bool)
    masks = (voxels.reshape(n, gz, gy, gx, SUB, SUB, SUB).transpose(0, 1, 4, 2, 5, 3, 6)
             .reshape(n, *shape))
    return label, [((x, y, z), mask) for (x, y, z), mask in zip(offsets.tolist(), masks,
                                                                strict=True)]


def _blocks_grid(shape: tuple[int, ...],
                 grid: tuple[int, int, int] | None = None) -> tuple[int, int, int]:
    """Sub-blocks per axis (gz, gy, gx) of a (z, y, x) block shape: multiples of 8 up to
    DVID's 1024-voxel block edge."""
    if len(shape) != 3 or not all(0 < n <= MAX_EDGE and n % SUB == 0 for n in shape):
        given = f"gx, gy, gz = {grid}" if grid else f"shape {tuple(shape)}"
        raise ValueError(f"binary blocks need 3 edges, each a multiple of {SUB} up to "
                         f"{MAX_EDGE}, not {given}")
    return shape[0] // SUB, shape[1] // SUB, shape[2] // SUB
