"""Block-volume operations: the one implementation behind REST, GraphQL, ingest and pyramids
of the voxel types (uint8blk grayscale, labelmap segmentation); each instance's layout says
how its blocks are encoded and what its voxels are.

Blocks are encoded and decoded on a small thread pool (the codecs release the GIL), a batch
of blocks per thread hop, and go to the blob store in one batch before the metadata
transaction that points at them, so a failed write leaves at most unreferenced blobs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import numpy as np
from typing_extensions import Buffer

from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import Layout, layout
from dvidql.datatypes.imageblk.keys import (
    block_tkey,
    decode_extents,
    decode_izyx,
    dirty_prefix,
    dirty_tkey,
    encode_extents,
    extents_key,
)
from dvidql.datatypes.voxels import Box, Point, block_coords, new_volume, paste, split_blocks
from dvidql.errors import BadRequest, PayloadTooLarge
from dvidql.parallel import in_parallel
from dvidql.storage.base import Txn

__all__ = [
    "check_request_size",
    "decode_stored",
    "put_block",
    "read_box",
    "read_stored",
    "set_extents",
    "stored_coords",
    "write_blocks",
    "write_box",
]

_MARK = b"\x01"  # an inline, empty value: the dirty marker's presence is the information


def check_request_size(h: DataHandle, nbytes: int, what: str = "this request") -> None:
    if h.max_request_bytes and nbytes > h.max_request_bytes:
        raise PayloadTooLarge(f"{what} covers {nbytes} bytes of voxels, over this server's "
                              f"{h.max_request_bytes}-byte limit; ask for smaller boxes")


# ----- reads -----------------------------------------------------------------------------

async def read_stored(h: DataHandle, coords: Sequence[Point]) -> list[bytes | None]:
    """Stored blocks (None where absent) at the handle's version, in one batch."""
    return await h.kv.get_many(h.instance_id, [block_tkey(c, h.scale) for c in coords], h.lineage)


async def decode_stored(h: DataHandle, stored: Sequence[bytes | None]) -> list[np.ndarray | None]:
    lay = layout(h.instance)

    def work(part: Sequence[bytes | None]) -> list[np.ndarray | None]:
        return [None if s is None else lay.codec.decode(s, lay.block_shape) for s in part]

    return await in_parallel(stored, work)


async def read_box(h: DataHandle, box: Box) -> np.ndarray:
    """The box's (z, y, x) voxels; background where nothing was written. Blocks are decoded
    straight from the store's memory where it allows, on the worker threads."""
    lay = layout(h.instance)
    check_request_size(h, box.voxels * lay.dtype.itemsize)
    lo, hi = box.block_span(lay.block)
    coords = block_coords(lo, hi)
    entries = await h.kv.get_raw_many(
        h.instance_id, [block_tkey(tuple(c), h.scale) for c in coords], h.lineage)
    present = [i for i, e in enumerate(entries) if e is not None]
    out = new_volume(box, len(present) == len(entries), lay.background, lay.dtype)

    def place(index: int, stored: Buffer) -> None:
        coord = coords[present[index]]
        paste(out, box, lay.block, coord, lay.codec.decode(stored, lay.block_shape))

    await h.kv.visit([entries[i] for i in present], place)  # type: ignore[misc]
    return out


async def stored_coords(h: DataHandle, box: Box) -> list[Point]:
    """Coordinates of the blocks stored at this version within the box's block span."""
    lay = layout(h.instance)
    lo, hi = box.block_span(lay.block)
    found: list[Point] = []
    for z in range(lo[2], hi[2] + 1):
        for y in range(lo[1], hi[1] + 1):
            first, last = block_tkey((lo[0], y, z), h.scale), block_tkey((hi[0], y, z), h.scale)
            async for tkey, _ in h.kv.scan(h.instance_id, h.lineage, first, last,
                                           keys_only=True):
                found.append(decode_izyx(tkey[-12:]))
    return found


# ----- writes ----------------------------------------------------------------------------

