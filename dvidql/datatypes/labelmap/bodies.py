"""Reads of bodies and supervoxels from the label indices: sizes, supervoxel lists, block
bounds, coarse and exact sparse volumes, label listings. A supervoxel's index is the part of
its body's index that holds it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np

from dvidql.codec.labelindex import LabelIndex, load_label_index, unpack_block_coords
from dvidql.codec.sparsevol import MaskBlock, mask_runs
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import layout
from dvidql.datatypes.imageblk.ops import decode_stored, read_stored
from dvidql.datatypes.labelmap.keys import INDEX, decode_label, index_tkey
from dvidql.datatypes.labelmap.model import bodies_of, load_indices, require_indexed
from dvidql.errors import BadRequest, NotFound

__all__ = ["Bounds", "block_extent", "coarse_runs", "index_of", "indices_of", "label_sizes",
           "labels_in_order", "sparse_masks", "sparse_runs"]

_BATCH = 64  # blocks decoded at a time for a sparse volume


async def indices_of(h: DataHandle, labels: Sequence[int], *, supervoxels: bool = False
                     ) -> list[LabelIndex | None]:
    """The index of each body, or of each supervoxel (the rows of it in its body's index)."""
    if not supervoxels:
        return await load_indices(h, labels)
    bodies = (await bodies_of(h, np.asarray(labels, np.uint64))).tolist()
    distinct = sorted({b for b in bodies if b})
    by_body = dict(zip(distinct, await load_indices(h, distinct), strict=True))
    out: list[LabelIndex | None] = []
    for sv, body in zip(labels, bodies, strict=True):
        index = by_body.get(body)
        part = None if index is None else index.select(index.svs == np.uint64(sv), sv)
        out.append(part if part is not None and len(part.counts) else None)
    return out


async def index_of(h: DataHandle, label: int, *, supervoxels: bool = False) -> LabelIndex:
    (index,) = await indices_of(h, [label], supervoxels=supervoxels)
    if index is None:
        raise NotFound(f"{'supervoxel' if supervoxels else 'body'} {label} has no voxels at "
                       "this version")
    return index


async def label_sizes(h: DataHandle, labels: Sequence[int], *, supervoxels: bool = False
                      ) -> list[int]:
    """Voxel counts (0 for labels without voxels)."""
    return [0 if i is None else i.num_voxels
            for i in await indices_of(h, labels, supervoxels=supervoxels)]


@dataclass(frozen=True)
class Bounds:
    """Inclusive voxel bounds of a sparse volume request; None leaves a side open."""

    lo: tuple[int | None, int | None, int | None] = (None, None, None)
    hi: tuple[int | None, int | None, int | None] = (None, None, None)

    def block_mask(self, coords: np.ndarray, block: tuple[int, int, int]) -> np.ndarray:
        """Which (n, 3) block coordinates overlap the bounds."""
        keep = np.ones(len(coords), bool)
        size = np.asarray(block, np.int64)
        first, last = coords * size, coords * size + size - 1
        for axis in range(3):
            if self.lo[axis] is not None:
                keep &= last[:, axis] >= self.lo[axis]
            if self.hi[axis] is not None:
                keep &= first[:, axis] <= self.hi[axis]
        return keep

    def clip(self, runs: np.ndarray) -> np.ndarray:
        """Runs cut to the bounds (x ends shortened, runs outside in y or z dropped)."""
        x, y, z, length = (runs[:, i].astype(np.int64) for i in range(4))
        start, end = x, x + length - 1
        keep = np.ones(len(runs), bool)
        for axis, values in ((1, y), (2, z)):
            if self.lo[axis] is not None:
                keep &= values >= self.lo[axis]
            if self.hi[axis] is not None:
                keep &= values <= self.hi[axis]
        if self.lo[0] is not None:
            start = np.maximum(start, self.lo[0])
        if self.hi[0] is not None:
            end = np.minimum(end, self.hi[0])
        keep &= end >= start
        out = np.stack([start, y, z, end - start + 1], axis=1)[keep]
        return out.astype(np.int32)

    @property
    def is_open(self) -> bool:
        return all(v is None for v in (*self.lo, *self.hi))


def coarse_runs(index: LabelIndex, bounds: Bounds, block: tuple[int, int, int]) -> np.ndarray:
    """x runs of the index's block coordinates (DVID's ``sparsevol-coarse``), z, y, x order."""
    coords = index.block_coords()
    coords = coords[bounds.block_mask(coords, block)]
    if not len(coords):
        return np.zeros((0, 4), np.int32)
    order = np.lexsort((coords[:, 0], coords[:, 1], coords[:, 2]))
    coords = coords[order]
    new_run = np.ones(len(coords), bool)
    new_run[1:] = ((coords[1:, 0] != coords[:-1, 0] + 1) | (coords[1:, 1] != coords[:-1, 1])
                   | (coords[1:, 2] != coords[:-1, 2]))
    starts = np.flatnonzero(new_run)
    lengths = np.diff(starts, append=len(coords))
    return np.column_stack([coords[starts], lengths]).astype(np.int32)


async def _member_masks(h: DataHandle, index: LabelIndex, bounds: Bounds
                        ) -> AsyncIterator[list[MaskBlock]]:
    """Per block of the index within the bounds (z, y, x block order), its first voxel and
    the mask of the index's supervoxels there, a batch of blocks at a time."""
    lay = layout(h.instance)
    coords = index.block_coords()
    coords = coords[bounds.block_mask(coords, lay.block)]
    coords = coords[np.lexsort((coords[:, 0], coords[:, 1], coords[:, 2]))]
    members = index.supervoxels()
    for start in range(0, len(coords), _BATCH):
        part = [tuple(int(v) for v in c) for c in coords[start:start + _BATCH]]
        decoded = await decode_stored(h, await read_stored(h, part))  # type: ignore[arg-type]
        masks: list[MaskBlock] = []
        for coord, voxels in zip(part, decoded, strict=True):
            if voxels is None:
                raise RuntimeError(f"block {coord} is in the index of label {index.label} but "
                                   "not stored")
            offset = (coord[0] * lay.block[0], coord[1] * lay.block[1], coord[2] * lay.block[2])
            masks.append((offset, np.isin(voxels, members)))
        yield masks


async def sparse_runs(h: DataHandle, index: LabelIndex, bounds: Bounds
                      ) -> AsyncIterator[np.ndarray]:
    """The voxel x runs of the index's supervoxels, block by block (runs do not continue
    across blocks, as DVID's), cut to the bounds."""
    async for masks in _member_masks(h, index, bounds):
        runs = [mask_runs(mask, offset) for offset, mask in masks]
        found = np.concatenate(runs) if runs else np.zeros((0, 4), np.int32)
        yield found if bounds.is_open else bounds.clip(found)


async def sparse_masks(h: DataHandle, index: LabelIndex, bounds: Bounds
                       ) -> AsyncIterator[MaskBlock]:
    """The per-block masks of the index's supervoxels in blocks within the bounds."""
    async for masks in _member_masks(h, index, bounds):
        for mask in masks:
            yield mask


async def labels_in_order(h: DataHandle, start: int = 0, limit: int | None = None, *,
                          with_index: bool = False
                          ) -> AsyncIterator[tuple[int, LabelIndex | None]]:
    """Bodies with an index from ``start`` up, in numeric order, at most ``limit``; their
    indices too when ``with_index``."""
    require_indexed(h)
    if not 0 <= start < 2**64:
        raise BadRequest(f"start must be a label from 0 to 2^64-1, not {start}")
    hi = bytes([INDEX]) + b"\xff" * 8
    found = 0
    async for tkey, value in h.kv.scan(h.instance_id, h.lineage, index_tkey(start), hi,
                                       keys_only=not with_index):
        yield decode_label(tkey), load_label_index(value) if with_index else None
        found += 1
        if limit is not None and found >= limit:
            return


def block_extent(index: LabelIndex, block: tuple[int, int, int]) -> tuple[list[int], list[int]]:
    """The first and last voxel of the index's blocks (bounds accurate to blocks)."""
    coords = unpack_block_coords(index.blocks)
    size = np.asarray(block, np.int64)
    return ((coords.min(axis=0) * size).tolist(),
            (coords.max(axis=0) * size + size - 1).tolist())
