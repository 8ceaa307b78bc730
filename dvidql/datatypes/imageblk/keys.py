"""uint8blk tkeys: blocks by IZYX coordinate (DVID's class 23), pyramid work markers, and the
instance-wide extents record."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import orjson

from dvidql.datatypes.voxels import Point
from dvidql.storage import keys as K
from dvidql.versions.dag import Instance, Repo

__all__ = [
    "BLOCK",
    "DIRTY",
    "EXTENTS",
    "SCALED_BLOCK",
    "SCALED_DIRTY",
    "block_tkey",
    "decode_extents",
    "decode_izyx",
    "dirty_prefix",
    "dirty_tkey",
    "encode_extents",
    "extents_key",
]

BLOCK = 23
DIRTY = 24  # "this block changed since the next scale was computed from it"
SCALED_BLOCK = 25  # + scale byte: a block of a lower scale kept in the same instance
SCALED_DIRTY = 26  # + scale byte: the dirty marker of such a block
EXTENTS = bytes([1]) + b"extents"
_IZYX = struct.Struct(">III")
_FLIP = 0x80000000


def izyx(coord: Point) -> bytes:
    """z, y, x as uint32 BE of (value XOR 0x80000000): z-major, sign-correct key order."""
    x, y, z = coord
    return _IZYX.pack((z & 0xFFFFFFFF) ^ _FLIP, (y & 0xFFFFFFFF) ^ _FLIP, (x & 0xFFFFFFFF) ^ _FLIP)


def decode_izyx(raw: bytes) -> Point:
    z, y, x = (((v ^ _FLIP) + 2**31) % 2**32 - 2**31 for v in _IZYX.unpack(raw))
    return x, y, z


def block_tkey(coord: Point, scale: int = 0) -> bytes:
    """A block's key; lower scales (labelmap's, within one instance) add a scale byte."""
    return (bytes([SCALED_BLOCK, scale]) if scale else bytes([BLOCK])) + izyx(coord)


def dirty_tkey(coord: Point, scale: int = 0) -> bytes:
    return (bytes([SCALED_DIRTY, scale]) if scale else bytes([DIRTY])) + izyx(coord)


def dirty_prefix(scale: int = 0) -> bytes:
    return bytes([SCALED_DIRTY, scale]) if scale else bytes([DIRTY])


def extents_key(repo: Repo, instance: Instance) -> bytes:
    """The full store key of the instance-wide extents record (kept at the repo root, so
    every version's writes grow one record that viewers read from the repo info)."""
    return K.data_key(instance.instance_id, EXTENTS, repo.root_version)


def encode_extents(lo: Sequence[int], hi: Sequence[int]) -> bytes:
    return b"\x01" + orjson.dumps({"MinPoint": list(lo), "MaxPoint": list(hi)})


def decode_extents(raw: bytes | None) -> dict[str, list[int]] | None:
    """``{"MinPoint": [x,y,z], "MaxPoint": [x,y,z]}`` (inclusive voxels), None if unset."""
    return None if raw is None else orjson.loads(raw[1:])
