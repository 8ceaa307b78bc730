"""The label index protobuf and its packed block coordinates, against bytes built by hand from
DVID's .proto and bit layout, and in round trips."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dvidql.codec.labelindex import (
    LabelIndex,
    decode_label_index,
    decode_label_indices,
    encode_label_index,
    encode_label_indices,
    load_label_index,
    pack_block_coords,
    store_label_index,
    unpack_block_coords,
)

LIMIT = 2**20 - 1
coords = st.tuples(*[st.integers(-LIMIT, LIMIT)] * 3)
indices = st.builds(
    LabelIndex.from_dict,
    label=st.integers(0, 2**64 - 1),
    blocks=st.dictionaries(coords, st.dictionaries(st.integers(0, 2**64 - 1),
                                                   st.integers(1, 2**32 - 1), max_size=4),
                           max_size=6),
    last_mutid=st.integers(0, 2**64 - 1),
    last_mod_time=st.text(max_size=30), last_mod_user=st.text(max_size=10),
    last_mod_app=st.text(max_size=10))


def test_packed_coordinates_follow_dvids_bit_layout() -> None:
    packed = pack_block_coords(np.array([[1, 2, 3], [-1, 0, 0], [0, -LIMIT, LIMIT]]))
    assert packed.tolist() == [1 | 2 << 21 | 3 << 42, 1 << 20 | 1,
                               (1 << 20 | LIMIT) << 21 | LIMIT << 42]
    with pytest.raises(ValueError, match="within"):
        pack_block_coords(np.array([[LIMIT + 1, 0, 0]]))


@given(st.lists(coords, max_size=50))
def test_packed_coordinates_round_trip(points: list[tuple[int, int, int]]) -> None:
    array = np.array(points, np.int64).reshape(-1, 3)
    assert unpack_block_coords(pack_block_coords(array)).tolist() == array.tolist()


def test_wire_bytes_built_by_hand() -> None:
    # blocks {packed (1,0,0): SVCount{counts {3: 4}}}, label 5 (proto3 field order)
    sv_count = bytes([0x0A, 0x04, 0x08, 0x03, 0x10, 0x04])
    entry = bytes([0x08, 0x01, 0x12, len(sv_count)]) + sv_count
    wire = bytes([0x0A, len(entry)]) + entry + bytes([0x10, 0x05])
    index = LabelIndex.from_dict(5, {(1, 0, 0): {3: 4}})
    assert decode_label_index(wire) == index
    assert encode_label_index(index) == wire
    assert index.num_voxels == 4 and index.supervoxels().tolist() == [3]


@given(indices)
def test_round_trips(index: LabelIndex) -> None:
    assert LabelIndex.from_dict(index.label, index.as_dict(), last_mutid=index.last_mutid,
                                last_mod_time=index.last_mod_time,
                                last_mod_user=index.last_mod_user,
                                last_mod_app=index.last_mod_app) == index
    assert decode_label_index(encode_label_index(index)) == index
    assert load_label_index(store_label_index(index)) == index
    assert decode_label_indices(encode_label_indices([index, index])) == [index, index]


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="not a LabelIndex protobuf"):
        decode_label_index(b"\x0a\xff")
    with pytest.raises(ValueError, match="32 bits"):
        encode_label_index(LabelIndex.from_dict(1, {(0, 0, 0): {1: 2**32}}))
    with pytest.raises(ValueError, match="unsupported compression"):
        load_label_index(bytes([5 << 5]) + b"jpeg?")


def test_rows_are_summed_sorted_and_cleaned() -> None:
    index = LabelIndex.of(9, np.array([5, 1, 5, 1], np.uint64), np.array([2, 7, 2, 3], np.uint64),
                          np.array([1, 4, 2, 0]))
    assert index.blocks.tolist() == [1, 5] and index.svs.tolist() == [7, 2]
    assert index.counts.tolist() == [4, 3] and index.num_voxels == 7
    ids, sizes = index.supervoxel_sizes()
    assert ids.tolist() == [2, 7] and sizes.tolist() == [3, 4]
    with pytest.raises(ValueError, match="negative"):
        LabelIndex.of(9, np.array([1, 1], np.uint64), np.array([2, 2], np.uint64),
                      np.array([1, -2]))
