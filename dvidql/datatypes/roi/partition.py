"""DVID's ``partition`` of an ROI into subvolumes of batch³ blocks, for cluster jobs that each
take one subvolume.

The ROI is cut into layers of ``batch`` blocks along z, each layer into rows of ``batch``
blocks along y, each row into subvolumes along x; only layers and rows holding ROI blocks get
subvolumes. The output fields and their values follow DVID:

- simple (default): a fixed grid. The z layers start ``(dz % batch) // 2`` blocks before
  the ROI's first z, the rows and the subvolumes of a row likewise around their own extent
  (``dz`` the ROI's extent along z in blocks). Subvolumes without ROI blocks are left out of
  ``Subvolumes`` but their blocks still count in ``NumTotalBlocks``.
- optimized: layers and rows start at the ROI's own extent, the first ``extent % batch``
  rows and subvolumes of a layer or row one block longer (the layers after the first
  likewise), and the longest run without ROI blocks in a subvolume is cut out of it: what
  precedes it is its own subvolume, or extends the row's previous subvolume when they touch.
- ``ROI`` is the extent along z, and along x and y the extent grown from the origin, as
  DVID's zero-initialised bounds give it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from dvidql.datatypes.roi.spans import merge_spans
from dvidql.datatypes.voxels import Point
from dvidql.errors import BadRequest

__all__ = ["MAX_BATCH", "MAX_SUBVOLUMES", "partition"]

MAX_BATCH = 1024  # blocks along a subvolume's side
MAX_SUBVOLUMES = 200_000  # subvolumes (optimized: windows) one request may examine


def _bands(values: np.ndarray, start: int, size: int, wide: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last coordinate of the band holding each value, for bands laid from
    ``start``: the first ``wide`` of ``size + 1``, then of ``size``."""
    offset = values - start
    split = wide * (size + 1)
    index = np.where(offset < split, offset // (size + 1), wide + (offset - split) // size)
    first = start + index * size + np.minimum(index, wide)
    return first, first + size - 1 + (index < wide)


def _groups(keys: np.ndarray) -> list[np.ndarray]:
    """Indices of the items sharing each key, keys in ascending order."""
    order = np.argsort(keys, kind="stable")
    cuts = np.flatnonzero(np.diff(keys[order])) + 1
    return np.split(order, cuts)


def _largest_hole(covered: np.ndarray, lo: int, hi: int) -> tuple[int, int] | None:
    """The longest (first on ties) run of x in lo..hi that no ``covered`` interval (sorted,
    disjoint x0, x1 rows) touches."""
    inside = covered[(covered[:, 1] >= lo) & (covered[:, 0] <= hi)]
    starts = np.concatenate([[lo], np.minimum(inside[:, 1], hi) + 1])
    ends = np.concatenate([np.maximum(inside[:, 0], lo) - 1, [hi]])
    lengths = ends - starts + 1
    best = int(np.argmax(lengths))
    return (int(starts[best]), int(ends[best])) if lengths[best] > 0 else None


class _Partition:
    """The output being built, with the bookkeeping both layouts share."""

    def __init__(self, block: Point) -> None:
        self.block = block
        self.total = 0
        self.active = 0
        self.subvolumes: list[dict[str, Any]] = []
        self.examined = 0

    def count(self, n: int) -> None:
        self.examined += n
        if self.examined > MAX_SUBVOLUMES:
            raise BadRequest(f"this partition would take over {MAX_SUBVOLUMES} subvolumes; "
                             "ask for a larger batchsize")

    def add(self, lo: Point, hi: Point, active: int) -> None:
        self.subvolumes.append({"MinChunk": list(lo), "ActiveBlocks": active})
        self.extend(hi, 0)

    def extend(self, hi: Point, active: int) -> None:
        """Move the last subvolume's far corner to ``hi``, adding ``active`` blocks."""
        sub = self.subvolumes[-1]
        lo = sub["MinChunk"]
        sub.update({
            "MinPoint": [c * b for c, b in zip(lo, self.block, strict=True)],
            "MaxPoint": [(c + 1) * b - 1 for c, b in zip(hi, self.block, strict=True)],
            "MaxChunk": list(hi),
            "TotalBlocks": math.prod(h - low + 1 for low, h in zip(lo, hi, strict=True)),
            "ActiveBlocks": sub["ActiveBlocks"] + active,
        })

    def result(self, spans: np.ndarray) -> dict[str, Any]:
        if len(spans):
            lo = [min(0, int(spans[:, 2].min())), min(0, int(spans[:, 1].min())),
                  int(spans[0, 0])]
            hi = [max(0, int(spans[:, 3].max())), max(0, int(spans[:, 1].max())),
                  int(spans[-1, 0])]
        else:
            lo = hi = [0, 0, 0]
        if self.total >= 2**64:
            raise BadRequest("this partition counts more blocks than 64 bits hold; ask for "
                             "a smaller batchsize")
        order = ("MinPoint", "MaxPoint", "MinChunk", "MaxChunk", "TotalBlocks", "ActiveBlocks")
        return {"NumTotalBlocks": self.total, "NumActiveBlocks": self.active,
                "NumSubvolumes": len(self.subvolumes),
                "ROI": {"MinChunk": lo, "MaxChunk": hi},
                "Subvolumes": [{k: s[k] for k in order} for s in self.subvolumes]}


def _blocks_up_to(x0: np.ndarray, x1: np.ndarray, at: np.ndarray) -> np.ndarray:
    """For each coordinate in ``at``, the blocks of the runs x0..x1 at or before it: a run
    counts ``at - x0 + 1`` once it has started, less ``at - x1`` once it has ended."""
    starts, ends = np.sort(x0), np.sort(x1)
    start_sums = np.concatenate([[0], np.cumsum(starts)])
    end_sums = np.concatenate([[0], np.cumsum(ends)])
    begun = np.searchsorted(starts, at, side="right")
    over = np.searchsorted(ends, at, side="left")
    return begun * (at + 1) - start_sums[begun] - (over * at - end_sums[over])


def _simple_row(out: _Partition, x0: np.ndarray, x1: np.ndarray, batch: int,
                ys: tuple[int, int], zs: tuple[int, int]) -> None:
    """A row of fixed subvolumes centred on the row's x extent."""
    low, high = int(x0.min()), int(x1.max())
    left = (high - low + 1) % batch
    first, last = low - left // 2, high + left - left // 2
    depth = (ys[1] - ys[0] + 1) * (zs[1] - zs[0] + 1)
    out.total += ((last - first) // batch + 1) * batch * depth
    # The grid cells the runs touch, as merged ranges of cell numbers, then one by one.
    zeros = np.zeros_like(x0)
    touched = merge_spans(np.stack([zeros, zeros, (x0 - first) // batch,
                                    (x1 - first) // batch], axis=1))[:, 2:]
    lengths = touched[:, 1] - touched[:, 0] + 1
    out.count(int(lengths.sum()))
    cells = (np.repeat(touched[:, 0] - (np.cumsum(lengths) - lengths), lengths)
             + np.arange(int(lengths.sum())))
    starts = first + cells * batch
    active = (_blocks_up_to(x0, x1, starts + batch - 1) - _blocks_up_to(x0, x1, starts - 1))
    for start, n in zip(starts.tolist(), active.tolist(), strict=True):
        out.add((start, ys[0], zs[0]), (start + batch - 1, ys[1], zs[1]), n)
        out.active += n


def _optimized_row(out: _Partition, x0: np.ndarray, x1: np.ndarray, batch: int,
                   ys: tuple[int, int], zs: tuple[int, int]) -> None:
    """A row of subvolumes from the row's first block, empty stretches cut out."""
    low, high = int(x0.min()), int(x1.max())
    longer = (high - low + 1) % batch
    zeros = np.zeros_like(x0)
    covered = merge_spans(np.stack([zeros, zeros, x0, x1], axis=1))[:, 2:]
    depth = (ys[1] - ys[0] + 1) * (zs[1] - zs[0] + 1)
    row_end: int | None = None  # where the row's last subvolume ends along x
    begin = low
    while begin <= high:
        out.count(1)
        end = begin + batch - 1 + (longer > 0)
        longer = max(longer - 1, 0)
        hole = _largest_hole(covered, begin, end)
        last, following = (end, end + 1) if hole is None else (hole[0] - 1, hole[1] + 1)
        if last >= begin:
            n = int(np.diff(_blocks_up_to(x0, x1, np.array([begin - 1, last])))[0])
            if hole is not None and row_end == begin - 1:  # what precedes a hole joins
                out.extend((last, ys[1], zs[1]), n)
            else:
                out.add((begin, ys[0], zs[0]), (last, ys[1], zs[1]), n)
            out.total += (last - begin + 1) * depth
            out.active += n
            row_end = last
        begin = following


def partition(spans: np.ndarray, block: Point, batch: int, *, optimized: bool) -> dict[str, Any]:
    """DVID's partition JSON for merged ``spans`` (sorted z, y, x0, x1 rows)."""
    if not 1 <= batch <= MAX_BATCH:
        raise BadRequest(f"batchsize must be from 1 to {MAX_BATCH} blocks, not {batch}")
    out = _Partition(block)
    if len(spans) == 0:
        return out.result(spans)
    z, y = spans[:, 0], spans[:, 1]
    z_min, z_max = int(z[0]), int(z[-1])
    extent = z_max - z_min + 1
    if optimized:
        z_first, z_last = _bands(z, z_min + batch, batch, extent % batch)
        head = z < z_min + batch
        z_first, z_last = np.where(head, z_min, z_first), np.where(head, z_min + batch - 1, z_last)
    else:
        z_first, z_last = _bands(z, z_min - (extent % batch) // 2, batch, 0)
    row_of = _optimized_row if optimized else _simple_row
    for layer in _groups(z_first):
        zs = (int(z_first[layer[0]]), int(z_last[layer[0]]))
        ly = y[layer]
        y_min, y_max = int(ly.min()), int(ly.max())
        left = (y_max - y_min + 1) % batch
        if optimized:
            y_first, y_last = _bands(ly, y_min, batch, left)
        else:
            y_first, y_last = _bands(ly, y_min - left // 2, batch, 0)
        for row in _groups(y_first):
            runs = layer[row]
            row_of(out, spans[runs, 2], spans[runs, 3], batch,
                   (int(y_first[row[0]]), int(y_last[row[0]])), zs)
    return out.result(spans)
