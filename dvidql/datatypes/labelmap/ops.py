"""labelmap operations beyond the shared block-volume ones of ``imageblk.ops``."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import lz4.block
import numpy as np
from typing_extensions import Buffer

from dvidql.codec.labelblock import (
    LabelBlock,
    Relabel,
    block_labels,
    decode_label_block,
    labels_at_voxels,
    parse_label_block,
    relabel_block,
)
from dvidql.codec.serialization import GZIP, deserialize, gzip_bytes, stored_format
from dvidql.datatypes.base import NO_MOD, DataHandle, ModInfo, Reads
from dvidql.datatypes.imageblk import layout
from dvidql.datatypes.imageblk.keys import block_tkey
from dvidql.datatypes.imageblk.ops import (
    check_request_size,
    downres,
    read_box,
    write_blocks,
)
from dvidql.datatypes.labelmap.downres import downres_labels
from dvidql.datatypes.labelmap.model import (
    BodyChanges,
    Plan,
    block_write_plan,
    bodies_of,
    body_of,
    relabeler,
    replan_if_stale,
)
from dvidql.datatypes.voxels import (
    INT32_MAX,
    INT32_MIN,
    Box,
    Point,
    block_coords,
    distinct_rows,
    new_volume,
    paste,
    split_blocks,
)
from dvidql.errors import BadRequest
from dvidql.ids import now
from dvidql.parallel import in_parallel
from dvidql.storage.base import Txn

__all__ = ["bodies_across", "ingest_compressed", "label_at", "labels_at", "read_labels",
           "stream_payloads", "update_scales", "write_label_blocks", "write_label_box"]


_POINT_RANGE = "points must lie within the 32-bit coordinate range"


async def label_at(h: DataHandle, point: Sequence[int], *, supervoxels: bool = False) -> int:
    """The label (body, or ``supervoxels``) at one x, y, z voxel: :func:`labels_at` for the
    single point that proofreading tools ask for most, in integer arithmetic, without the
    array set-up that pays off only for many points."""
    x, y, z = map(int, point)
    if not (INT32_MIN <= min(x, y, z) and max(x, y, z) <= INT32_MAX):
        raise BadRequest(_POINT_RANGE)
    bx, by, bz = h.instance.settings["BlockSize"]
    raw = await h.kv.get_raw(h.instance_id, block_tkey((x // bx, y // by, z // bz), h.scale),
                             h.lineage)
    if raw is None:
        return 0
    (block,) = await _blocks(h, (bz, by, bx), [raw])
    label = block.label_at(z % bz, y % by, x % bx)
    return label if supervoxels else await body_of(h, label)


async def labels_at(h: DataHandle, points: np.ndarray, *, supervoxels: bool = False,
                    txn: Txn | None = None, reads: Reads | None = None) -> np.ndarray:
    """The labels (bodies, or ``supervoxels``) at (n, 3) voxel x, y, z points, 0 where nothing
    was written, as ``txn`` sees them if given (``reads`` collects the entries read); each
    block under the points is read once (from the cache of decoded blocks when it is there)
    and only the parts of it that hold the points are decoded."""
    pts = np.asarray(points, np.int64).reshape(-1, 3)
    if pts.size and (pts.min() < INT32_MIN or pts.max() > INT32_MAX):
        raise BadRequest(_POINT_RANGE)
    lay = layout(h.instance)
    block = np.asarray(lay.block, np.int64)
    coords = pts // block
    unique, inverse = distinct_rows(coords)
    tkeys = [block_tkey(c, h.scale) for c in map(tuple, unique.tolist())]
    raws = await h.kv.get_raw_many(h.instance_id, tkeys, h.lineage, txn)
    if reads is not None:
        reads.add(tkeys, raws)
    present = [i for i, raw in enumerate(raws) if raw is not None]
    blocks = await _blocks(h, lay.block_shape, [raws[i] for i in present])  # type: ignore[misc]
    out = np.zeros(len(pts), np.uint64)
    local = (pts - coords * block)[:, ::-1]  # z, y, x within the block
    # the points of block i are by_block[starts[i]:starts[i + 1]]
    by_block = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[by_block], np.arange(len(unique) + 1))

    def work(part: Sequence[int]) -> list[None]:
        for j in part:
            mine = by_block[starts[present[j]]:starts[present[j] + 1]]
            out[mine] = labels_at_voxels(blocks[j], lay.block_shape, local[mine])
        return []

    await in_parallel(range(len(present)), work)
    return out if supervoxels else await bodies_of(h, out, txn, reads)


async def bodies_across(h: DataHandle, changes: BodyChanges, points: np.ndarray,
                        txn: Txn | None, reads: Reads) -> tuple[np.ndarray, np.ndarray]:
    """The bodies at (n, 3) x, y, z points before and after the mutation ``changes``
    describes, read before it writes (in ``txn`` if given; ``reads`` collects the entries
    read)."""
    pts = np.asarray(points, np.int64).reshape(-1, 3)
    old_svs = await labels_at(h, pts, supervoxels=True, txn=txn, reads=reads)
    before = await bodies_of(h, old_svs, txn, reads)
    new_svs = old_svs.copy()
    lay = layout(h.instance)
    block = np.asarray(lay.block, np.int64)
    coords = pts // block
    local = (pts - coords * block)[:, ::-1]  # z, y, x within the block
    unique, inverse = distinct_rows(coords)
    by_block = np.argsort(inverse, kind="stable")  # block i's points: by_block[starts[i]:...]
    starts = np.searchsorted(inverse[by_block], np.arange(len(unique) + 1))
    for i, coord in enumerate(map(tuple, unique.tolist())):
        new = changes.rewritten.get(coord)
        if new is None:
            continue
        mine = by_block[starts[i]:starts[i + 1]]
        if isinstance(new, np.ndarray):
            z, y, x = local[mine].T
            new_svs[mine] = new[z, y, x]
        else:
            parsed = parse_label_block(deserialize(new), lay.block_shape)
            new_svs[mine] = labels_at_voxels(parsed, lay.block_shape, local[mine])
    after = await bodies_of(h, new_svs, txn, reads)
    if changes.remapped:
        moved = np.fromiter(changes.remapped, np.uint64, len(changes.remapped))
        bodies = np.fromiter(changes.remapped.values(), np.uint64, len(changes.remapped))
        order = np.argsort(moved)
        moved, bodies = moved[order], bodies[order]
        at = np.minimum(np.searchsorted(moved, new_svs), len(moved) - 1)
        hit = moved[at] == new_svs
        after[hit] = bodies[at[hit]]
    return before, after


async def _blocks(h: DataHandle, shape: tuple[int, int, int], raws: Sequence[bytes]
                  ) -> list[LabelBlock]:
    """The compressed label blocks (of ``shape``, z, y, x) of stored entries, decompressed
    and parsed (not decoded), kept in the store's cache of decoded blocks for the next read."""
    return await h.kv.decoded(raws, f"labelblock {shape}",
                              lambda stored: parse_label_block(deserialize(stored), shape),
                              lambda block: block.nbytes)


