"""Annotation element JSON (DVID's synapses, bookmarks and other points): validation on the
way in, one canonical form on the way out, and grouping by block.

An element is ``{"Pos": [x,y,z], "Kind": k, "Tags": [..], "Prop": {..}, "Rels": [{"Rel": r,
"To": [x,y,z]}, ..]}``. The canonical form always has every field, in that order, with empty
lists and objects rather than null (DVID answers ``null`` or ``[]`` depending on the path an
element took, which clients trip over). Stored block values are canonical JSON arrays, so
reads splice them into answers without decoding.

Parsing is as lenient as DVID where that is harmless: ``Tags``, ``Prop`` and ``Rels`` may be
absent or null, and unknown fields are dropped. It is strict where DVID would store garbage:
``Pos`` and ``Kind`` are required, positions must be three integers in the int32 range, and a
field spelled in another case (``"tags"``, which Go would silently accept) is refused.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import orjson

from dvidql.codec.jsonbody import decode_json
from dvidql.datatypes.voxels import INT32_MAX, INT32_MIN, Point, distinct_rows
from dvidql.errors import BadRequest

__all__ = [
    "KINDS",
    "MAX_TAG_BYTES",
    "RELATIONS",
    "Element",
    "block_of",
    "bulk",
    "decode_elements",
    "encode_block_map",
    "encode_elements",
    "group_by_block",
    "join_arrays",
    "parse_block_key",
    "parse_blocks",
    "parse_element",
    "parse_elements",
    "parse_labels",
    "without_rels",
]

Element = dict[str, Any]

KINDS = ("PostSyn", "PreSyn", "Gap", "Note", "Unknown")
RELATIONS = ("PostSynTo", "PreSynTo", "ConvergentTo", "GroupedWith", "UnknownRelationship")
MAX_TAG_BYTES = 400  # a tag is part of a store key; LMDB keys hold at most 511 bytes

_KIND_SET = frozenset(KINDS)
_REL_SET = frozenset(RELATIONS)
_FIELDS = ("Pos", "Kind", "Tags", "Prop", "Rels")
_FIELD_SET = frozenset(_FIELDS)
_FIELD_CASES = {f.lower(): f for f in _FIELDS}
_REL_FIELDS = frozenset({"Rel", "To"})
_REL_CASES = {"rel": "Rel", "to": "To"}


def _where(index: int | None) -> str:
    return "element" if index is None else f"element {index}"


def _is_point(value: Any) -> bool:
    """[x, y, z] of int32s (spelled out: this runs for every point posted)."""
    if type(value) is not list or len(value) != 3:
        return False
    x, y, z = value
    return (type(x) is int and type(y) is int and type(z) is int and INT32_MIN <= x <= INT32_MAX
            and INT32_MIN <= y <= INT32_MAX and INT32_MIN <= z <= INT32_MAX)


def _bad_point(value: Any, what: str) -> BadRequest:
    return BadRequest(f"{what} must be [x, y, z], three integers in the 32-bit range, "
                      f"not {orjson.dumps(value).decode()[:80]}")


@contextmanager
def bulk() -> Iterator[None]:
    """Pause the cyclic garbage collector while many acyclic objects are made (elements
    parsed, decoded, merged, written): its collections, triggered by allocation counts,
    would rescan the growing heap again and again, which doubles the time of a large post.
    The pause may span awaits: other requests meanwhile only have their cycles collected
    later, and overlapping pauses end with the collector running again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _tags(value: Any, index: int | None) -> list[str]:
    if not value:  # None or [], the usual case
        if value is None or type(value) is list:
            return []
    elif type(value) is list:
        for tag in value:
            if type(tag) is not str:
                break
            # a tag of at most MAX_TAG_BYTES // 4 characters cannot exceed the limit
            if "\x00" in tag or (len(tag) > MAX_TAG_BYTES // 4
                                 and len(tag.encode()) > MAX_TAG_BYTES):
                raise BadRequest(f"{_where(index)}: tag {tag[:40]!r}... must be at most "
                                 f"{MAX_TAG_BYTES} bytes of UTF-8 without NUL characters")
        else:
            return value
    raise BadRequest(f"{_where(index)}: Tags must be a list of strings")


