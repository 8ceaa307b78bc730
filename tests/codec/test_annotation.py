"""Annotation element JSON: canonical round trips, refusals, grouping by block."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dvidql.codec.annotation import (
    KINDS,
    RELATIONS,
    block_of,
    encode_block_map,
    encode_elements,
    group_by_block,
    join_arrays,
    parse_blocks,
    parse_elements,
    without_rels,
)
from dvidql.errors import BadRequest

coords = st.integers(-(2**31), 2**31 - 1)
points = st.lists(coords, min_size=3, max_size=3)
text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
relationship = st.fixed_dictionaries({"Rel": st.sampled_from(RELATIONS), "To": points})


@st.composite
def raw_elements(draw: st.DrawFn) -> dict[str, Any]:
    """Elements as clients post them: optional fields left out or null, extra fields."""
    element: dict[str, Any] = {"Pos": draw(points), "Kind": draw(st.sampled_from(KINDS))}
    for name, values in (("Tags", st.lists(text, max_size=3)),
                         ("Prop", st.dictionaries(text, text, max_size=3)),
                         ("Rels", st.lists(relationship, max_size=3))):
        choice = draw(st.sampled_from(["absent", "null", "value"]))
        if choice != "absent":
            element[name] = None if choice == "null" else draw(values)
    if draw(st.booleans()):
        element["Label"] = 17  # unknown fields are dropped, as DVID drops them
    return element


@settings(max_examples=200, deadline=None)
@given(st.lists(raw_elements(), max_size=8))
def test_round_trip_is_canonical(raw: list[dict[str, Any]]) -> None:
    parsed = parse_elements(orjson.dumps(raw))
    for original, element in zip(raw, parsed, strict=True):
        assert list(element) == ["Pos", "Kind", "Tags", "Prop", "Rels"]
        assert element["Pos"] == original["Pos"] and element["Kind"] == original["Kind"]
        for name, empty in (("Tags", []), ("Prop", {}), ("Rels", [])):
            assert element[name] == (original.get(name) or empty)
    assert parse_elements(encode_elements(parsed)) == parsed
    assert [list(without_rels(e)) for e in parsed] == [["Pos", "Kind", "Tags", "Prop"]] * len(
        parsed)


@settings(max_examples=100, deadline=None)
@given(st.lists(raw_elements(), max_size=30),
       st.tuples(*[st.integers(1, 100)] * 3))
def test_group_by_block(raw: list[dict[str, Any]], block: tuple[int, int, int]) -> None:
    elements = parse_elements(orjson.dumps(raw))
    groups = group_by_block(elements, block)
    expected: dict[tuple[int, ...], list[Any]] = {}
    for e in elements:
        expected.setdefault(block_of(e["Pos"], block), []).append(e)
    assert dict(groups) == expected
    assert len(groups) == len(expected)


@pytest.mark.parametrize("body", [
    b"[1]", b'[{"Pos": [0, 0, 0]}]', b'[{"Pos": [0, 0, 0], "Kind": null}]',
    b'[{"Pos": [true, 0, 0], "Kind": "Note"}]', b'[{"Pos": "0_0_0", "Kind": "Note"}]',
    b'[{"Pos": [0, 0, -2147483649], "Kind": "Note"}]',
    b'[{"Pos": [0, 0, 0], "Kind": "Note", "Tags": ["a\\u0000b"]}]',
    b'[{"Pos": [0, 0, 0], "Kind": "Note", "Tags": ["' + b"t" * 401 + b'"]}]',
    b'[{"Pos": [0, 0, 0], "Kind": "Note", "Prop": ["a"]}]',
    b'[{"Pos": [0, 0, 0], "Kind": "Note", "Rels": {}}]',
    b'[{"Pos": [0, 0, 0], "Kind": "Note", "Rels": [{"Rel": "PreSynTo", "To": [0, 0]}]}]',
    b'[{"Pos": [0, 0, 0], "Kind": "Note", "POS": [1, 1, 1e9]}]',
])
def test_refusals(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_elements(body)


def test_relationships_come_out_in_canonical_order() -> None:
    (element,) = parse_elements(b'[{"Kind": "PreSyn", "Rels": [{"To": [1, 2, 3], '
                                b'"Rel": "PreSynTo", "Note": "x"}, {"To": [4, 5, 6], '
                                b'"Rel": "GroupedWith"}], "Pos": [0, 0, 0]}]')
    assert encode_elements([element]) == (
        b'[{"Pos":[0,0,0],"Kind":"PreSyn","Tags":[],"Prop":{},"Rels":[{"Rel":"PreSynTo",'
        b'"To":[1,2,3]},{"Rel":"GroupedWith","To":[4,5,6]}]}]')


def test_field_names_in_any_case_as_dvid_takes_them() -> None:
    """DVID's JSON decoding matches field names without regard to case; a later key wins."""
    (element,) = parse_elements(b'[{"pos": [0, 0, 0], "KIND": "PreSyn", "tags": ["a"], '
                                b'"Tags": ["b"], "rels": [{"rel": "PreSynTo", "TO": [1, 2, 3]},'
                                b' {"Rel": "GroupedWith", "To": [4, 5, 6]}], "extra": 1}]')
    assert encode_elements([element]) == (
        b'[{"Pos":[0,0,0],"Kind":"PreSyn","Tags":["b"],"Prop":{},"Rels":[{"Rel":"PreSynTo",'
        b'"To":[1,2,3]},{"Rel":"GroupedWith","To":[4,5,6]}]}]')


def test_messages_name_the_element() -> None:
    with pytest.raises(BadRequest, match="element 1 has Kind \"Bad\"; use one of PostSyn"):
        parse_elements(b'[{"Pos": [0, 0, 0], "Kind": "Note"}, {"Pos": [0, 0, 0], '
                       b'"Kind": "Bad"}]')


def test_blocks_and_splicing() -> None:
    blocks = parse_blocks(b'{"-1,0,0": [{"Pos": [-1, 5, 5], "Kind": "Note"}], "2,2,2": []}',
                          (64, 64, 64))
    assert blocks == {(-1, 0, 0): [{"Pos": [-1, 5, 5], "Kind": "Note", "Tags": [], "Prop": {},
                                    "Rels": []}], (2, 2, 2): []}
    with pytest.raises(BadRequest, match="lies in block -1,0,0"):
        parse_blocks(b'{"0,0,0": [{"Pos": [-1, 5, 5], "Kind": "Note"}]}', (64, 64, 64))
    a, b = encode_elements([{"x": 1}]), encode_elements([{"y": 2}, {"z": 3}])
    assert orjson.loads(join_arrays([a, b"[]", b])) == [{"x": 1}, {"y": 2}, {"z": 3}]
    assert join_arrays([]) == b"[]"
    assert orjson.loads(encode_block_map([((1, -2, 3), a)])) == {"1,-2,3": [{"x": 1}]}
