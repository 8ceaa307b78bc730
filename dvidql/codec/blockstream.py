"""DVID's block streams: per block, int32 LE x, y, z (block coordinates), an int32 byte count,
then that many bytes. ``subvolblocks``, ``specificblocks`` and ``blocks`` answer with them and
labelmap's ``POST blocks`` takes one."""

from __future__ import annotations

import struct
from collections.abc import Iterable

from typing_extensions import Buffer

__all__ = ["decode_block_stream", "encode_block_stream"]

_HEADER = struct.Struct("<iiii")

Coord = tuple[int, int, int]


def encode_block_stream(records: Iterable[tuple[Coord, Buffer]]) -> bytes:
    parts: list[Buffer] = []
    for coord, payload in records:
        parts.append(_HEADER.pack(*coord, memoryview(payload).nbytes))
        parts.append(payload)
    return b"".join(parts)


def decode_block_stream(data: Buffer) -> list[tuple[Coord, memoryview]]:
    """The records of a stream, payloads as views of ``data``; ValueError if it is cut short
    or a count is negative."""
    view = memoryview(data).cast("B")
    records: list[tuple[Coord, memoryview]] = []
    at = 0
    while at < view.nbytes:
        if view.nbytes - at < _HEADER.size:
            raise ValueError(f"block stream ends inside a block header at byte {at}")
        x, y, z, count = _HEADER.unpack_from(view, at)
        at += _HEADER.size
        if count < 0 or at + count > view.nbytes:
            raise ValueError(f"block ({x}, {y}, {z}) claims {count} bytes but the stream has "
                             f"{view.nbytes - at} left")
        records.append(((x, y, z), view[at:at + count]))
        at += count
    return records
