"""Block spans ``[z, y, x0, x1]`` and voxel points as numpy arrays: validation of what clients
send, and merging runs into the canonical sorted, disjoint form."""

from __future__ import annotations

from typing import Any

import numpy as np

from dvidql.datatypes.voxels import INT32_MAX, INT32_MIN
from dvidql.errors import BadRequest

__all__ = ["NO_SPANS", "merge_spans", "parse_points", "parse_spans"]

NO_SPANS = np.zeros((0, 4), np.int64)


def _int_rows(data: Any, width: int, what: str, example: str) -> np.ndarray:
    """A JSON list of ``width``-integer lists as an (n, width) int64 array, every value within
    int32; refused whole, naming the first bad row, before anything is written."""
    if not isinstance(data, list):
        raise BadRequest(f"the body must be a JSON list of {what} like {example}")
    for i, row in enumerate(data):
        if not (isinstance(row, list) and len(row) == width
                and all(type(v) is int for v in row)):
            raise BadRequest(f"item {i} of the list is {str(row)[:80]}, not a list of "
                             f"{width} integers like {example}")
        if not all(INT32_MIN <= v <= INT32_MAX for v in row):
            raise BadRequest(f"item {i} of the list, {row}, leaves the 32-bit coordinate range")
    return np.array(data, np.int64).reshape(len(data), width)


def parse_spans(data: Any) -> np.ndarray:
    """Validated block spans ``[[z, y, x0, x1], ...]`` as an (n, 4) array."""
    spans = _int_rows(data, 4, "block spans", "[[z, y, x0, x1], ...]")
    reversed_ = np.flatnonzero(spans[:, 2] > spans[:, 3])
    if len(reversed_):
        i = int(reversed_[0])
        raise BadRequest(f"item {i} of the list, {spans[i].tolist()}, ends (x1) before it "
                         "starts (x0)")
    return spans


def parse_points(data: Any) -> np.ndarray:
    """Validated voxel points ``[[x, y, z], ...]`` as an (n, 3) array."""
    return _int_rows(data, 3, "voxel points", "[[x, y, z], ...]")


def merge_spans(spans: np.ndarray) -> np.ndarray:
    """Spans sorted by z, y, x0 with overlapping or touching runs of a row made one."""
    if len(spans) == 0:
        return NO_SPANS
    z, y, x0, x1 = spans[np.lexsort((spans[:, 2], spans[:, 1], spans[:, 0]))].T
    new_row = np.ones(len(z), bool)
    new_row[1:] = (z[1:] != z[:-1]) | (y[1:] != y[:-1])
    # The furthest x1 so far within each row: rows are lifted apart so the running maximum
    # never carries from one row into the next.
    lift = np.cumsum(new_row) * 2**33
    reach = np.maximum.accumulate(x1 + lift) - lift
    starts = new_row.copy()
    starts[1:] |= x0[1:] > reach[:-1] + 1
    first = np.flatnonzero(starts)
    last = np.append(first[1:] - 1, len(z) - 1)
    return np.stack([z[first], y[first], x0[first], reach[last]], axis=1)


