"""roi operations: the one implementation behind the REST endpoints.

An ROI is a set of blocks held as runs along x, ``[z, y, x0, x1]``. Each run is one versioned
key (:mod:`dvidql.datatypes.roi.keys`), so a version that changes an ROI writes only the runs
it adds or removes, and its ancestors keep their own. Runs are kept merged: a write stores the
merged runs of the union and tombstones the runs they absorb, and reads merge again, so the
runs of concurrent requests, or of branches merged together, read as the union of their
blocks (branches that both grow a run both tombstone it, which is no conflict).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk.ops import check_request_size
from dvidql.datatypes.roi.keys import decode_run, encode_run, z_range
from dvidql.datatypes.roi.partition import partition as partition_spans
from dvidql.datatypes.roi.spans import NO_SPANS, merge_spans
from dvidql.datatypes.voxels import INT32_MAX, INT32_MIN, Box, Point

__all__ = [
    "add",
    "block_size",
    "contains",
    "delete",
    "mask",
    "partition",
    "read_spans",
]


def block_size(h: DataHandle) -> Point:
    """The block grid the instance's spans count in (its ``BlockSize`` setting)."""
    return tuple(h.instance.settings["BlockSize"])  # type: ignore[return-value]


async def _stored(h: DataHandle, z0: int = INT32_MIN, z1: int = INT32_MAX) -> list[bytes]:
    lo, hi = z_range(z0, z1)
    return [t async for t, _ in h.kv.scan(h.instance_id, h.lineage, lo, hi, keys_only=True)]


def _decode(tkeys: list[bytes]) -> np.ndarray:
    if not tkeys:
        return NO_SPANS
    return np.array([decode_run(t) for t in tkeys], np.int64)


async def read_spans(h: DataHandle, z0: int = INT32_MIN, z1: int = INT32_MAX) -> np.ndarray:
    """The ROI's merged spans at this version whose z is from z0 to z1."""
    return merge_spans(_decode(await _stored(h, z0, z1)))


async def add(h: DataHandle, spans: np.ndarray) -> int:
    """Add spans to the ROI (a union) in one transaction; returns the mutation id. Only the
    stored runs within the new spans' z range can merge with them, so only those are read."""
    stored = await _stored(h, int(spans[:, 0].min()), int(spans[:, 0].max())) if len(spans) else []
    merged = {encode_run(*(int(v) for v in s))
              for s in merge_spans(np.concatenate([_decode(stored), spans]))}
    empty = await h.kv.encode(b"")
    async with h.writing() as txn:
        for tkey in sorted(merged.difference(stored)):
            h.kv.put_raw(txn, h.instance_id, tkey, h.version, empty,
                         versioned=h.instance.versioned)
        for tkey in set(stored).difference(merged):
            h.kv.delete(txn, h.instance_id, tkey, h.version, versioned=h.instance.versioned)
        return await h.log(txn, {"Action": "postroi", "Spans": len(spans)})


async def delete(h: DataHandle) -> int:
    """Remove the whole ROI at this version (tombstones: ancestors keep theirs)."""
    stored = await _stored(h)
    async with h.writing() as txn:
        for tkey in stored:
            h.kv.delete(txn, h.instance_id, tkey, h.version, versioned=h.instance.versioned)
        return await h.log(txn, {"Action": "deleteroi", "Spans": len(stored)})


async def mask(h: DataHandle, box: Box) -> np.ndarray:
    """The box's (z, y, x) uint8 voxels: 1 inside the ROI, 0 outside. The blocks the box
    touches are marked run by run, then spread to voxels by one gather."""
    check_request_size(h, box.voxels)
    block = block_size(h)
    lo, hi = box.block_span(block)
    occupied = np.zeros((hi[2] - lo[2] + 1, hi[1] - lo[1] + 1, hi[0] - lo[0] + 1), np.uint8)
    for z, y, x0, x1 in (await read_spans(h, lo[2], hi[2])).tolist():
        if lo[1] <= y <= hi[1] and x1 >= lo[0] and x0 <= hi[0]:
            occupied[z - lo[2], y - lo[1], max(x0, lo[0]) - lo[0]:min(x1, hi[0]) - lo[0] + 1] = 1
    index = [np.arange(o, e) // b - low
             for o, e, b, low in zip(box.offset, box.end, block, lo, strict=True)]
    return occupied[np.ix_(index[2], index[1], index[0])]


async def contains(h: DataHandle, points: np.ndarray) -> np.ndarray:
    """For each (x, y, z) voxel point, whether its block is in the ROI."""
    spans = await read_spans(h)
    if len(points) == 0 or len(spans) == 0:
        return np.zeros(len(points), bool)
    blocks = points // np.array(block_size(h), np.int64)
    # Number the ROI's rows (z, y) in order; a point's candidate run is the last run of its
    # row starting at or before its x, found by one search over (row, x0) numbers.
    rows, row_of_span = np.unique(_row_numbers(spans[:, 0], spans[:, 1]), return_inverse=True)
    row_of_span = row_of_span.reshape(-1)
    numbers = _row_numbers(blocks[:, 2], blocks[:, 1])
    row = np.minimum(np.searchsorted(rows, numbers), len(rows) - 1)
    span_keys = row_of_span * 2**32 + (spans[:, 2] - INT32_MIN)
    candidate = np.searchsorted(span_keys, row * 2**32 + (blocks[:, 0] - INT32_MIN),
                                side="right") - 1
    found = np.maximum(candidate, 0)
    return ((rows[row] == numbers) & (candidate >= 0) & (row_of_span[found] == row)
            & (blocks[:, 0] <= spans[found, 3]))


def _row_numbers(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One uint64 per (z, y) block row, ordered as the rows are."""
    return ((z - INT32_MIN).astype(np.uint64) << np.uint64(32)) | (y - INT32_MIN).astype(np.uint64)


async def partition(h: DataHandle, batch: int, optimized: bool) -> dict[str, Any]:
    """DVID's partition of the ROI into subvolumes of ``batch``³ blocks."""
    return partition_spans(await read_spans(h), block_size(h), batch, optimized=optimized)
