"""annotation tkeys. Every denormalization is kept per block, so an edit rewrites only what
the blocks it changes imply, however many elements an instance or a tag holds:

- ``72 | IZYX``: a block's elements with their relationships (DVID's class 72), the source
  of truth; a canonical JSON array sorted by position.
- ``70 | tag | 0x00 | IZYX``: the elements of that block having the tag, without
  relationships; a tag's elements are one range scan of its prefix.
- ``73 | IZYX``: the blocks holding elements with a relationship pointing into this block
  (JSON ``[[x,y,z], ...]``), so deleting or moving an element finds every element pointing
  at it without a scan, also when relationships are not reciprocal.

Class 71 stays free for the per-label denormalization that syncing with a segmentation adds
(``71 | label u64 | IZYX``, in the same per-block form).
"""

from __future__ import annotations

from dvidql.datatypes.imageblk.keys import decode_izyx, izyx
from dvidql.datatypes.voxels import Point

__all__ = ["BLOCK", "INBOUND", "TAG", "block_tkey", "decode_block_tkey", "decode_tag_tkey",
           "describe", "inbound_tkey", "tag_prefix", "tag_tkey"]

TAG = 70
BLOCK = 72
INBOUND = 73
_IZYX_SIZE = 12


def block_tkey(coord: Point) -> bytes:
    return bytes([BLOCK]) + izyx(coord)


def decode_block_tkey(tkey: bytes) -> Point:
    return decode_izyx(tkey[1:])


def inbound_tkey(coord: Point) -> bytes:
    return bytes([INBOUND]) + izyx(coord)


def tag_prefix(tag: str) -> bytes:
    """Every block's entry of one tag starts with this (tags hold no NUL, so no tag's prefix
    starts another's)."""
    return bytes([TAG]) + tag.encode() + b"\x00"


def tag_tkey(tag: str, coord: Point) -> bytes:
    return tag_prefix(tag) + izyx(coord)


def decode_tag_tkey(tkey: bytes) -> tuple[str, Point]:
    return tkey[1:-_IZYX_SIZE - 1].decode(), decode_izyx(tkey[-_IZYX_SIZE:])


def describe(tkey: bytes) -> str:
    """A readable form of any annotation tkey."""
    if tkey[:1] == bytes([TAG]):
        tag, coord = decode_tag_tkey(tkey)
        return f"tag {tag!r} in block {coord}"
    name = {BLOCK: "block", INBOUND: "relationships into block"}.get(tkey[0], "key")
    return f"{name} {decode_izyx(tkey[1:])}"