async def write_box(h: DataHandle, box: Box, volume: np.ndarray) -> int:
    """Store a block-aligned (z, y, x) volume; returns the mutation id."""
    lay = layout(h.instance)
    box.require_aligned(lay.block)
    check_request_size(h, box.voxels * lay.dtype.itemsize)
    if volume.shape != box.shape:
        raise BadRequest(f"voxel data has shape {volume.shape}, expected {box.shape} (z, y, x)")
    return await write_blocks(h, list(split_blocks(volume, box, lay.block)))


async def write_blocks(
    h: DataHandle,
    blocks: Sequence[tuple[Point, np.ndarray]],
    *,
    also: Callable[[Txn, int], Awaitable[None]] | None = None,
    record: Mapping[str, Any] | None = None,
    mark: bool = True,
) -> int:
    """Store whole (z, y, x) blocks in one transaction (all or nothing); marks them for the
    next pyramid level and grows the extents. ``also(txn, mutation_id)`` adds writes to the
    same transaction, called before the blocks are written; ``record`` adds fields to the
    mutation's log record; ``mark=False`` leaves no marks (the lowest scale kept)."""
    if not blocks:
        raise BadRequest("no blocks to write")
    lay = layout(h.instance)
    for corner in ([min(c[i] for c, _ in blocks) for i in range(3)],  # voxels within int32
                   [max(c[i] for c, _ in blocks) for i in range(3)]):
        Box(tuple(c * b for c, b in zip(corner, lay.block, strict=True)), lay.block)  # type: ignore[arg-type]
    for coord, voxels in blocks:
        if voxels.dtype != lay.dtype:
            raise BadRequest(f"block {coord} holds {voxels.dtype} voxels, expected {lay.dtype}")
        if voxels.shape != lay.block_shape:
            raise BadRequest(f"block {coord} has shape {voxels.shape}, expected "
                             f"{lay.block_shape} (z, y, x)")

    def work(part: Sequence[tuple[Point, np.ndarray]]) -> list[bytes]:
        return [lay.codec.encode(voxels) for _, voxels in part]

    entries = await h.kv.encode_many(await in_parallel(blocks, work), blob=True)
    coords = [coord for coord, _ in blocks]
    lo = [min(c[i] for c in coords) for i in range(3)]
    hi = [max(c[i] for c in coords) for i in range(3)]
    async with h.writing() as txn:
        mutation_id = await h.log(txn, {"Action": "post-blocks", "Blocks": len(coords),
                                        "MinBlock": lo, "MaxBlock": hi, **(record or {})})
        if also is not None:  # first, so that it reads the store as it was before the write
            await also(txn, mutation_id)
        for coord, raw in zip(coords, entries, strict=True):
            put_block(h, txn, coord, raw, mark=mark)
        if not h.scale:  # extents are in scale-0 voxels
            await _grow_extents(h, txn, lay, coords)
        return mutation_id


def put_block(h: DataHandle, txn: Txn, coord: Point, raw: bytes, *, mark: bool) -> None:
    """Write an encoded block entry at the handle's scale; ``mark`` marks it for the next
    scale down."""
    versioned = h.instance.versioned
    h.kv.put_raw(txn, h.instance_id, block_tkey(coord, h.scale), h.version, raw,
                 versioned=versioned)
    if mark:
        h.kv.put_raw(txn, h.instance_id, dirty_tkey(coord, h.scale), h.version, _MARK,
                     versioned=versioned)


# ----- extents (instance-wide, grown by writes, settable) --------------------------------

async def _grow_extents(h: DataHandle, txn: Txn, lay: Layout, coords: Sequence[Point]) -> None:
    key = extents_key(h.repo, h.instance)
    current = decode_extents(await txn.get(key))
    lo = [min(c[i] for c in coords) * lay.block[i] for i in range(3)]
    hi = [(max(c[i] for c in coords) + 1) * lay.block[i] - 1 for i in range(3)]
    if current is not None:
        lo = [min(a, b) for a, b in zip(lo, current["MinPoint"], strict=True)]
        hi = [max(a, b) for a, b in zip(hi, current["MaxPoint"], strict=True)]
        if lo == current["MinPoint"] and hi == current["MaxPoint"]:
            return
    txn.put(key, encode_extents(lo, hi))


