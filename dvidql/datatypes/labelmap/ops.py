"""labelmap operations beyond the shared block-volume ones of ``imageblk.ops``."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import lz4.block
import numpy as np
from typing_extensions import Buffer

from dvidql.codec.labelblock import LabelCodec, decode_label_block
from dvidql.codec.serialization import GZIP, deserialize, gzip_bytes, stored_format
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import layout
from dvidql.datatypes.imageblk.ops import (
    check_request_size,
    decode_stored,
    read_stored,
    write_blocks,
)
from dvidql.datatypes.voxels import INT32_MAX, INT32_MIN, Point
from dvidql.errors import BadRequest
from dvidql.parallel import in_parallel

__all__ = ["ingest_compressed", "labels_at", "stream_payloads"]


async def labels_at(h: DataHandle, points: np.ndarray) -> np.ndarray:
    """The labels at (n, 3) voxel x, y, z points, 0 where nothing was written; each block
    under the points is read and decoded once."""
    pts = np.asarray(points, np.int64).reshape(-1, 3)
    if pts.size and (pts.min() < INT32_MIN or pts.max() > INT32_MAX):
        raise BadRequest("points must lie within the 32-bit coordinate range")
    lay = layout(h.instance)
    block = np.asarray(lay.block, np.int64)
    coords = pts // block
    unique, inverse = np.unique(coords, axis=0, return_inverse=True)
    check_request_size(h, len(unique) * lay.block_voxels * lay.dtype.itemsize,
                       "the blocks under these points")
    decoded = await decode_stored(h, await read_stored(h, [tuple(int(v) for v in c)
                                                           for c in unique]))
    out = np.zeros(len(pts), lay.dtype)
    local = pts - coords * block
    # the points of block i are by_block[starts[i]:starts[i + 1]]
    by_block = np.argsort(inverse.reshape(-1), kind="stable")
    starts = np.searchsorted(inverse.reshape(-1)[by_block], np.arange(len(unique) + 1))
    for i, voxels in enumerate(decoded):
        if voxels is not None:
            mine = by_block[starts[i]:starts[i + 1]]
            out[mine] = voxels[local[mine, 2], local[mine, 1], local[mine, 0]]
    return out


def _payload(stored: bytes, compression: str, codec: LabelCodec,
             shape: tuple[int, int, int]) -> bytes:
    """One block of a stream: ``blocks`` is the gzip of DVID's compressed block (sent as
    stored when the instance keeps gzip), the others the raw uint64 array."""
    if compression == "blocks" and stored_format(stored) == GZIP:
        return stored[1:]
    if compression == "blocks":
        return gzip_bytes(deserialize(stored))
    raw = codec.decode(stored, shape).astype("<u8", copy=False).tobytes()
    if compression == "lz4":
        return lz4.block.compress(raw, store_size=False)
    return gzip_bytes(raw) if compression == "gzip" else raw


async def stream_payloads(h: DataHandle, coords: Sequence[Point],
                          compression: str) -> list[tuple[Point, bytes]]:
    """The stored blocks among ``coords`` with their stream payloads, in the given order."""
    lay = layout(h.instance)
    assert isinstance(lay.codec, LabelCodec)
    codec = lay.codec
    stored = await read_stored(h, coords)
    found = [(c, s) for c, s in zip(coords, stored, strict=True) if s is not None]

    def work(part: Sequence[tuple[Point, bytes]]) -> list[tuple[Point, bytes]]:
        return [(c, _payload(s, compression, codec, lay.block_shape)) for c, s in part]

    return await in_parallel(found, work)


async def ingest_compressed(h: DataHandle, records: Sequence[tuple[Point, Buffer]]) -> int:
    """Write blocks given as the gzip of DVID's compressed label block, after decoding every
    one (a malformed block refuses the whole request)."""
    shape = layout(h.instance).block_shape

    def work(part: Sequence[tuple[Point, Buffer]]) -> list[tuple[Point, np.ndarray]]:
        out = []
        for coord, payload in part:
            try:
                out.append((coord, decode_label_block(zlib.decompress(payload, 31), shape)))
            except (ValueError, zlib.error) as exc:
                raise BadRequest(f"block {coord}: not a gzipped label block of shape "
                                 f"{shape[::-1]} (x, y, z): {exc}") from None
        return out

    blocks = await in_parallel(records, work)
    if len({c for c, _ in blocks}) != len(blocks):
        raise BadRequest("the block stream names a block more than once")
    return await write_blocks(h, blocks)
