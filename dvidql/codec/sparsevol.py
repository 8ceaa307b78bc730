"""Run-length sparse volumes of DVID (dvid-reference.md §4.4): ``rles`` and ``srles``.

A sparse volume is a list of runs along x, each ``int32 x, y, z, length`` (voxel coordinates
of the run's first voxel). ``rles`` prefixes the runs with a 12-byte header (payload
descriptor 0, 3 dimensions, run dimension 0 = x, voxel count left 0 as DVID does, run count);
``srles`` is the bare runs, so it can be streamed. Runs are kept as an (n, 4) int32 array.
"""

from __future__ import annotations

import struct

import numpy as np
from typing_extensions import Buffer

__all__ = ["decode_rles", "decode_srles", "encode_rles", "encode_srles", "mask_runs"]

_RLES_HEADER = struct.Struct("<BBBBII")  # descriptor, dimensions, run dimension, 0, voxels, runs
_RUN = 16


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
