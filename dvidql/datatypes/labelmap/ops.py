"""labelmap operations beyond the shared block-volume ones of ``imageblk.ops``."""

from __future__ import annotations

import numpy as np

from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import layout
from dvidql.datatypes.imageblk.ops import check_request_size, decode_stored, read_stored

__all__ = ["labels_at"]


async def labels_at(h: DataHandle, points: np.ndarray) -> np.ndarray:
    """The labels at (n, 3) voxel x, y, z points, 0 where nothing was written; each block
    under the points is read and decoded once."""
    lay = layout(h.instance)
    pts = np.asarray(points, np.int64).reshape(-1, 3)
    block = np.asarray(lay.block, np.int64)
    coords = pts // block
    unique, inverse = np.unique(coords, axis=0, return_inverse=True)
    check_request_size(h, len(unique) * lay.block_voxels * lay.dtype.itemsize,
                       "the blocks under these points")
    decoded = await decode_stored(h, await read_stored(h, [tuple(int(v) for v in c)
                                                           for c in unique]))
    out = np.zeros(len(pts), lay.dtype)
    local = pts - coords * block
    for i, voxels in enumerate(decoded):
        if voxels is not None:
            mine = np.flatnonzero(inverse.reshape(-1) == i)
            out[mine] = voxels[local[mine, 2], local[mine, 1], local[mine, 0]]
    return out
