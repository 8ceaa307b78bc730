"""DVID's value serialization (§2.3): one format byte, ``compression << 5 | checksum << 3``
(we never add a checksum), then the payload: raw bytes, a gzip stream, or an LZ4 block after
its uncompressed length (uint32 LE). Blocks, label indices and other stored values share it;
JPEG payloads are the image codecs' business and are only recognised here.
"""

from __future__ import annotations

import struct
import zlib

import lz4.block
from typing_extensions import Buffer

__all__ = ["GZIP", "JPEG", "LZ4", "NONE", "deserialize", "gzip_bytes", "serialize",
           "stored_format"]

NONE, GZIP, LZ4, JPEG = 0, 2, 4, 5
NAMES = {NONE: "none", GZIP: "gzip", LZ4: "lz4", JPEG: "jpeg"}
_LENGTH = struct.Struct("<I")
GZIP_LEVEL = 6


def stored_format(stored: Buffer) -> int:
    """The compression number of a serialized value."""
    view = memoryview(stored)
    if not view.nbytes:
        raise ValueError("a stored value needs at least its format byte")
    return view[0] >> 5


def gzip_bytes(payload: Buffer) -> bytes:
    """A gzip stream of ``payload`` (DVID's gzip payloads and wire formats)."""
    packer = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    return packer.compress(payload) + packer.flush()


def serialize(payload: Buffer, compression: int) -> bytes:
    """The stored form of ``payload`` with ``compression`` (NONE, GZIP or LZ4)."""
    header = bytes([compression << 5])
    if compression == LZ4:
        raw = memoryview(payload)
        return header + _LENGTH.pack(raw.nbytes) + lz4.block.compress(raw, store_size=False)
    if compression == GZIP:
        return header + gzip_bytes(payload)
    if compression == NONE:
        return header + bytes(payload)
    raise ValueError(f"cannot serialize with compression {compression}")


def deserialize(stored: Buffer) -> Buffer:
    """The payload of a NONE, GZIP or LZ4 serialized value (a view of ``stored`` when it was
    not compressed)."""
    view = memoryview(stored)
    fmt = stored_format(view)
    if fmt == LZ4:
        if view.nbytes < 5:
            raise ValueError("an LZ4 value is cut short before its length")
        (length,) = _LENGTH.unpack_from(view, 1)
        return lz4.block.decompress(view[5:], uncompressed_size=length)
    if fmt == GZIP:
        return zlib.decompress(view[1:], 31)
    if fmt == NONE:
        return view[1:]
    raise ValueError(f"stored value has unsupported compression {NAMES.get(fmt, fmt)}")
