"""Real fly segmentation for the labelmap tests, from the samples in ``tests/codec/fixtures``:
many labels of real shapes in a volume small enough to check voxel by voxel."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

__all__ = ["SHAPE", "sample", "two_samples"]

FIXTURES = Path(__file__).resolve().parent / "codec" / "fixtures"
EDGE = 64
SHAPE = (EDGE, EDGE, 2 * EDGE)  # z, y, x of two_samples()


def sample(name: str) -> np.ndarray:
    """The 64^3 uint64 labels (z, y, x) of sample 1 of ``name``: 'fib19' or 'cx'."""
    raw = gzip.decompress((FIXTURES / f"{name}-64x64x64-sample1.dat.gz").read_bytes())
    return np.frombuffer(raw, "<u8").reshape(EDGE, EDGE, EDGE).astype(np.uint64)


def two_samples() -> np.ndarray:
    """The fib19 and cx samples side by side along x: their labels do not collide."""
    return np.concatenate([sample("fib19"), sample("cx")], axis=2)
