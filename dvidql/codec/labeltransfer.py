"""Wire forms of a box of uint64 labels (labelmap ``raw`` with ``compression=``): LZ4 or gzip
of the packed little-endian (z, y, x) array, or neuroglancer's compressed_segmentation
(``google``, and gzipped ``googlegzip``, the form neuroglancer's dvid:// source reads)."""

from __future__ import annotations

import zlib

import compressed_segmentation
import lz4.block
import numpy as np
from typing_extensions import Buffer

from dvidql.codec.serialization import gzip_bytes

__all__ = ["READ_TRANSFERS", "WRITE_TRANSFERS", "decode_labels", "encode_labels"]

READ_TRANSFERS = ("lz4", "gzip", "google", "googlegzip")
WRITE_TRANSFERS = ("lz4", "gzip")
_SUB = (8, 8, 8)  # neuroglancer's compressed_segmentation block, as DVID serves it


def encode_labels(volume: np.ndarray, compression: str) -> bytes:
    """A (z, y, x) uint64 box in a ``READ_TRANSFERS`` form."""
    if compression in ("google", "googlegzip"):
        # the (x, y, z) Fortran-order view is the layout neuroglancer decodes
        encoded = compressed_segmentation.compress(np.ascontiguousarray(volume).T,
                                                   block_size=_SUB, order="F")
        return gzip_bytes(encoded) if compression == "googlegzip" else bytes(encoded)
    raw = np.ascontiguousarray(volume, "<u8").data.cast("B")
    if compression == "lz4":
        return lz4.block.compress(raw, store_size=False)
    if compression == "gzip":
        return gzip_bytes(raw)
    raise ValueError(f"unknown label transfer compression {compression!r}")


def decode_labels(body: Buffer, compression: str, shape: tuple[int, int, int]) -> np.ndarray:
    """A (z, y, x) uint64 box sent in a ``WRITE_TRANSFERS`` form; ValueError if it does not
    decode to exactly that many voxels."""
    size = shape[0] * shape[1] * shape[2] * 8
    try:
        if compression == "lz4":
            raw = lz4.block.decompress(body, uncompressed_size=size)
        elif compression == "gzip":
            raw = zlib.decompress(body, 31)
        else:
            raise ValueError(f"unknown label transfer compression {compression!r}")
    except (lz4.block.LZ4BlockError, zlib.error) as exc:
        raise ValueError(f"the body is not {compression} data: {exc}") from None
    if len(raw) != size:
        raise ValueError(f"the {compression} body holds {len(raw)} bytes; a box of "
                         f"{shape[::-1]} (x, y, z) uint64 voxels needs {size}")
    return np.frombuffer(raw, "<u8").reshape(shape).astype(np.uint64, copy=False)
