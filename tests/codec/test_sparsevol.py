"""DVID's sparse volumes (dvid-reference.md §4.4), run-length and binary blocks: layout,
round trips, errors."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dvidql.codec.sparsevol import (
    BlockRuns,
    MaskBlock,
    decode_blocks,
    decode_rles,
    decode_srles,
    encode_blocks,
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


def _header(gx: int, gy: int, gz: int, label: int) -> bytes:
    return struct.pack("<3IQ", gx, gy, gz, label)


def _block(x: int, y: int, z: int, flag: int) -> bytes:
    return struct.pack("<3iB", x, y, z, flag)


def test_blocks_layout() -> None:
    """Bit i of a mixed sub-block is voxel i in z, y, x order, LSB first, as in DVID."""
    label = (1 << 40) + 5
    mixed = np.zeros((8, 8, 16), bool)  # (z, y, x): sub-block 0 solid, sub-block 1 mixed
    mixed[:, :, :8] = True
    for z, y, x in [(0, 0, 0), (0, 0, 1), (1, 0, 0), (7, 7, 7)]:
        mixed[z, y, 8 + x] = True
    bits = bytearray(64)
    bits[0], bits[8], bits[63] = 0x03, 0x01, 0x80
    halves = np.zeros((8, 8, 16), bool)
    halves[:, :, 8:] = True
    blocks: list[MaskBlock] = [((16, -8, 0), mixed), ((0, 0, 0), np.ones((8, 8, 16), bool)),
                               ((8, 0, 0), np.zeros((8, 8, 16), bool)), ((0, 8, 0), halves)]
    body = (_header(2, 1, 1, label) + _block(16, -8, 0, 2) + b"\x01\x02" + bytes(bits)
            + _block(0, 0, 0, 1) + _block(8, 0, 0, 0) + _block(0, 8, 0, 2) + b"\x00\x01")
    assert encode_blocks(label, blocks, (8, 8, 16)) == body
    decoded_label, decoded = decode_blocks(memoryview(body))
    assert decoded_label == label
    assert [offset for offset, _ in decoded] == [offset for offset, _ in blocks]
    for (_, got), (_, want) in zip(decoded, blocks, strict=True):
        np.testing.assert_array_equal(got, want)


def test_blocks_read_uncanonical_flags() -> None:
    """DVID flags from the palette, so a mixed block may hold only solid sub-blocks and a
    mixed sub-block may have every bit set; both read as what they hold."""
    body = (_header(1, 1, 2, 9) + _block(0, 0, 0, 2) + b"\x01\x01"
            + _block(0, 0, 8, 2) + b"\x02" + b"\xff" * 64 + b"\x00")
    label, blocks = decode_blocks(body)
    assert label == 9 and [offset for offset, _ in blocks] == [(0, 0, 0), (0, 0, 8)]
    assert blocks[0][1].shape == (16, 8, 8) and blocks[0][1].all()
    assert blocks[1][1][:8].all() and not blocks[1][1][8:].any()
    assert encode_blocks(9, blocks, (16, 8, 8)) == (
        _header(1, 1, 2, 9) + _block(0, 0, 0, 1) + _block(0, 0, 8, 2) + b"\x01\x00")


@st.composite
def _mask_blocks(draw: st.DrawFn) -> tuple[tuple[int, int, int], list[MaskBlock]]:
    """Blocks whose sub-blocks are solid background, solid foreground or random bits."""
    grid = draw(st.tuples(*(st.integers(1, 3) for _ in range(3))))
    shape = (8 * grid[0], 8 * grid[1], 8 * grid[2])
    blocks: list[MaskBlock] = []
    for _ in range(draw(st.integers(0, 4))):
        kinds = draw(arrays(np.uint8, grid, elements=st.integers(0, 2)))
        bits = draw(arrays(bool, shape))
        kind = kinds.repeat(8, 0).repeat(8, 1).repeat(8, 2)
        offset = draw(st.tuples(*(st.integers(-(1 << 31), (1 << 31) - 1) for _ in range(3))))
        blocks.append((offset, np.where(kind == 2, bits, kind == 1)))
    return shape, blocks


@settings(max_examples=60, deadline=None)
@given(_mask_blocks(), st.integers(0, (1 << 64) - 1))
def test_blocks_round_trip(case: tuple[tuple[int, int, int], list[MaskBlock]],
                           label: int) -> None:
    shape, blocks = case
    body = encode_blocks(label, blocks, shape)
    decoded_label, decoded = decode_blocks(body)
    assert decoded_label == label
    assert [offset for offset, _ in decoded] == [offset for offset, _ in blocks]
    for (_, got), (_, want) in zip(decoded, blocks, strict=True):
        assert got.shape == shape
        np.testing.assert_array_equal(got, want)
    assert encode_blocks(label, decoded, shape) == body


_MIXED_8 = _header(1, 1, 1, 3) + _block(0, 0, 0, 2)


@pytest.mark.parametrize(("data", "message"), [
    (bytes(19), "19 bytes are shorter than their 20-byte header"),
    (_header(0, 1, 1, 3), r"not gx, gy, gz = \(0, 1, 1\)"),
    (_header(1, 129, 1, 3), "up to 1024"),
    (_header(1, 1, 1, 3) + bytes(12), "byte 20 is truncated: its header needs 13 bytes, 12"),
    (_header(1, 1, 1, 3) + _block(0, 0, 0, 3), "byte 20 has flag 3"),
    (_MIXED_8, "byte 20 is truncated: its 1 sub-blocks end past the 33 bytes"),
    (_MIXED_8 + b"\x04", "sub-block at byte 33 has flag 4"),
    (_MIXED_8 + b"\x02" + bytes(63), "last sub-block mask ends past the 97 bytes"),
])
def test_malformed_blocks(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_blocks(data)


def test_encode_blocks_refuses() -> None:
    full = np.ones((8, 8, 8), bool)
    with pytest.raises(ValueError, match=r"not shape \(8, 8, 12\)"):
        encode_blocks(1, [], (8, 8, 12))
    with pytest.raises(ValueError, match=r"every block mask must have the shape \(8, 8, 8\)"):
        encode_blocks(1, [((0, 0, 0), full), ((8, 0, 0), full[:4])], (8, 8, 8))
    with pytest.raises(ValueError, match="-1 is not a uint64"):
        encode_blocks(-1, [], (8, 8, 8))
    with pytest.raises(ValueError, match="fit in int32"):
        encode_blocks(1, [((1 << 31, 0, 0), full)], (8, 8, 8))
    assert encode_blocks(1, [], (8, 8, 8)) == _header(1, 1, 1, 1)
    assert decode_blocks(_header(1, 1, 1, 1)) == (1, [])


@given(st.integers(0, 2**32))
def test_block_runs_paint_the_runs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((24, 16, 40)) < 0.3
    runs = mask_runs(mask, (-8, 16, 8))
    grouped = BlockRuns(runs, (16, 8, 8))
    rebuilt = np.zeros((24, 16, 64), bool)  # z from 8, y from 16, x from -16
    for i, (bx, by, bz) in enumerate(grouped.coords.tolist()):
        x0, y0, z0 = bx * 16 + 16, by * 8 - 16, bz * 8 - 8
        rebuilt[z0:z0 + 8, y0:y0 + 8, x0:x0 + 16] |= grouped.mask(i)
    assert np.array_equal(rebuilt[:, :, 8:48], mask)
    assert rebuilt.sum() == mask.sum()
