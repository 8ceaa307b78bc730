"""DVID's compressed label block (dvid-reference.md §4.2), byte-compatible with DVID.

A block of uint64 labels is cut into 8x8x8 sub-blocks. One block-level palette holds every
label; each sub-block lists the palette indices it uses and stores each voxel as a
``ceil(log2(Ns))``-bit index into that list, packed MSB-first. Because voxels only point at the
palette, mapping supervoxels to bodies rewrites the palette and nothing else
(:func:`relabel_block`).

The encoder reproduces DVID's bytes: the palette in order of first appearance and each
sub-block's list in order of first appearance within it, sub-blocks and the voxels inside them
both enumerated z, y, x with x fastest. Coding works on runs of equal labels in that order, so
its cost follows the number of runs rather than the number of voxels; bits are packed and
unpacked with numpy for all sub-blocks of one bit width at once, so the only Python loop is over
the (at most 9) widths. With numba (the optional ``fast`` extra) installed, compiled kernels
(:mod:`dvidql.codec._labelkernels`) decode in one pass, faster than compressed_segmentation's C++
decoder (1.3-2.6x its throughput on 64^3 blocks, where the numpy code reaches about 0.5x), and
pack the encoder's bits; the numpy code stays as the fallback, selected by :data:`use_numba`.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import NamedTuple

import numpy as np
from typing_extensions import Buffer

from dvidql.codec.serialization import GZIP, LZ4, NONE, deserialize, serialize

__all__ = ["LabelBlock", "LabelCodec", "Relabel", "block_labels", "decode_label_block",
           "dict_relabel", "encode_label_block", "label_counts", "labels_at_voxels",
           "parse_label_block", "relabel_block"]

SUB = 8  # sub-block edge
SUB_VOXELS = SUB**3
MAX_EDGE = 1024
_HEADER = 16  # uint32 gx, gy, gz, N
_COMPRESSIONS = {"gzip": GZIP, "lz4": LZ4, "none": NONE}
# _WIDTH[ns]: bits per voxel of a sub-block with ns labels, ceil(log2(ns)); 0 for ns <= 1
_WIDTH = np.array([0, 0, *((n - 1).bit_length() for n in range(2, SUB_VOXELS + 1))], np.int64)
_SHIFTS = np.arange(_WIDTH[-1] - 1, -1, -1, dtype=np.uint16)  # bit numbers 8..0, MSB first
# For labels_at_voxels, where numpy's cost per call is the cost: tables and 0-d array
# operands, which numpy handles faster than Python ints.
_MASKS = (1 << np.arange(_WIDTH[-1] + 1)) - 1  # _MASKS[b]: the low b bits
_SHIFT_FROM = 16 - np.arange(_WIDTH[-1] + 1)  # a b-bit value at bit 0 of 16 ends this far up
_PAIR = np.arange(2)  # a byte and the next
_VOXEL_STRIDES = np.array([SUB * SUB, SUB, 1])  # z, y, x inside a sub-block
_0, _1, _3, _7, _9, _32 = (np.array(v) for v in (0, 1, 3, 7, 9, 32))
_LOW32 = np.array(0xFFFFFFFF)

# Whether the codec uses the numba kernels: by default when numba (the optional "fast" extra)
# is installed. Tests and the benchmark turn it off to check and time the numpy fallback.
use_numba = importlib.util.find_spec("numba") is not None


@functools.cache
def _kernels() -> ModuleType:
    """The kernels, imported at their first use: importing numba takes about half a second,
    which every process start (a test's server, a CLI call) would pay whether it codes label
    blocks or not."""
    return importlib.import_module("dvidql.codec._labelkernels")


class _Palette(NamedTuple):
    grid: tuple[int, int, int]  # sub-blocks per axis, (gz, gy, gx)
    labels: np.ndarray  # uint64 palette, a read-only view of the data
    end: int  # byte offset just past the palette


def _grid(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Sub-blocks per axis of a (z, y, x) block shape, which must be multiples of 8 up to 1024."""
    if len(shape) != 3 or not all(0 < n <= MAX_EDGE and n % SUB == 0 for n in shape):
        raise ValueError(f"label block shape must be 3 edges, each a multiple of {SUB} "
                         f"up to {MAX_EDGE}, not {tuple(shape)}")
    return shape[0] // SUB, shape[1] // SUB, shape[2] // SUB


def _read_palette(data: Buffer) -> _Palette:
    size = memoryview(data).nbytes
    if size < _HEADER:
        raise ValueError(f"label block of {size} bytes is shorter than its {_HEADER}-byte header")
    gx, gy, gz, n = struct.unpack_from("<4I", data)
    if n == 0:
        raise ValueError("label block has an empty palette (N = 0)")
    end = _HEADER + 8 * n
    if size < end:
        raise ValueError(f"label block of {size} bytes is truncated: its palette of {n} "
                         f"labels needs {end}")
    return _Palette((gz, gy, gx), np.frombuffer(data, "<u8", n, _HEADER), end)


def _width_groups(widths: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Sub-blocks grouped by bit width b > 0, so each group packs or unpacks in one numpy
    call: yields b, the group's sub-block numbers and the (n, 64*b) byte offsets of their
    packed values (512 values of b bits fill exactly 64*b bytes, so streams need no padding)."""
    start = np.cumsum(64 * widths) - 64 * widths
    for b in np.unique(widths[widths > 0]).tolist():
        rows = np.flatnonzero(widths == b)
        yield b, rows, start[rows][:, None] + np.arange(64 * b)


def block_labels(data: Buffer) -> np.ndarray:
    """The palette of a compressed block (uint64, read-only), read without decoding voxels:
    every label the block may hold, plus possibly unused entries."""
    return _read_palette(data).labels


Relabel = Callable[[np.ndarray], np.ndarray]  # uint64 labels -> their new labels, aligned


def dict_relabel(mapping: Mapping[int, int]) -> Relabel:
    """A relabeling by a small dict, unmapped labels kept."""
    return lambda labels: np.fromiter((mapping.get(v, v) for v in labels.tolist()), np.uint64,
                                      len(labels))


def relabel_block(data: Buffer, relabel: Relabel | Mapping[int, int]) -> bytes:
    """The block with each palette label replaced (a dict's unmapped labels are kept): DVID's
    cheap supervoxel-to-body mapping, which leaves the voxel indices untouched."""
    if not callable(relabel):
        relabel = dict_relabel(relabel)
    palette = _read_palette(data)
    mapped = np.asarray(relabel(palette.labels), "<u8")
    view = memoryview(data).cast("B")
    return bytes(view[:_HEADER]) + mapped.tobytes() + bytes(view[palette.end:])


def encode_label_block(labels: np.ndarray) -> bytes:
    """DVID's compressed form of a (z, y, x) uint64 block, byte for byte as DVID writes it."""
    if labels.dtype != np.uint64:
        raise ValueError(f"label blocks hold uint64 labels, not {labels.dtype}")
    gz, gy, gx = _grid(labels.shape)
    nsb = gz * gy * gx
    # Voxels in stored order: sub-block by sub-block, each z, y, x.
    flat = labels.reshape(gz, SUB, gy, SUB, gx, SUB).transpose(0, 2, 4, 1, 3, 5).reshape(-1)
    # Runs of equal labels, also cut at every sub-block start; first appearances, in the
    # block and in each sub-block, are always run starts.
    starts = np.empty(flat.size, bool)
    starts[0] = True
    np.not_equal(flat[1:], flat[:-1], out=starts[1:])
    starts[::SUB_VOXELS] = True
    run_pos = np.flatnonzero(starts)
    values, first, inverse = np.unique(flat[run_pos], return_index=True, return_inverse=True)
    order = np.argsort(first)
    palette = values[order]
    header = np.array([gx, gy, gz, len(palette)], "<u4").tobytes()
    if len(palette) == 1:
        return header + palette.astype("<u8").tobytes()
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    run_index = rank[inverse]  # palette index of each run
    run_sb = run_pos // SUB_VOXELS
    # Distinct (sub-block, palette index) pairs, ordered by first appearance: the index lists.
    pairs, pair_first, pair_of_run = np.unique(run_sb * len(palette) + run_index,
                                               return_index=True, return_inverse=True)
    pair_order = np.argsort(pair_first)
    first_runs = pair_first[pair_order]
    ns = np.bincount(run_sb[first_runs], minlength=nsb)
    list_start = np.cumsum(ns) - ns
    local = np.empty_like(pair_order)
    local[pair_order] = np.arange(len(pair_order))
    local -= list_start[pairs // len(palette)]  # each pair's place in its sub-block's list
    lengths = np.diff(run_pos, append=flat.size)
    values_per_voxel = np.repeat(local[pair_of_run].astype(np.uint16), lengths)
    widths = _WIDTH[ns]
    voxels = values_per_voxel.reshape(nsb, SUB_VOXELS)
    stream = np.empty(64 * int(widths.sum()), np.uint8)
    if use_numba:
        _kernels().pack_values(voxels, widths, stream)
    else:
        for b, rows, at in _width_groups(widths):
            bits = ((voxels[rows][:, :, None] >> _SHIFTS[-b:]) & 1).astype(np.uint8)
            stream[at] = np.packbits(bits.reshape(len(rows), -1), axis=1)
    return b"".join([
        header,
        palette.astype("<u8").tobytes(),
        ns.astype("<u2").tobytes(),
        run_index[first_runs].astype("<u4").tobytes(),
        stream.tobytes(),
    ])


def label_counts(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct labels of an array and their voxel counts (int64), from its runs
    of equal values: segmentation has few runs, so this is far cheaper than sorting voxels."""
    flat = labels.reshape(-1)
    if not flat.size:
        return np.zeros(0, flat.dtype), np.zeros(0, np.int64)
    change = np.empty(flat.size, bool)
    change[0] = True
    np.not_equal(flat[1:], flat[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    ids, inverse = np.unique(flat[starts], return_inverse=True)
    lengths = np.diff(starts, append=flat.size)
    return ids, np.bincount(inverse.reshape(-1), lengths, len(ids)).astype(np.int64)


class _Layout(NamedTuple):
    """A compressed block's parts, checked against its shape and size (:func:`_layout`)."""
    palette: _Palette
    ns: np.ndarray  # int64 labels per sub-block; empty for a solid block
    widths: np.ndarray  # int64 bits per value of each sub-block, _WIDTH[ns]
    # int64 offsets of each sub-block, from one cumulative sum: the labels before it in the
    # index lists (low 32 bits; fewer than 2^31) and the widths before it (high bits)
    before: np.ndarray
    indices: np.ndarray  # uint32 palette indices, every sub-block's list in turn
    values: int  # byte offset of the packed values


def _layout(data: Buffer, shape: tuple[int, int, int]) -> _Layout:
    """The parts of a compressed block, after the checks that cost no more than reading the
    sub-block label counts: the shape matches the header and the size is exactly what the
    counts imply (ValueError otherwise)."""
    grid = _grid(shape)
    palette = _read_palette(data)
    if palette.grid != grid:
        raise ValueError(f"label block has {palette.grid[::-1]} sub-blocks (x, y, z); "
                         f"shape {tuple(shape)} needs {grid[::-1]}")
    size = memoryview(data).nbytes
    if len(palette.labels) == 1:
        if size != palette.end:
            raise ValueError(f"solid label block has {size} bytes, expected {palette.end}")
        none = np.zeros(0, np.int64)
        return _Layout(palette, none, none, none, np.zeros(0, np.uint32), size)
    nsb = grid[0] * grid[1] * grid[2]
    offset = palette.end
    if size < offset + 2 * nsb:
        raise ValueError(f"label block of {size} bytes is truncated in its {nsb} "
                         "sub-block label counts")
    ns = np.frombuffer(data, "<u2", nsb, offset).astype(np.int64)
    offset += 2 * nsb
    try:
        widths = _WIDTH[ns]
    except IndexError:  # a count beyond the table
        raise ValueError(f"a sub-block claims {ns.max()} labels, more than its "
                         f"{SUB_VOXELS} voxels") from None
    own = ns | (widths << _32)
    before = own.cumsum() - own
    ends = int(before[-1] + own[-1])
    total = ends & 0xFFFFFFFF
    expected = offset + 4 * total + 64 * (ends >> 32)
    if size != expected:
        raise ValueError(f"label block has {size} bytes; its sub-block label counts "
                         f"need {expected}")
    indices = np.frombuffer(data, "<u4", total, offset)
    return _Layout(palette, ns, widths, before, indices, offset + 4 * total)


class LabelBlock(NamedTuple):
    """A compressed block with its layout read and checked once (:func:`parse_label_block`):
    what a cache keeps, so that each later :func:`labels_at_voxels` on it costs only the
    arithmetic of its points."""
    data: bytes
    shape: tuple[int, int, int]
    layout: _Layout

    @property
    def nbytes(self) -> int:
        """About the memory it holds: the bytes and the per-sub-block tables."""
        return len(self.data) + 3 * self.layout.ns.nbytes

    def label_at(self, z: int, y: int, x: int) -> int:
        """The label at one voxel, in plain integer arithmetic: a single point, the hot read
        of proofreading tools, costs a few microseconds this way against tens through the
        array path of :func:`labels_at_voxels`, which it agrees with (same label or same
        ValueError)."""
        shape = self.shape
        if not (0 <= z < shape[0] and 0 <= y < shape[1] and 0 <= x < shape[2]):
            raise ValueError(f"points must lie in the block of shape {shape}")
        palette, ns, widths, before, indices, values = self.layout
        labels = palette.labels
        if len(labels) == 1:
            return labels.item(0)  # type: ignore[no-any-return]
        _, gy, gx = palette.grid
        s = ((z >> 3) * gy + (y >> 3)) * gx + (x >> 3)
        count = ns.item(s)
        if count == 0:
            return 0
        width = widths.item(s)
        offset = before.item(s)
        value = 0
        if width:
            bit = ((offset >> 32) << 9) + (((z & 7) * SUB + (y & 7)) * SUB + (x & 7)) * width
            at = values + (bit >> 3)
            word = int.from_bytes(self.data[at:at + 2].ljust(2, b"\0"), "big")
            value = (word >> (16 - width - (bit & 7))) & ((1 << width) - 1)
        _value_check(value >= count)
        index = indices.item((offset & 0xFFFFFFFF) + value)
        _palette_index_check(index, len(labels))
        return labels.item(index)  # type: ignore[no-any-return]


def parse_label_block(data: Buffer, shape: tuple[int, int, int]) -> LabelBlock:
    """The block (copied) with its layout, checked as :func:`decode_label_block` checks it."""
    own = bytes(data)
    return LabelBlock(own, (int(shape[0]), int(shape[1]), int(shape[2])), _layout(own, shape))


def _palette_index_check(top: int, n: int) -> None:
    """Raises for a largest used palette index ``top`` beyond a palette of ``n`` labels."""
    if top >= n:
        raise ValueError(f"label block has palette index {top} but only {n} labels")


def _value_check(bad: int) -> None:
    """Raises when ``bad``, a count or flag of voxels whose value is past their sub-block's
    index list, is nonzero."""
    if bad:
        raise ValueError("label block has a voxel index beyond its sub-block's labels")


def decode_label_block(data: Buffer, shape: tuple[int, int, int],
                       relabel: Relabel | None = None) -> np.ndarray:
    """The (z, y, x) uint64 labels of a compressed block, checking that the bytes are
    complete and consistent (ValueError otherwise, a client error at the REST layer).
    ``relabel`` maps the palette (supervoxels to bodies) before voxels are filled in, so a
    mapped block costs no more than a plain one. Decodes with the numba kernel when
    :data:`use_numba` is set, otherwise with numpy; both give the same labels and errors."""
    layout = _layout(data, shape)
    labels = layout.palette.labels
    if relabel is not None:
        labels = np.asarray(relabel(labels), np.uint64)
    if len(labels) == 1:
        return np.full(shape, labels[0], np.uint64)
    stream = np.frombuffer(data, np.uint8, -1, layout.values)
    if not use_numba:
        return _decode_numpy(layout, labels, stream).reshape(shape)
    out = np.empty(shape, np.uint64)
    top, bad = _kernels().decode_into(out, stream, layout.ns, layout.indices, labels)
    _palette_index_check(top, len(labels))
    _value_check(bad)
    return out


def _decode_numpy(layout: _Layout, labels: np.ndarray, stream: np.ndarray) -> np.ndarray:
    """:func:`decode_label_block`'s fallback without numba, with the palette ``labels``
    (relabeled) and the packed values ``stream``: the labels, shaped (gz, 8, gy, 8, gx, 8)."""
    grid = layout.palette.grid
    ns, indices = layout.ns, layout.indices
    total = len(indices)
    _palette_index_check(int(indices.max(initial=0)), len(labels))
    # Each voxel's value (its place in its sub-block's index list), then its position in the
    # concatenated lists: `total` points past them, at the label 0 of sub-blocks with none.
    value = np.zeros((len(ns), SUB_VOXELS), np.uint16)
    for b, rows, at in _width_groups(layout.widths):
        bits = np.unpackbits(stream[at], axis=1).reshape(len(rows), SUB_VOXELS, b)
        group = bits[:, :, 0].astype(np.uint16)
        for j in range(1, b):
            group <<= 1
            group |= bits[:, :, j]
        _value_check(np.count_nonzero(group.max(axis=1) >= ns[rows]))
        value[rows] = group
    base = np.where(ns == 0, total, layout.before & _LOW32).astype(np.int32).reshape(grid)
    gz, gy, gx = grid
    position = np.add(base[:, None, :, None, :, None],
                      value.reshape(gz, gy, gx, SUB, SUB, SUB).transpose(0, 3, 1, 4, 2, 5))
    lookup = np.append(labels[indices], np.uint64(0))
    # Positions are in range by construction (checked above); "clip" skips take's own check.
    return lookup.take(position, mode="clip")


def labels_at_voxels(data: Buffer | LabelBlock, shape: tuple[int, int, int],
                     points: np.ndarray, relabel: Relabel | None = None) -> np.ndarray:
    """The uint64 labels at ``points`` ((n, 3) integer z, y, x positions inside the block),
    aligned, decoding only what they need: the sub-block label counts give, by cumulative
    sums, each sub-block's place in the index lists and in the packed values, and each
    point's value is read from the (at most two) bytes holding its bits. Costs tens of
    microseconds where :func:`decode_label_block` costs a few hundred (64^3, numba) to a
    millisecond (numpy), for the same answers.

    Checks the header, the shape and the size as :func:`decode_label_block` does, and the
    values and palette indices the points use (ValueError); unused parts are not read. A
    :class:`LabelBlock` was checked when parsed, and its layout is not read again.
    ``relabel`` maps palette labels as in :func:`decode_label_block` (sub-blocks without
    labels stay 0), called on the fewer of the points' labels and the palette."""
    pts = np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3 or (pts.size and pts.dtype.kind not in "iu"):
        raise ValueError(f"points must be an (n, 3) integer array of z, y, x, not "
                         f"{pts.dtype} of shape {pts.shape}")
    if isinstance(data, LabelBlock):
        if data.shape != tuple(shape):
            raise ValueError(f"the parsed block has shape {data.shape}, not {tuple(shape)}")
        layout, data = data.layout, data.data
    else:
        layout = _layout(data, shape)
    palette, ns, widths, offsets, indices, offset = layout
    # Negative coordinates turn huge as unsigned, so one comparison checks both ends.
    if np.count_nonzero(pts.astype(np.uint64, copy=False) >= np.array(shape, np.uint64)):
        raise ValueError(f"points must lie in the block of shape {tuple(shape)}")
    labels = palette.labels
    if not len(pts):
        return np.zeros(0, np.uint64)
    if len(labels) == 1:
        return np.full(len(pts), labels[0] if relabel is None else relabel(labels)[0],
                       np.uint64)
    pts = pts.astype(np.int64, copy=False)
    _, gy, gx = palette.grid
    stream = np.frombuffer(data, np.uint8)
    if use_numba:
        chosen, bad = _kernels().palette_indices_at(stream, offset, ns, offsets, widths, indices,
                                                  np.ascontiguousarray(pts), gy, gx)
        _value_check(bad)
    else:
        chosen = _palette_indices_numpy(stream, layout, pts, gy, gx)
    # Points in sub-blocks without labels (-1) are 0, never relabeled.
    every = np.count_nonzero(chosen < _0) == 0
    used = chosen if every else chosen[chosen >= _0]
    _palette_index_check(int(used.max(initial=0)), len(labels))
    if relabel is None:
        found = labels[used]
    elif len(used) < len(labels):
        found = relabel(labels[used])
    else:
        found = np.asarray(relabel(labels))[used]
    if every:
        return found.astype(np.uint64, copy=False)
    out = np.zeros(len(pts), np.uint64)
    out[chosen >= _0] = found
    return out


def _palette_indices_numpy(stream: np.ndarray, layout: _Layout, pts: np.ndarray, gy: int,
                           gx: int) -> np.ndarray:
    """:func:`labels_at_voxels`'s fallback without numba: the palette index at each point
    (int64, -1 in sub-blocks without labels), after checking the values the points use."""
    _, ns, widths, offsets, indices, offset = layout
    sb = (pts >> _3).dot(np.array([gy * gx, gx, 1]))
    voxel = (pts & _7).dot(_VOXEL_STRIDES)
    before = offsets[sb]
    width = widths[sb]
    bit = ((before >> _32) << _9) + voxel * width  # 512 values of each width before
    # A value of up to 9 bits starting at bit 0..7 of a byte lies in that byte and the next,
    # read as one big-endian uint16. A next byte past the data only occurs when every bit
    # needed is in the first, and width 0 masks everything, so clipping the reads is safe.
    at = (bit >> _3)[:, None] + (offset + _PAIR)
    word = stream.take(at, mode="clip").view(">u2")[:, 0]
    value = (word >> (_SHIFT_FROM[width] - (bit & _7))) & _MASKS[width]
    count = ns[sb]
    _value_check(np.count_nonzero(value >= np.maximum(count, _1)))
    chosen = np.full(len(pts), -1, np.int64)
    labeled = count > _0
    chosen[labeled] = indices[((before & _LOW32) + value)[labeled]]
    return chosen


@dataclass(frozen=True)
class LabelCodec:
    """How a labelmap instance stores blocks: the compressed label block in DVID's value
    serialization with ``gzip`` (DVID's default for labelmap), ``lz4`` or ``none``."""

    name: str = "gzip"
    dtype = np.dtype(np.uint64)

    @classmethod
    def parse(cls, text: str) -> LabelCodec:
        name = text.strip().lower()
        if name not in _COMPRESSIONS:
            raise ValueError(f"unknown label block compression {text!r}; use gzip, lz4 or none")
        return cls(name)

    def __str__(self) -> str:
        return self.name

    def encode(self, block: np.ndarray) -> bytes:
        return serialize(encode_label_block(block), _COMPRESSIONS[self.name])

    def decode(self, stored: Buffer, shape: tuple[int, int, int],
               relabel: Relabel | None = None) -> np.ndarray:
        return decode_label_block(deserialize(stored), shape, relabel)