def _prop(value: Any, index: int | None) -> dict[str, str]:
    if value is None:
        return {}
    if type(value) is not dict or (value and not all(type(v) is str for v in value.values())):
        raise BadRequest(f"{_where(index)}: Prop must be an object of string values, "
                         '{"name": "value", ...}')
    return value


def _rels(value: Any, index: int | None) -> list[dict[str, Any]]:
    if not value and (value is None or type(value) is list):
        return []
    shape = '{"Rel": ..., "To": [x, y, z]}'
    if type(value) is not list:
        raise BadRequest(f"{_where(index)}: Rels must be a list of {shape}")
    exact = True  # Rel then To and nothing else: the posted list is already canonical
    for k, posted in enumerate(value):
        rel = posted
        if type(rel) is dict and not _REL_FIELDS <= rel.keys():
            rel = _case_folded(rel, _REL_CASES)
        if type(rel) is not dict or not _REL_FIELDS <= rel.keys():
            raise BadRequest(f"{_where(index)}: relationship {k} must be {shape}")
        _named(rel["Rel"], RELATIONS, _REL_SET, f"{_where(index)}: relationship {k} has Rel")
        to = rel["To"]
        if not _is_point(to):
            raise _bad_point(to, f"{_where(index)}: relationship {k}'s To")
        exact = exact and rel is posted and len(rel) == 2 and next(iter(rel)) == "Rel"
    if exact:
        return value
    folded = [r if _REL_FIELDS <= r.keys() else _case_folded(r, _REL_CASES) for r in value]
    return [{"Rel": r["Rel"], "To": r["To"]} for r in folded]


def _named(value: Any, names: tuple[str, ...], allowed: frozenset[str], what: str) -> str:
    """``value`` if it is one of ``names``, else a 400 saying ``what`` it was."""
    if type(value) is not str or value not in allowed:
        raise BadRequest(f"{what} {orjson.dumps(value).decode()}; use one of {', '.join(names)}")
    return value


def _case_folded(raw: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """``raw`` with its keys spelled as ``names`` (lower case → canonical) spells them, in
    any case, as DVID's JSON decoding takes them (a later key wins); others are dropped."""
    out = {}
    for key, value in raw.items():
        known = names.get(key.lower())
        if known is not None:
            out[known] = value
    return out


def parse_element(raw: Any, index: int | None = None) -> Element:
    """One element in canonical form, or a 400 naming the element and what is wrong."""
    if type(raw) is not dict:
        raise BadRequest(f"{_where(index)} must be a JSON object with Pos and Kind")
    if not raw.keys() <= _FIELD_SET:  # a field spelled in another case, or an unknown one
        raw = _case_folded(raw, _FIELD_CASES)
    if "Pos" not in raw or "Kind" not in raw:
        missing = [f for f in ("Pos", "Kind") if f not in raw]
        raise BadRequest(f"{_where(index)} lacks {' and '.join(missing)}")
    pos = raw["Pos"]
    kind = _named(raw["Kind"], KINDS, _KIND_SET, f"{_where(index)} has Kind")
    if not _is_point(pos):
        raise _bad_point(pos, f"{_where(index)}'s Pos")
    return {"Pos": pos, "Kind": kind, "Tags": _tags(raw.get("Tags"), index),
            "Prop": _prop(raw.get("Prop"), index), "Rels": _rels(raw.get("Rels"), index)}


def parse_elements(data: bytes) -> list[Element]:
    """A POSTed JSON array of elements, all validated (any fault refuses the whole post)."""
    with bulk():
        raw = decode_json(data, list, "a JSON array of annotation elements")
        return [parse_element(e, i) for i, e in enumerate(raw)]


def parse_labels(data: bytes) -> list[tuple[int, list[Element]]]:
    """A POSTed ``{"<label>": "<JSON array of elements>", ...}`` object (DVID's POST labels:
    each value is a string holding an array), all validated; (label, elements) pairs in
    posted order."""
    with bulk():
        raw = decode_json(data, dict, 'a JSON object {"<label>": "[elements]", ...}')
        out = []
        for key, text in raw.items():
            if not (key.isascii() and key.isdigit()) or int(key) >= 2**64:
                raise BadRequest(f"label {key[:40]!r} must be an integer from 0 to 2^64-1")
            if type(text) is not str:
                raise BadRequest(f"label {key}: the value must be a string holding a JSON "
                                 "array of elements, as DVID's label index keeps them")
            try:
                items = orjson.loads(text)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"label {key}: the string is not valid JSON: {exc}") from exc
            if type(items) is not list:
                raise BadRequest(f"label {key}: the string must hold a JSON array of elements")
            try:
                out.append((int(key), [parse_element(e, i) for i, e in enumerate(items)]))
            except BadRequest as exc:
                raise BadRequest(f"label {key}: {exc.message}") from None
        return out


