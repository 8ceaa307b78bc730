"""Stored form of image blocks, byte-compatible with DVID's value serialization (§2.3,
:mod:`dvidql.codec.serialization`): raw, gzip or LZ4 voxels, or a grayscale JPEG whose width
is the block's X size and whose height is Y·Z rows, the layout neuroglancer decodes from
``subvolblocks``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import simplejpeg
from typing_extensions import Buffer

from dvidql.codec.serialization import JPEG, NAMES, deserialize, serialize, stored_format
from dvidql.errors import BadRequest

__all__ = [
    "BlockCodec",
    "decode_block",
    "encode_block",
    "encode_jpeg",
    "stored_jpeg",
]

_FORMATS = {name: number for number, name in NAMES.items()}
DEFAULT_JPEG_QUALITY = 75  # Go's image/jpeg default, which DVID uses


@dataclass(frozen=True)
class BlockCodec:
    """How an instance stores its blocks: ``none``, ``gzip``, ``lz4`` or ``jpeg[:quality]``."""

    name: str
    quality: int = DEFAULT_JPEG_QUALITY

    @classmethod
    def parse(cls, text: str) -> BlockCodec:
        name, _, quality = text.strip().lower().partition(":")
        if name not in _FORMATS:
            raise BadRequest(f"unknown block compression {text!r}; use one of "
                             "none, gzip, lz4 or jpeg (optionally jpeg:<quality 1-100>)")
        if not quality:
            return cls(name)
        if name != "jpeg":
            raise BadRequest(f"only jpeg takes a quality, not {name!r}")
        return cls(name, jpeg_quality(quality))

    def __str__(self) -> str:
        return f"jpeg:{self.quality}" if self.name == "jpeg" else self.name

    dtype = np.dtype(np.uint8)

    def encode(self, block: np.ndarray) -> bytes:
        return encode_block(block, self)

    def decode(self, stored: Buffer, shape: tuple[int, int, int]) -> np.ndarray:
        return decode_block(stored, shape)

    def describe(self) -> str:
        """The text of the info JSON's ``Base.Compression``; neuroglancer looks for a
        lowercase ``jpeg`` in it to choose its JPEG block reader."""
        if self.name == "jpeg":
            return f"jpeg compression, quality {self.quality}"
        return {"none": "No compression", "gzip": "gzip compression",
                "lz4": "LZ4 compression"}[self.name]


def jpeg_quality(text: str) -> int:
    """A JPEG quality from a URL or setting: an integer from 1 to 100."""
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise BadRequest(f"JPEG quality must be an integer from 1 to 100, not {text!r}")
    return int(text)


def encode_jpeg(block: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
    """A (z, y, x) uint8 block, or a 2D image, as one grayscale JPEG of width x, height y·z."""
    rows = np.ascontiguousarray(block.reshape(-1, block.shape[-1]))
    return bytes(simplejpeg.encode_jpeg(rows[:, :, None], quality=quality, colorspace="GRAY"))


def _decode_jpeg(payload: Buffer, shape: tuple[int, ...]) -> np.ndarray:
    image = simplejpeg.decode_jpeg(payload, colorspace="GRAY")
    if image.size != int(np.prod(shape)):
        raise ValueError(f"JPEG block holds {image.shape[:2]} pixels, expected {shape}")
    return image.reshape(shape)


def encode_block(block: np.ndarray, codec: BlockCodec) -> bytes:
    """The stored form of a C-ordered (z, y, x) uint8 block."""
    fmt = _FORMATS[codec.name]
    if fmt == JPEG:
        return bytes([fmt << 5]) + encode_jpeg(block, codec.quality)
    return serialize(np.ascontiguousarray(block).data, fmt)


def decode_block(stored: Buffer, shape: tuple[int, int, int]) -> np.ndarray:
    """The (z, y, x) uint8 voxels of a stored block (read-only, and a view of ``stored``, when
    no copy was needed)."""
    view = memoryview(stored)
    if stored_format(view) == JPEG:
        return _decode_jpeg(view[1:], shape)
    raw = deserialize(view)
    size = shape[0] * shape[1] * shape[2]
    if len(raw) != size:
        raise ValueError(f"stored block holds {len(raw)} bytes, expected {size}")
    return np.frombuffer(raw, np.uint8).reshape(shape)


def stored_jpeg(stored: bytes) -> bytes | None:
    """The JPEG bytes of a block stored as JPEG (None otherwise), served without re-coding."""
    return stored[1:] if stored_format(stored) == JPEG else None


def stored_codec_name(stored: bytes) -> str:
    return NAMES.get(stored_format(stored), "unknown")