async def set_extents(h: DataHandle, lo: Sequence[int], hi: Sequence[int]) -> int:
    """Replace the extents (DVID's POST /extents, for stores filled from elsewhere)."""
    if any(a > b for a, b in zip(lo, hi, strict=True)):
        raise BadRequest(f"MinPoint {list(lo)} must not exceed MaxPoint {list(hi)}")
    async with h.writing() as txn:
        txn.put(extents_key(h.repo, h.instance), encode_extents(lo, hi))
        return await h.log(txn, {"Action": "set-extents", "MinPoint": list(lo),
                                 "MaxPoint": list(hi)})


# ----- pyramid levels --------------------------------------------------------------------

async def dirty_coords(h: DataHandle) -> list[Point]:
    """Blocks changed at this version (or its ancestors) since the next level was built."""
    lo = dirty_prefix(h.scale)
    hi = lo + b"\xff" * 12
    return [decode_izyx(tkey[-12:]) async for tkey, _ in
            h.kv.scan(h.instance_id, h.lineage, lo, hi, keys_only=True)]


def halve(children: np.ndarray) -> np.ndarray:
    """2x2x2 mean of a (2z, 2y, 2x) uint8 array, rounding halves up."""
    z, y, x = (n // 2 for n in children.shape)
    sums = children.reshape(z, 2, y, 2, x, 2).sum(axis=(1, 3, 5), dtype=np.uint16)
    return ((sums + 4) // 8).astype(np.uint8)


async def downres(src: DataHandle, dst: DataHandle, *, batch: int = 64,
                  reduce: Callable[[np.ndarray], np.ndarray] = halve, mark: bool = True) -> int:
    """Recompute the ``dst`` blocks (one scale down) over every block of ``src`` marked as
    changed, ``reduce`` taking each (2z, 2y, 2x) group of children to a parent block, and
    clear those marks in the same transaction, unless a child changed meanwhile (its mark
    then stays for the next pass). ``mark`` marks the ``dst`` blocks for the level below.
    Returns the blocks written."""
    src_lay, dst_lay = layout(src.instance), layout(dst.instance)
    if src_lay.block != dst_lay.block:
        raise BadRequest("pyramid levels must share one block size")
    changed = await dirty_coords(src)
    parents = sorted({(x // 2, y // 2, z // 2) for x, y, z in changed},
                     key=lambda c: (c[2], c[1], c[0]))
    by_parent: dict[Point, list[Point]] = {}
    for c in changed:
        by_parent.setdefault((c[0] // 2, c[1] // 2, c[2] // 2), []).append(c)
    bx, by, bz = src_lay.block
    written = 0
    for start in range(0, len(parents), batch):
        group = parents[start:start + batch]
        children = [(2 * px + i, 2 * py + j, 2 * pz + k)
                    for px, py, pz in group for k in (0, 1) for j in (0, 1) for i in (0, 1)]
        tkeys = [block_tkey(c, src.scale) for c in children]
        raws = await src.kv.get_raw_many(src.instance_id, tkeys, src.lineage)
        present = [r for r in raws if r is not None]
        stored = iter(await src.kv.materialize(present))
        voxels = await decode_stored(src, [None if r is None else next(stored) for r in raws])
        blocks: list[tuple[Point, np.ndarray]] = []
        for n, parent in enumerate(group):
            full = np.full((2 * bz, 2 * by, 2 * bx), src_lay.background, src_lay.dtype)
            for m in range(8):
                child = voxels[8 * n + m]
                if child is not None:
                    i, j, k = m & 1, (m >> 1) & 1, m >> 2
                    full[k * bz:(k + 1) * bz, j * by:(j + 1) * by, i * bx:(i + 1) * bx] = child
            blocks.append((parent, reduce(full)))
        marks = [c for p in group for c in by_parent[p]]

        async def clear(txn: Txn, _: int, marks: list[Point] = marks, tkeys: list[bytes] = tkeys,
                        raws: list[bytes | None] = raws) -> None:
            if await src.kv.get_raw_many(src.instance_id, tkeys, src.lineage, txn) != raws:
                return  # a child was rewritten since it was read: downres it again later
            for coord in marks:
                src.kv.delete(txn, src.instance_id, dirty_tkey(coord, src.scale), src.version,
                              versioned=src.instance.versioned)

        await write_blocks(dst, blocks, also=clear, mark=mark)
        written += len(blocks)
    return written
