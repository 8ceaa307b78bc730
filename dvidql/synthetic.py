"""Synthetic EM-like tissue for the demo: cells with dark membranes, organelles and noise,
plus the cell labels it was drawn from (a ground-truth segmentation to go with it), and
supervoxels over those cells as an oversegmentation to agglomerate.

Cells are the Voronoi regions of jittered grid seeds, computed at half resolution and
upsampled, which keeps generation of a 256^3 volume to about a second.
"""

from __future__ import annotations

import numpy as np

__all__ = ["em_volume", "split_cells"]

_SPACING = 24  # seed grid spacing at half resolution: cells about 48 voxels across


def _cells(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Labels (1..n, uint32) of the Voronoi cells of jittered grid seeds."""
    grid = tuple(-(-n // _SPACING) for n in shape)
    seeds = (np.indices(grid).reshape(3, -1).T + rng.uniform(0.1, 0.9, (np.prod(grid), 3)))
    seeds *= _SPACING
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in shape), indexing="ij")
    cell = np.stack([z, y, x]) // _SPACING  # grid cell of every voxel
    best = np.full(shape, np.inf, np.float32)
    labels = np.zeros(shape, np.uint32)
    for dz in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                gz, gy, gx = cell[0] + dz, cell[1] + dy, cell[2] + dx
                inside = ((gz >= 0) & (gz < grid[0]) & (gy >= 0) & (gy < grid[1])
                          & (gx >= 0) & (gx < grid[2]))
                index = np.where(inside, (gz * grid[1] + gy) * grid[2] + gx, 0).astype(np.int64)
                seed = seeds[index]
                dist = ((z - seed[..., 0]) ** 2 + (y - seed[..., 1]) ** 2
                        + (x - seed[..., 2]) ** 2)
                dist[~inside] = np.inf
                closer = dist < best
                best[closer] = dist[closer]
                labels[closer] = index[closer] + 1
    return labels


def _blur(volume: np.ndarray) -> np.ndarray:
    """A 1-2-1 smoothing along each axis (edges left unsmoothed along that axis)."""
    out = volume.astype(np.float32)
    for axis in range(3):
        def cut(start: int, stop: int | None, axis: int = axis) -> tuple[slice, ...]:
            index = [slice(None)] * 3
            index[axis] = slice(start, stop)
            return tuple(index)

        smoothed = out.copy()
        smoothed[cut(1, -1)] = (out[cut(0, -2)] + 2 * out[cut(1, -1)] + out[cut(2, None)]) / 4
        out = smoothed
    return out


def em_volume(size: int = 256, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A (size, size, size) uint8 grayscale volume (z, y, x) and its uint32 cell labels."""
    rng = np.random.default_rng(seed)
    half = -(-size // 2)
    coarse = _cells((half, half, half), rng)
    labels = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)[:size, :size, :size]
    membrane = np.zeros(labels.shape, bool)
    for axis in range(3):
        edge = np.diff(labels, axis=axis) != 0
        lead, trail = [slice(None)] * 3, [slice(None)] * 3
        lead[axis], trail[axis] = slice(1, None), slice(None, -1)
        membrane[tuple(lead)] |= edge  # both sides of a boundary: membranes 2 voxels thick
        membrane[tuple(trail)] |= edge
    brightness = rng.uniform(150, 205, labels.max() + 1).astype(np.float32)
    tissue = brightness[labels]
    tissue[membrane] = 45
    # Organelles: small dark spheres (vesicles and mitochondria-like blobs).
    count = size**3 // 4000
    centres = rng.integers(0, size, (count, 3))
    radii = rng.integers(1, 4, count)
    for r in (1, 2, 3):
        chosen = centres[radii == r]
        for dz in range(-r, r + 1):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    if dz * dz + dy * dy + dx * dx <= r * r:
                        pts = np.clip(chosen + np.array([dz, dy, dx]), 0, size - 1)
                        tissue[pts[:, 0], pts[:, 1], pts[:, 2]] = 80
    gray = _blur(tissue) + rng.normal(0, 10, labels.shape).astype(np.float32)
    return np.clip(gray, 0, 255).astype(np.uint8), labels


def split_cells(cells: np.ndarray) -> np.ndarray:
    """Two supervoxels per cell of a (z, y, x) label volume: the voxels of cell ``c`` left of
    its mean x become ``2c - 1``, the others ``2c`` (uint64; 0 stays 0)."""
    flat = cells.reshape(-1)
    count = int(flat.max()) + 1
    x = np.broadcast_to(np.arange(cells.shape[2], dtype=np.float32), cells.shape).reshape(-1)
    sizes = np.bincount(flat, minlength=count)
    mean_x = (np.bincount(flat, weights=x, minlength=count) / np.maximum(sizes, 1)
              ).astype(np.float32)
    right = (x >= mean_x[flat]).astype(np.uint64)
    svs = 2 * flat.astype(np.uint64) - 1 + right
    svs[flat == 0] = 0
    return svs.reshape(cells.shape)
