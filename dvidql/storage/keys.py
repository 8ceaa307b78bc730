"""Full-key byte layout of the metadata store (big-endian, so byte order is numeric order).

Spaces, by first byte::

    0x00 | name                              server metadata (counters, repo documents)
    0x01 | instance u32 | tkey | version u32  versioned data entry; value = tag + payload
    0x02 | version u32 | instance u32 | tkey   change index: what each version wrote
    0x03 | repo u32 | mutation id u64          mutation log record

A tkey (type-specific key) family must be prefix-free (fixed length, or terminated) so that
the four version bytes after it delimit it.
"""

from __future__ import annotations

import struct

__all__ = [
    "CHANGE",
    "DATA",
    "DATA_KEY_OVERHEAD",
    "META",
    "MUTATION",
    "change_key",
    "change_prefix",
    "data_key",
    "data_prefix",
    "instance_range",
    "meta_key",
    "mutation_key",
    "mutation_prefix",
    "split_data_key",
]

META = b"\x00"
DATA = b"\x01"
CHANGE = b"\x02"
MUTATION = b"\x03"

DATA_KEY_OVERHEAD = 10  # space byte, instance id, version id, and a tkey terminator if any

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def meta_key(name: str) -> bytes:
    return META + name.encode()


def data_prefix(instance: int, tkey: bytes) -> bytes:
    """Every version's entry of one logical key starts with this."""
    return DATA + _U32.pack(instance) + tkey


def data_key(instance: int, tkey: bytes, version: int) -> bytes:
    return DATA + _U32.pack(instance) + tkey + _U32.pack(version)


def split_data_key(key: bytes) -> tuple[bytes, int]:
    """(tkey, version) of a data key."""
    return key[5:-4], _U32.unpack_from(key, len(key) - 4)[0]


def instance_range(instance: int) -> tuple[bytes, bytes]:
    return DATA + _U32.pack(instance), DATA + _U32.pack(instance + 1)


def change_prefix(version: int) -> bytes:
    return CHANGE + _U32.pack(version)


def change_key(version: int, instance: int, tkey: bytes) -> bytes:
    return CHANGE + _U32.pack(version) + _U32.pack(instance) + tkey


def mutation_prefix(repo: int) -> bytes:
    return MUTATION + _U32.pack(repo)


def mutation_key(repo: int, mutation_id: int) -> bytes:
    return MUTATION + _U32.pack(repo) + _U64.pack(mutation_id)
