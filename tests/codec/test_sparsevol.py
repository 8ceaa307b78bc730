"""DVID's run-length sparse volumes (dvid-reference.md §4.4): layout, round trips, errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dvidql.codec.sparsevol import (
    decode_rles,
    decode_srles,
    encode_rles,
    encode_srles,
    mask_runs,
)


def test_rles_layout() -> None:
    mask = np.zeros((2, 3, 8), bool)
    mask[0, 1, 2:5] = True
    mask[1, 2, 6:] = True
    runs = mask_runs(mask, (10, 20, -30))
    assert runs.tolist() == [[12, 21, -30, 3], [16, 22, -29, 2]]
    body = struct.pack("<4B2I", 0, 3, 0, 0, 0, 2) + struct.pack("<8i", 12, 21, -30, 3,
                                                                 16, 22, -29, 2)
    assert encode_rles(runs) == body and encode_srles(runs) == body[12:]
    assert decode_rles(body).tolist() == runs.tolist()
    assert decode_srles(memoryview(body)[12:]).tolist() == runs.tolist()


@settings(max_examples=50, deadline=None)
@given(arrays(bool, st.tuples(*(st.integers(1, 12) for _ in range(3)))),
       st.tuples(*(st.integers(-1000, 1000) for _ in range(3))))
def test_runs_cover_the_mask(mask: np.ndarray, offset: tuple[int, int, int]) -> None:
    runs = decode_rles(encode_rles(mask_runs(mask, offset)))
    painted = np.zeros_like(mask)
    for x, y, z, length in runs.tolist():
        x, y, z = x - offset[0], y - offset[1], z - offset[2]
        assert not painted[z, y, x:x + length].any()
        painted[z, y, x:x + length] = True
    np.testing.assert_array_equal(painted, mask)
    assert int(runs[:, 3].sum()) == int(mask.sum())


@pytest.mark.parametrize(("data", "message"), [
    (b"\x00\x03\x00", "shorter than its 12-byte header"),
    (struct.pack("<4B2I", 1, 3, 0, 0, 0, 0), "payload descriptor 1"),
    (struct.pack("<4B2I", 0, 3, 1, 0, 0, 0), "run dimension 1"),
    (struct.pack("<4B2I", 0, 3, 0, 0, 0, 2) + bytes(16), "of 2 runs needs 44 bytes, not 28"),
    (struct.pack("<4B2I4i", 0, 3, 0, 0, 0, 1, 0, 0, 0, 0), "run of length 0"),
])
def test_malformed_rles(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_rles(data)


def test_malformed_srles_and_mask() -> None:
    with pytest.raises(ValueError, match="whole number of 16-byte runs"):
        decode_srles(bytes(20))
    with pytest.raises(ValueError, match="length 0 or less"):
        decode_srles(struct.pack("<4i", 0, 0, 0, -1))
    with pytest.raises(ValueError, match="3 dimensions, not 2"):
        mask_runs(np.ones((2, 2), bool))