async def read_labels(h: DataHandle, box: Box, *, supervoxels: bool = False) -> np.ndarray:
    """The box's (z, y, x) labels: bodies, or ``supervoxels``. Mapping rewrites each block's
    palette before its voxels are filled in, so a mapped read costs about a plain one."""
    if supervoxels:
        return await read_box(h, box)
    lay = layout(h.instance)
    check_request_size(h, box.voxels * 8)
    lo, hi = box.block_span(lay.block)
    coords = block_coords(lo, hi)
    entries = await h.kv.get_raw_many(
        h.instance_id, [block_tkey(tuple(c), h.scale) for c in coords], h.lineage)
    present = [i for i, e in enumerate(entries) if e is not None]
    blocks = await _blocks(h, lay.block_shape, [entries[i] for i in present])  # type: ignore[misc]
    relabel = await relabeler(h, _palettes([b.data for b in blocks]))
    out = new_volume(box, len(present) == len(entries), 0, np.uint64)

    def place(part: Sequence[int]) -> list[None]:
        for i in part:
            paste(out, box, lay.block, coords[present[i]],
                  decode_label_block(blocks[i].data, lay.block_shape, relabel))
        return []

    await in_parallel(range(len(present)), place)
    return out


def _palettes(payloads: Sequence[Buffer]) -> np.ndarray:
    return (np.concatenate([block_labels(p) for p in payloads]) if payloads
            else np.zeros(0, np.uint64))


def _block_payload(payload: bytes, compression: str, shape: tuple[int, int, int],
                   relabel: Relabel | None) -> bytes:
    """One block of a stream from its compressed label block: ``blocks`` is its gzip, the
    others the raw uint64 array."""
    if compression == "blocks":
        return gzip_bytes(payload if relabel is None else relabel_block(payload, relabel))
    raw = decode_label_block(payload, shape, relabel).astype("<u8", copy=False).tobytes()
    if compression == "lz4":
        return lz4.block.compress(raw, store_size=False)
    return gzip_bytes(raw) if compression == "gzip" else raw


