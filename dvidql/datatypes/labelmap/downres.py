"""Label downsampling for labelmap's lower scales (dvid-reference.md §4.9).

Each voxel of scale s+1 takes the most frequent non-zero label among its 2x2x2 children at
scale s, so an object keeps its voxels wherever it is the majority of the labelled children;
0 only where all 8 children are 0. Ties go to the smaller label, which keeps results
reproducible (DVID breaks them arbitrarily).

The 8 children of every voxel are sorted with a fixed 19-step sorting network applied to 8
whole arrays at once; equal labels are then adjacent, and one pass over the 8 sorted arrays
tracks each run's length and the best run so far. Every step is an elementwise numpy
operation over all voxels, branch-free (masked selects are several times slower on the
random masks segmentation produces).
"""

from __future__ import annotations

import numpy as np

__all__ = ["downres_labels"]

# Batcher's odd-even merge sort of 8 values: compare-exchange pairs (low index gets the min)
_NETWORK = ((0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7), (0, 1), (2, 3),
            (4, 5), (6, 7), (2, 4), (3, 5), (1, 4), (3, 6), (1, 2), (3, 4), (5, 6))


def downres_labels(children: np.ndarray) -> np.ndarray:
    """The (z, y, x) uint64 labels of a (2z, 2y, 2x) uint64 volume at half resolution.

    Every edge must be even: a caller with an odd edge pads it (with 0, or by repeating the
    last plane) to decide what the missing children are."""
    if children.ndim != 3 or any(n % 2 for n in children.shape):
        raise ValueError(f"labels to downsample need 3 even edges, not {children.shape}")
    if children.dtype != np.uint64:
        raise ValueError(f"labels to downsample must be uint64, not {children.dtype}")
    # Copies, always: the network sorts in place, and a view (ascontiguousarray returns one
    # for single voxels) would sort the caller's labels.
    v = [children[dz::2, dy::2, dx::2].copy() for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]
    for i, j in _NETWORK:
        low = np.minimum(v[i], v[j])
        np.maximum(v[i], v[j], out=v[j])
        v[i] = low
    # run: length so far of the run of equal labels ending at child k; best: the longest
    # non-zero run so far, label: its label. A later run must be strictly longer to win, and
    # runs come in ascending label order, so ties keep the smaller label.
    run = np.ones(v[0].shape, np.uint8)
    best = (v[0] != 0).view(np.uint8)
    label = v[0].copy()
    for k in range(1, 8):
        run *= v[k] == v[k - 1]
        run += 1
        candidate = run * (v[k] != 0)
        better = (candidate > best).astype(np.uint64)
        np.maximum(best, candidate, out=best)
        label ^= (label ^ v[k]) & -better  # -1 (all bits) where better, else 0
    return label
