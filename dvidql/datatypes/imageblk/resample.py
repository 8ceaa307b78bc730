"""Resampled views of a grayscale volume: arbitrary-orientation planes (DVID's ``arb``) and
slices stretched to square pixels (``isotropic``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import layout
from dvidql.datatypes.imageblk.ops import check_request_size, decode_stored, read_stored
from dvidql.datatypes.voxels import distinct_rows
from dvidql.errors import BadRequest

__all__ = ["arb_grid", "read_arb", "stretch_isotropic"]

Vector = tuple[float, float, float]


def arb_grid(top_left: Vector, top_right: Vector, bottom_left: Vector,
             res: float) -> np.ndarray:
    """World coordinates (rows, columns, 3) of the pixels of an arbitrary plane, as DVID lays
    it out: floor(edge length / res) + 1 pixels per side, spread evenly from corner to corner."""
    if not (math.isfinite(res) and res > 0):
        raise BadRequest(f"the resolution must be a positive number, not {res}")
    tl, tr, bl = (np.asarray(p, float) for p in (top_left, top_right, bottom_left))
    if not all(np.isfinite(p).all() for p in (tl, tr, bl)):
        raise BadRequest("corner coordinates must be finite numbers")
    nx = math.floor(float(np.linalg.norm(tr - tl)) / res)
    ny = math.floor(float(np.linalg.norm(bl - tl)) / res)
    if nx < 1 or ny < 1:
        raise BadRequest("the plane must be at least one resolution step wide and high: "
                         "move the top-right and bottom-left corners away from the top-left")
    step_x, step_y = (tr - tl) / nx, (bl - tl) / ny
    cols = np.arange(nx + 1, dtype=float)[None, :, None] * step_x
    rows = np.arange(ny + 1, dtype=float)[:, None, None] * step_y
    return tl + rows + cols


async def read_arb(h: DataHandle, top_left: Vector, top_right: Vector, bottom_left: Vector,
                   res: float) -> np.ndarray:
    """The plane's pixels by trilinear interpolation of the voxels around each point (voxel
    centres at integer multiples of the voxel size), rounded to the nearest value."""
    lay = layout(h.instance)
    world = arb_grid(top_left, top_right, bottom_left, res)
    check_request_size(h, world.shape[0] * world.shape[1], "this plane")
    voxel = world.reshape(-1, 3) / np.asarray(lay.voxel_size, float)
    low = np.floor(voxel)
    if np.abs(low).max(initial=0) > 2**31 - 2:
        raise BadRequest("the plane leaves the 32-bit coordinate range")
    frac = voxel - low
    base = low.astype(np.int64)
    corners = np.array([[i, j, k] for k in (0, 1) for j in (0, 1) for i in (0, 1)])
    points = base[:, None, :] + corners[None, :, :]  # (n, 8, 3) voxel coordinates
    block = np.asarray(lay.block)
    cells = points // block
    unique, index = distinct_rows(cells.reshape(-1, 3))
    check_request_size(h, len(unique) * lay.block_voxels, "the blocks under this plane")
    voxels = await decode_stored(h, await read_stored(h, [tuple(map(int, c)) for c in unique]))
    stack = np.full((len(unique) + 1, *lay.block_shape), lay.background, np.uint8)
    for n, v in enumerate(voxels):
        if v is not None:
            stack[n] = v
    local = (points - cells * block).reshape(-1, 3)
    values = stack[index.ravel(), local[:, 2], local[:, 1], local[:, 0]]
    values = values.reshape(-1, 8).astype(float)
    fx, fy, fz = frac[:, 0:1], frac[:, 1:2], frac[:, 2:3]
    c00 = values[:, 0:1] * (1 - fx) + values[:, 1:2] * fx
    c10 = values[:, 2:3] * (1 - fx) + values[:, 3:4] * fx
    c01 = values[:, 4:5] * (1 - fx) + values[:, 5:6] * fx
    c11 = values[:, 6:7] * (1 - fx) + values[:, 7:8] * fx
    c0 = c00 * (1 - fy) + c10 * fy
    c1 = c01 * (1 - fy) + c11 * fy
    out = np.floor(c0 * (1 - fz) + c1 * fz + 0.5).clip(0, 255).astype(np.uint8)
    return out.reshape(world.shape[:2])


def stretch_isotropic(plane: np.ndarray, dims: Sequence[int],
                      voxel_size: Sequence[float]) -> np.ndarray:
    """Stretch a 2D slice (rows along ``dims[1]``, columns along ``dims[0]``) so its pixels are
    square at the finer of the two resolutions (bilinear)."""
    col_res, row_res = voxel_size[dims[0]], voxel_size[dims[1]]
    finest = min(col_res, row_res)
    width = max(1, round(plane.shape[1] * col_res / finest))
    height = max(1, round(plane.shape[0] * row_res / finest))
    if (height, width) == plane.shape:
        return plane
    image = Image.fromarray(np.ascontiguousarray(plane))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