def parse_block_key(key: str) -> Point:
    """A block coordinate ``"x,y,z"`` (the keys of /blocks objects)."""
    parts = key.split(",")
    try:
        coord = tuple(int(p) for p in parts)
    except ValueError:
        coord = ()
    if len(coord) != 3 or not all(INT32_MIN <= c <= INT32_MAX for c in coord):
        raise BadRequest(f'block key {key[:40]!r} must be "x,y,z", three integers')
    return coord  # type: ignore[return-value]


def parse_blocks(data: bytes, block: Point) -> dict[Point, list[Element]]:
    """A POSTed ``{"x,y,z": [elements], ...}`` object; every element must lie in the block
    it is listed under."""
    with bulk():
        raw = decode_json(data, dict, 'a JSON object {"x,y,z": [elements], ...}')
    out: dict[Point, list[Element]] = {}
    for key, items in raw.items():
        coord = parse_block_key(key)
        if type(items) is not list:
            raise BadRequest(f"block {key}: the value must be a JSON array of elements")
        with bulk():
            elements = [parse_element(e, i) for i, e in enumerate(items)]
        for i, element in enumerate(elements):
            if block_of(element["Pos"], block) != coord:
                raise BadRequest(f"block {key}: element {i} at {element['Pos']} lies in block "
                                 f"{','.join(map(str, block_of(element['Pos'], block)))}, "
                                 f"not {key} (blocks are {'x'.join(map(str, block))} voxels)")
        out[coord] = elements
    return out


def block_of(pos: Sequence[int], block: Point) -> Point:
    return pos[0] // block[0], pos[1] // block[1], pos[2] // block[2]


def group_by_block(elements: Sequence[Element], block: Point
                   ) -> list[tuple[Point, list[Element]]]:
    """The elements by the block holding their Pos, in posted order within each block."""
    if not elements:
        return []
    positions = np.array([e["Pos"] for e in elements], np.int64)
    coords, inverse = distinct_rows(positions // np.array(block, np.int64))
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(coords) + 1))
    rows = order.tolist()
    with bulk():
        return [(tuple(c), [elements[i] for i in rows[lo:hi]])  # type: ignore[misc]
                for c, lo, hi in zip(coords.tolist(), bounds[:-1].tolist(),
                                     bounds[1:].tolist(), strict=True)]


def without_rels(element: Element) -> Element:
    """The element as tag (and, later, label) indices keep it."""
    return {"Pos": element["Pos"], "Kind": element["Kind"], "Tags": element["Tags"],
            "Prop": element["Prop"]}


def encode_elements(elements: Sequence[Element]) -> bytes:
    return orjson.dumps(elements)


def decode_elements(data: bytes | memoryview) -> list[Element]:
    """Stored (canonical) elements; no validation, they were validated when written."""
    return orjson.loads(data)  # type: ignore[no-any-return]


def join_arrays(arrays: Iterable[bytes]) -> bytes:
    """Concatenate JSON arrays without decoding them."""
    inner = [a[1:-1] for a in arrays if len(a) > 2]
    return b"[" + b",".join(inner) + b"]"


def encode_block_map(blocks: Iterable[tuple[Point, bytes]]) -> bytes:
    """``{"x,y,z": <elements>, ...}`` from stored block values, spliced as they are."""
    parts = [b'"%d,%d,%d":' % coord + raw for coord, raw in blocks]
    return b"{" + b",".join(parts) + b"}"