async def stream_payloads(h: DataHandle, coords: Sequence[Point], compression: str, *,
                          supervoxels: bool = False) -> list[tuple[Point, bytes]]:
    """The stored blocks among ``coords`` with their stream payloads, in the given order;
    bodies unless ``supervoxels`` (a gzip-stored block goes out as stored then)."""
    lay = layout(h.instance)
    entries = await h.kv.get_raw_many(h.instance_id, [block_tkey(c, h.scale) for c in coords],
                                      h.lineage)
    present = [i for i, e in enumerate(entries) if e is not None]
    found = [coords[i] for i in present]
    stored = await h.kv.materialize([entries[i] for i in present])  # type: ignore[misc]
    if supervoxels and compression == "blocks":
        def as_stored(part: Sequence[int]) -> list[bytes]:
            return [s[1:] if stored_format(s) == GZIP else gzip_bytes(deserialize(s))
                    for s in (stored[i] for i in part)]
        return list(zip(found, await in_parallel(range(len(found)), as_stored), strict=True))

    def unpack(part: Sequence[bytes]) -> list[bytes]:
        return [bytes(deserialize(s)) for s in part]

    payloads = await in_parallel(stored, unpack)
    relabel = None if supervoxels else await relabeler(h, _palettes(payloads))

    def work(part: Sequence[int]) -> list[bytes]:
        return [_block_payload(payloads[i], compression, lay.block_shape, relabel) for i in part]

    return list(zip(found, await in_parallel(range(len(found)), work), strict=True))


async def write_label_blocks(h: DataHandle, blocks: Sequence[tuple[Point, np.ndarray]],
                             mod: ModInfo = NO_MOD, *, index: bool = True,
                             downres: bool = True) -> int:
    """Store supervoxel blocks and keep the label indices and max label in step, in the one
    transaction of the write, then recompute the lower scales; returns the mutation id.
    ``index=False`` (or an instance without IndexedLabels) keeps no indices; ``downres=False``
    leaves the lower scales to the caller. Lower scales' blocks are stored as given."""
    if h.scale:
        return await write_blocks(h, blocks, record=mod.fields(),
                                  mark=h.scale < _top(h))
    indexed = index and h.instance.settings["IndexedLabels"]

    async def planner(txn: Txn | None) -> Plan:
        if indexed:
            plan = await block_write_plan(h, blocks, txn)
        else:
            plan = Plan(Reads(), highest=max((int(v.max()) for _, v in blocks), default=0))
        plan.written = dict(blocks)
        return plan

    plan = await planner(None)
    await plan.prepare(h)

    async def also(txn: Txn, mutation_id: int) -> None:
        current = await replan_if_stale(h, txn, plan, planner)
        await current.apply(h, txn, mutation_id, now(), mod, "post-blocks")

    mutation_id = await write_blocks(h, blocks, also=also, record=mod.fields(),
                                     mark=_top(h) > 0)
    if downres:
        await update_scales(h)
    return mutation_id


def _top(h: DataHandle) -> int:
    top: int = h.instance.settings["MaxDownresLevel"]
    return top


async def update_scales(h: DataHandle) -> int:
    """Recompute every lower scale over the blocks changed since it was last computed
    (most frequent non-zero label of the 2x2x2 children); returns blocks written."""
    written = 0
    top = _top(h)
    for scale in range(top):
        written += await downres(h.at_scale(scale), h.at_scale(scale + 1),
                                 reduce=downres_labels, mark=scale + 1 < top)
    return written


async def write_label_box(h: DataHandle, box: Box, volume: np.ndarray,
                          mod: ModInfo = NO_MOD) -> int:
    """Store a block-aligned (z, y, x) volume of supervoxels (see :func:`write_label_blocks`)."""
    lay = layout(h.instance)
    box.require_aligned(lay.block)
    check_request_size(h, box.voxels * 8)
    if volume.shape != box.shape:
        raise BadRequest(f"voxel data has shape {volume.shape}, expected {box.shape} (z, y, x)")
    return await write_label_blocks(h, list(split_blocks(volume, box, lay.block)), mod)


async def ingest_compressed(h: DataHandle, records: Sequence[tuple[Point, Buffer]],
                            mod: ModInfo = NO_MOD, *, index: bool = True,
                            downres: bool = True) -> int:
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
    return await write_label_blocks(h, blocks, mod, index=index, downres=downres)
