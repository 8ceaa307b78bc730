"""Grayscale block codecs and voxel geometry, directly (no server)."""

from __future__ import annotations

import gzip

import lz4.block
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dvidql.codec.imageblock import BlockCodec, decode_block, encode_block, stored_jpeg
from dvidql.codec.images import ImageFormat
from dvidql.datatypes.voxels import (
    Box,
    block_coords,
    distinct_rows,
    new_volume,
    parse_geometry,
    paste,
    split_blocks,
)
from dvidql.errors import BadRequest

shapes = st.tuples(*(st.integers(1, 24) for _ in range(3)))


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["lz4", "gzip", "none"]), shapes.flatmap(
    lambda s: arrays(np.uint8, s, elements=st.integers(0, 255))))
def test_lossless_round_trip(codec: str, block: np.ndarray) -> None:
    stored = encode_block(block, BlockCodec.parse(codec))
    np.testing.assert_array_equal(decode_block(stored, block.shape), block)


def test_dvid_serialization_layout() -> None:
    """Format byte compression << 5; lz4 payload is a uint32 LE length and a raw LZ4 block."""
    block = (np.arange(32**3) % 251).astype(np.uint8).reshape(32, 32, 32)
    lz4_form = encode_block(block, BlockCodec("lz4"))
    assert lz4_form[0] == 4 << 5
    assert int.from_bytes(lz4_form[1:5], "little") == block.size
    assert lz4.block.decompress(lz4_form[5:], uncompressed_size=block.size) == block.tobytes()
    gzip_form = encode_block(block, BlockCodec("gzip"))
    assert gzip_form[0] == 2 << 5 and gzip.decompress(gzip_form[1:]) == block.tobytes()
    assert encode_block(block, BlockCodec("none")) == b"\x00" + block.tobytes()
    jpeg_form = encode_block(block, BlockCodec.parse("jpeg:80"))
    assert jpeg_form[0] == 5 << 5 and stored_jpeg(jpeg_form) == jpeg_form[1:]
    assert stored_jpeg(lz4_form) is None


def test_jpeg_error_bound() -> None:
    z, y, x = np.indices((32, 32, 32))
    block = (128 + 80 * np.sin(x / 6) * np.cos(y / 8) + 20 * np.sin(z / 4)).astype(np.uint8)
    for quality, bound in ((95, 1.5), (75, 3.0)):
        decoded = decode_block(encode_block(block, BlockCodec("jpeg", quality)), block.shape)
        assert np.abs(decoded.astype(int) - block).mean() < bound


@pytest.mark.parametrize("text", ["zstd", "jpeg:0", "jpeg:101", "jpeg:x", "lz4:5"])
def test_bad_codec_names(text: str) -> None:
    with pytest.raises(BadRequest):
        BlockCodec.parse(text)


def test_image_formats() -> None:
    assert str(ImageFormat.parse("jpg:80")) == "jpg:80"
    assert ImageFormat.parse("JPEG").name == "jpg" and ImageFormat.parse("png").name == "png"
    for bad in ("gif", "png:3", "jpg:0"):
        with pytest.raises(BadRequest):
            ImageFormat.parse(bad)


def test_geometry_parsing() -> None:
    g = parse_geometry("xz", "10_20", "1_2_3")
    assert g.dims == (0, 2) and g.box == Box((1, 2, 3), (10, 1, 20)) and not g.is_3d
    assert parse_geometry("0_1_2", "4_5_6", "-1_-2_-3").box.shape == (6, 5, 4)
    assert g.url() == "0_2/10_20/1_2_3"
    for dims, size, offset in [("xw", "1_1", "0_0_0"), ("0_1", "1", "0_0_0"),
                               ("0_1", "0_1", "0_0_0"), ("0_1", "1_1", "0_0"),
                               ("0_1_2", "1_1_1", "2147483648_0_0")]:
        with pytest.raises(BadRequest):
            parse_geometry(dims, size, offset)


@settings(max_examples=60, deadline=None)
@given(block=st.tuples(*(st.integers(1, 6) for _ in range(3))),
       counts=st.tuples(*(st.integers(1, 3) for _ in range(3))),
       corner=st.tuples(*(st.integers(-2, 2) for _ in range(3))),
       window=st.tuples(*(st.integers(-8, 20) for _ in range(3))),
       extent=st.tuples(*(st.integers(1, 20) for _ in range(3))),
       data=st.data())
def test_split_then_paste_equals_slicing(block, counts, corner, window, extent, data) -> None:  # type: ignore[no-untyped-def]
    """Blocks cut from a volume and pasted into any box reproduce numpy slicing."""
    offset = tuple(c * b for c, b in zip(corner, block, strict=True))
    size = tuple(n * b for n, b in zip(counts, block, strict=True))
    written = Box(offset, size)  # type: ignore[arg-type]
    volume = data.draw(arrays(np.uint8, written.shape))
    stored = dict(split_blocks(volume, written, block))  # type: ignore[arg-type]
    box = Box(window, extent)  # type: ignore[arg-type]
    lo, hi = box.block_span(block)  # type: ignore[arg-type]
    coords = [tuple(c) for c in block_coords(lo, hi)]
    out = new_volume(box, all(c in stored for c in coords), background=9)
    for c in coords:
        if c in stored:
            paste(out, box, block, c, stored[c])  # type: ignore[arg-type]
    want = np.full(box.shape, 9, np.uint8)
    overlap = box.intersect(written)
    if overlap is not None:
        src = [slice(o - w, o - w + n) for o, w, n in
               zip(overlap.offset, offset, overlap.size, strict=True)]
        dst = [slice(o - w, o - w + n) for o, w, n in
               zip(overlap.offset, box.offset, overlap.size, strict=True)]
        want[dst[2], dst[1], dst[0]] = volume[src[2], src[1], src[0]]
    np.testing.assert_array_equal(out, want)


coordinate = st.integers(-(2**28), 2**28)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(coordinate, coordinate, coordinate), max_size=30),
       st.lists(st.integers(0, 29), max_size=20), st.booleans())
def test_distinct_rows_equal_numpy_unique(rows: list[tuple[int, int, int]], repeats: list[int],
                                          near: bool) -> None:
    """Rows close together (numbered in their box) or far apart (numpy's row sort), with
    repeats."""
    array = np.array(rows + [rows[i % len(rows)] for i in repeats if rows], np.int64)
    array = array.reshape(-1, 3) % 50 if near else array.reshape(-1, 3)
    unique, inverse = distinct_rows(array)
    if len(array) > 1:
        expected, expected_inverse = np.unique(array, axis=0, return_inverse=True)
        assert np.array_equal(unique, expected)
        assert np.array_equal(inverse, expected_inverse.reshape(-1))
    assert np.array_equal(unique[inverse], array)
