"""annotation operations: the one implementation behind REST (and, later, GraphQL).

Every edit is planned from reads outside any transaction: the blocks it changes are read
and edited (decoded into position → element maps, or, for elements at new positions, only
appended to), and the block, tag and inbound-relationship entries they imply are computed
(see ``keys``). Inside one transaction the entries read are checked to be
unchanged (else the edit is planned again there, under the store's write lock), the entries
are written and the mutation's log record (DVID's Kafka fields) is appended.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from dvidql.codec.annotation import (
    KINDS,
    MAX_TAG_BYTES,
    Element,
    block_of,
    bulk,
    decode_elements,
    encode_block_map,
    encode_elements,
    group_by_block,
    join_arrays,
    without_rels,
)
from dvidql.datatypes.annotation.keys import (
    BLOCK,
    block_tkey,
    decode_block_tkey,
    decode_tag_tkey,
    inbound_tkey,
    tag_prefix,
    tag_tkey,
)
from dvidql.datatypes.base import DataHandle, ModInfo, Reads
from dvidql.datatypes.labelmap.bodies import indices_of
from dvidql.datatypes.labelmap.ops import labels_at
from dvidql.datatypes.roi import ops as roi_ops
from dvidql.datatypes.voxels import Box, Point, span_coords
from dvidql.errors import BadRequest, NotFound
from dvidql.storage.base import Txn
from dvidql.versions.dag import Instance

__all__ = ["IZYX_MAX", "Edit", "all_blocks", "apply_edit", "block_size", "blocks_in",
           "body_elements", "check_sync", "delete_element", "element_marker", "elements_in",
           "elements_in_roi", "every_block", "in_body", "in_body_verbose", "inbound_entry",
           "move_element", "partners", "post_blocks", "post_elements", "put_entries",
           "ranked_bodies", "relationship_targets", "scan", "tag_entry", "tagged",
           "tagged_verbose", "with_partners"]

_DIRECT_BLOCKS = 4096  # boxes spanning more blocks are read by a range scan
IZYX_MAX = b"\xff" * 12


def block_size(instance: Instance) -> Point:
    return tuple(instance.settings["BlockSize"])  # type: ignore[return-value]


def _fmt(p: Sequence[int]) -> str:
    return "_".join(map(str, p))


def relationship_targets(elements: Iterable[Element], block: Point) -> set[Point]:
    """The blocks that the elements' relationships point into."""
    return {block_of(r["To"], block) for e in elements for r in e["Rels"]}


def _splice(old: bytes | None, new: bytes) -> bytes:
    """A stored JSON array (never empty: empty ones are deleted) with ``new``'s items
    appended."""
    return new if old is None else old[:-1] + b"," + new[1:]


def element_marker(pos: Point) -> bytes:
    """How an element at ``pos`` starts in a stored array: canonical elements begin with
    Pos, and inside JSON strings every quote is escaped, so this occurs nowhere else."""
    return b'{"Pos":[%d,%d,%d],' % pos


class Edit:
    """The blocks an edit touches, as stored and as edited, and every entry it read.

    A block is decoded into an editable position → element map (``stored``/``edited``)
    only when the edit needs it; elements added at positions a block does not hold yet are
    kept in ``appends`` and spliced into its stored bytes, so posting into filled blocks
    does not decode and re-encode what they hold."""

    def __init__(self, h: DataHandle, txn: Txn | None) -> None:
        self.h = h
        self.txn = txn
        self.block = block_size(h.instance)
        self.reads = Reads()
        self.raw: dict[Point, bytes | None] = {}
        self.stored: dict[Point, list[Element]] = {}
        self.edited: dict[Point, dict[Point, Element]] = {}
        self.appends: dict[Point, list[Element]] = {}
        self._inbound: dict[Point, list[Point]] = {}
        self.added: list[Element] = []  # by writes(): the elements gone in and out
        self.removed: list[Element] = []

    async def _read(self, tkeys: Sequence[bytes]) -> list[bytes | None]:
        h = self.h
        raws = await h.kv.get_raw_many(h.instance_id, tkeys, h.lineage, self.txn)
        self.reads.add(tkeys, raws)
        values = iter(await h.kv.materialize([r for r in raws if r is not None]))
        return [None if r is None else next(values) for r in raws]

    async def read(self, coords: Iterable[Point]) -> None:
        """Read the stored values of the blocks not read yet."""
        wanted = [c for c in dict.fromkeys(coords) if c not in self.raw]
        if wanted:
            values = await self._read([block_tkey(c) for c in wanted])
            self.raw.update(zip(wanted, values, strict=True))

    def _decode(self, coord: Point) -> dict[Point, Element]:
        if coord not in self.stored:
            value = self.raw[coord]
            elements = [] if value is None else decode_elements(value)
            self.stored[coord] = elements
            self.edited[coord] = {tuple(e["Pos"]): e for e in elements}  # type: ignore[misc]
            for element in self.appends.pop(coord, ()):
                self.edited[coord][tuple(element["Pos"])] = element  # type: ignore[index]
        return self.edited[coord]

    async def load(self, coords: Iterable[Point]) -> None:
        """Read and decode the blocks; their elements become editable in ``edited``."""
        coords = list(coords)
        await self.read(coords)
        with bulk():
            for coord in coords:
                self._decode(coord)

    def add(self, coord: Point, elements: Sequence[Element]) -> None:
        """Add or replace elements of a read block (the last at a position wins)."""
        unique: dict[Point, Element] = {tuple(e["Pos"]): e for e in elements}  # type: ignore[misc]
        raw = self.raw[coord]
        if coord in self.stored or coord in self.appends or (raw is not None and any(
                element_marker(pos) in raw for pos in unique)):
            self._decode(coord).update(unique)
        else:
            self.appends[coord] = list(unique.values())

    def replace(self, coord: Point, elements: Sequence[Element]) -> None:
        """Make ``elements`` the whole content of a read block."""
        self._decode(coord).clear()
        self.edited[coord].update((tuple(e["Pos"]), e) for e in elements)  # type: ignore[misc]

    async def inbound(self, coords: Sequence[Point]) -> dict[Point, list[Point]]:
        """The blocks holding relationships into each of ``coords``."""
        wanted = [c for c in dict.fromkeys(coords) if c not in self._inbound]
        if wanted:
            values = await self._read([inbound_tkey(c) for c in wanted])
            for coord, value in zip(wanted, values, strict=True):
                self._inbound[coord] = [] if value is None else [
                    tuple(p) for p in orjson.loads(value)]  # type: ignore[misc]
        return {c: self._inbound[c] for c in coords}

    async def partners(self, pos: Point) -> None:
        """Load the block of ``pos`` and every block that may point at it."""
        home = block_of(pos, self.block)
        await self.load([home, *(await self.inbound([home]))[home]])

    def retarget(self, old: Point, new: Point | None) -> None:
        """Point the loaded elements' relationships to ``old`` at ``new`` (None: remove
        them). Elements are replaced, never changed in place: ``stored`` shares them."""
        target = list(old)
        for elements in self.edited.values():
            for pos, element in elements.items():
                rels = element["Rels"]
                if not any(r["To"] == target for r in rels):
                    continue
                if new is None:
                    rels = [r for r in rels if r["To"] != target]
                else:
                    rels = [{"Rel": r["Rel"], "To": list(new)} if r["To"] == target else r
                            for r in rels]
                elements[pos] = {**element, "Rels": rels}

    async def writes(self) -> dict[bytes, bytes | None]:
        """The entries the edited blocks imply (None: delete), only those that change.

        Only the elements an edit added or removed (by identity: ``stored`` and ``edited``
        share the untouched ones) are looked at, plus one pass over a decoded block per tag
        they carry; appended elements are spliced into the block and tag entries."""
        writes: dict[bytes, bytes | None] = {}
        gained: dict[Point, set[Point]] = {}
        lost: dict[Point, set[Point]] = {}
        tag_appends: dict[bytes, list[Element]] = {}
        with bulk():
            for coord, added in self.appends.items():
                self.added += added
                writes[block_tkey(coord)] = _splice(self.raw[coord], encode_elements(added))
                for element in added:
                    for tag in dict.fromkeys(element["Tags"]):
                        tag_appends.setdefault(tag_tkey(tag, coord), []).append(
                            without_rels(element))
                for target in relationship_targets(added, self.block):
                    gained.setdefault(target, set()).add(coord)
            for coord, before in self.stored.items():
                after = list(self.edited[coord].values())
                kept = {id(e) for e in before}
                added = [e for e in after if id(e) not in kept]
                if not added and len(after) == len(before):
                    continue
                present = {id(e) for e in after}
                removed = [e for e in before if id(e) not in present]
                self.added += added
                self.removed += removed
                writes[block_tkey(coord)] = encode_elements(after) if after else None
                for tag in {t for e in (*added, *removed) for t in e["Tags"]}:
                    writes[tag_tkey(tag, coord)] = tag_entry(after, tag)
                into = relationship_targets(added, self.block)
                gone = relationship_targets(removed, self.block) - into
                if gone:
                    gone -= relationship_targets(after, self.block)
                for target in into:
                    gained.setdefault(target, set()).add(coord)
                for target in gone:
                    lost.setdefault(target, set()).add(coord)
        if tag_appends:
            tkeys = list(tag_appends)
            for tkey, old in zip(tkeys, await self._read(tkeys), strict=True):
                writes[tkey] = _splice(old, encode_elements(tag_appends[tkey]))
        changed = sorted(gained.keys() | lost.keys())
        for target, sources in (await self.inbound(changed)).items():
            now = (set(sources) | gained.get(target, set())) - lost.get(target, set())
            if now != set(sources):
                writes[inbound_tkey(target)] = inbound_entry(now)
        return writes


Change = Callable[[Edit], Awaitable[None]]


async def _plan(h: DataHandle, txn: Txn | None, change: Change
                ) -> tuple[Edit, dict[bytes, bytes | None], list[bytes]]:
    edit = Edit(h, txn)
    await change(edit)
    writes = await edit.writes()
    encoded = await h.kv.encode_many([v for v in writes.values() if v is not None])
    return edit, writes, encoded


async def _body_changes(h: DataHandle, txn: Txn, edit: Edit) -> dict[str, Any]:
    """For an instance synced to a segmentation, the log fields of DVID's
    ANNOTATION_MOD_ELEMENTS: the elements an edit takes out of (Del) and puts into (Add) a
    body, with the bodies under them as ``txn`` sees the segmentation. An element replaced
    by one of the same Kind at the same place changes no body and is left out."""
    name = h.instance.settings.get("Sync", "")
    if not name or name not in h.repo.instances:
        return {}

    def key(e: Element) -> tuple[str, tuple[int, ...]]:
        return e["Kind"], tuple(e["Pos"])
    added, removed = Counter(map(key, edit.added)), Counter(map(key, edit.removed))
    adds, dels = list((added - removed).elements()), list((removed - added).elements())
    if not adds and not dels:
        return {"Add": [], "Del": []}
    points = np.array([p for _, p in adds + dels], np.int64)
    found = (await labels_at(h.sibling(name), points, txn=txn)).tolist()
    rows = [{"Label": label, "Kind": kind, "Pos": list(pos)}
            for (kind, pos), label in zip(adds + dels, found, strict=True)]
    return {"Add": [r for r in rows[:len(adds)] if r["Label"]],
            "Del": [r for r in rows[len(adds):] if r["Label"]]}


async def apply_edit(h: DataHandle, change: Change, record: dict[str, Any]) -> int:
    """Plan ``change``, then write it with its log record in one transaction; returns the
    mutation id."""
    with bulk():
        edit, writes, encoded = await _plan(h, None, change)
        async with h.writing() as txn:
            if not await edit.reads.unchanged(h, txn):
                edit, writes, encoded = await _plan(h, txn, change)
            put_entries(h, txn, writes, encoded)
            return await h.log(txn, {**record, **await _body_changes(h, txn, edit)})


# ----- edits -------------------------------------------------------------------------------

async def post_elements(h: DataHandle, elements: Sequence[Element], mod: ModInfo) -> int:
    """Add elements, replacing any at the same positions (the last of a post wins); returns
    the mutation id."""
    groups = group_by_block(elements, block_size(h.instance))

    async def change(edit: Edit) -> None:
        await edit.read(coord for coord, _ in groups)
        with bulk():
            for coord, items in groups:
                edit.add(coord, items)

    return await apply_edit(h, change, {"Action": "element-post", "Elements": len(elements),
                                    "Blocks": len(groups), **mod.fields()})


async def post_blocks(h: DataHandle, blocks: Mapping[Point, Sequence[Element]],
                      mod: ModInfo) -> int:
    """Replace the elements of whole blocks (an empty list empties the block); returns the
    mutation id. Relationships elsewhere to elements no longer present are left as they are
    (``scan`` reports them)."""
    async def change(edit: Edit) -> None:
        await edit.load(blocks)
        for coord, items in blocks.items():
            edit.replace(coord, items)

    count = sum(len(items) for items in blocks.values())
    return await apply_edit(h, change, {"Action": "element-post", "Elements": count,
                                    "Blocks": len(blocks), **mod.fields()})


def _missing(h: DataHandle, pos: Point, what: str) -> NotFound:
    return NotFound(f"no element at {_fmt(pos)} in {h.instance.name!r} at version "
                    f"{h.node.uuid}; nothing was {what}")


async def delete_element(h: DataHandle, pos: Point, mod: ModInfo) -> int:
    """Delete the element at ``pos`` and every relationship pointing at it; returns the
    mutation id."""
    async def change(edit: Edit) -> None:
        await edit.partners(pos)
        if edit.edited[block_of(pos, edit.block)].pop(pos, None) is None:
            raise _missing(h, pos, "deleted")
        edit.retarget(pos, None)

    return await apply_edit(h, change, {"Action": "element-delete", "Point": list(pos),
                                    **mod.fields()})


async def move_element(h: DataHandle, src: Point, dst: Point, mod: ModInfo) -> int:
    """Move the element at ``src`` to ``dst``, replacing any element there (as DVID does),
    and point relationships to ``src`` at ``dst``; returns the mutation id."""
    async def change(edit: Edit) -> None:
        await edit.partners(src)
        await edit.load([block_of(dst, edit.block)])
        element = edit.edited[block_of(src, edit.block)].pop(src, None)
        if element is None:
            raise _missing(h, src, "moved")
        edit.edited[block_of(dst, edit.block)][dst] = {**element, "Pos": list(dst)}
        edit.retarget(src, dst)

    return await apply_edit(h, change, {"Action": "element-move", "From": list(src),
                                    "To": list(dst), **mod.fields()})


# ----- reads -------------------------------------------------------------------------------

async def _stored_blocks(h: DataHandle, box: Box) -> list[tuple[Point, bytes]]:
    """The stored blocks that ``box`` touches, in key order: by key for small boxes, by one
    range scan over the z span (filtered on x and y) for large ones."""
    block = block_size(h.instance)
    lo, hi = box.block_span(block)
    if math.prod(b - a + 1 for a, b in zip(lo, hi, strict=True)) <= _DIRECT_BLOCKS:
        coords = span_coords(box, block)
        values = await h.kv.get_many(h.instance_id, [block_tkey(c) for c in coords], h.lineage)
        return [(c, v) for c, v in zip(coords, values, strict=True) if v is not None]
    out = []
    async for tkey, value in h.kv.scan(h.instance_id, h.lineage, block_tkey(lo),
                                       block_tkey(hi)):
        x, y, z = decode_block_tkey(tkey)
        if lo[0] <= x <= hi[0] and lo[1] <= y <= hi[1]:
            out.append(((x, y, z), value))
    return out


async def elements_in(h: DataHandle, box: Box) -> bytes:
    """The elements (with relationships) whose position lies in ``box``, a JSON array."""
    block = block_size(h.instance)
    parts = []
    for coord, value in await _stored_blocks(h, box):
        first = [c * b for c, b in zip(coord, block, strict=True)]
        inside = all(f >= o and f + b <= e for f, b, o, e in
                     zip(first, block, box.offset, box.end, strict=True))
        if inside:
            parts.append(value)
            continue
        kept = [e for e in decode_elements(value)
                if all(o <= p < end for p, o, end in zip(e["Pos"], box.offset, box.end,
                                                         strict=True))]
        if kept:
            parts.append(encode_elements(kept))
    return join_arrays(parts)


async def blocks_in(h: DataHandle, box: Box) -> bytes:
    """``{"x,y,z": [elements], ...}`` for the stored blocks ``box`` touches, unfiltered."""
    return encode_block_map(await _stored_blocks(h, box))


async def every_block(h: DataHandle) -> list[tuple[Point, bytes]]:
    start = bytes([BLOCK])
    return [(decode_block_tkey(tkey), value) async for tkey, value in
            h.kv.scan(h.instance_id, h.lineage, start, start + IZYX_MAX)]


async def all_blocks(h: DataHandle) -> bytes:
    """Every block of the instance at this version, as ``blocks_in`` gives them."""
    return encode_block_map(await every_block(h))


async def elements_in_roi(h: DataHandle, region: DataHandle) -> bytes:
    """The elements (with relationships) inside the roi instance ``region``, a JSON array:
    the stored blocks its blocks touch (of any size) are read, by key when few and by one
    scan of the instance otherwise, and each element is tested against the region."""
    spans = await roi_ops.read_spans(region)
    if not len(spans):
        return b"[]"
    ours = np.array(block_size(h.instance), np.int64)
    theirs = np.array(roi_ops.block_size(region), np.int64)
    first = spans[:, [2, 1, 0]] * theirs // ours  # x, y, z of our first block per span
    last = ((spans[:, [3, 1, 0]] + 1) * theirs - 1) // ours
    if int(np.prod(last - first + 1, axis=1).sum()) > _DIRECT_BLOCKS:
        stored = await every_block(h)
    else:
        coords = sorted({(x, y, z) for (x0, y0, z0), (x1, y1, z1)
                         in zip(first.tolist(), last.tolist(), strict=True)
                         for z in range(z0, z1 + 1) for y in range(y0, y1 + 1)
                         for x in range(x0, x1 + 1)})
        values = await h.kv.get_many(h.instance_id, [block_tkey(c) for c in coords], h.lineage)
        stored = [(c, v) for c, v in zip(coords, values, strict=True) if v is not None]
    elements = [e for _, value in stored for e in decode_elements(value)]
    if not elements:
        return b"[]"
    inside = await roi_ops.contains(region, np.array([e["Pos"] for e in elements], np.int64))
    return encode_elements([e for e, keep in zip(elements, inside.tolist(), strict=True)
                            if keep])


def check_sync(h: DataHandle, segmentation: Instance) -> None:
    """Refuses a segmentation the instance cannot follow: it must be a labelmap with the
    instance's block size, so that its bodies' blocks are the instance's blocks."""
    if segmentation.type_name != "labelmap":
        raise BadRequest(f"annotations sync with a labelmap instance; {segmentation.name!r} is "
                         f"a {segmentation.type_name}")
    ours, theirs = block_size(h.instance), tuple(segmentation.settings["BlockSize"])
    if ours != theirs:
        raise BadRequest(f"{segmentation.name!r} has {theirs} blocks but {h.instance.name!r} "
                         f"keeps elements in {ours} blocks; sync needs the same block size "
                         "(create the annotation instance with its BlockSize)")


async def body_elements(h: DataHandle, body: int) -> list[Element]:
    """The elements (with relationships) lying in a body of the synced segmentation. Found
    from the segmentation's exact label index, at the same version: the elements of the
    body's blocks whose supervoxel is one of the body's, so the answer reflects every merge,
    cleave, split or write the moment it is made. Call within :func:`bulk`."""
    segmentation = h.followed("labelmap instance")
    (index,) = await indices_of(segmentation, [body])
    if index is None or not body:
        return []
    coords = [tuple(c) for c in index.block_coords().tolist()]
    values = await h.kv.get_many(h.instance_id, [block_tkey(c) for c in coords], h.lineage)
    elements = [e for value in values if value is not None for e in decode_elements(value)]
    if not elements:
        return []
    points = np.array([e["Pos"] for e in elements], np.int64)
    inside = np.isin(await labels_at(segmentation, points, supervoxels=True),
                     index.supervoxels())
    return [e for e, keep in zip(elements, inside.tolist(), strict=True) if keep]


async def in_body(h: DataHandle, body: int, *, relationships: bool = False) -> bytes:
    """:func:`body_elements` as a JSON array, without relationships unless asked."""
    with bulk():
        chosen = await body_elements(h, body)
        return encode_elements(chosen if relationships else [without_rels(e) for e in chosen])


async def partners(h: DataHandle, body: int) -> list[tuple[int, int, int]]:
    """The bodies a body connects to by synapses: (partner, outgoing, incoming) counts, the
    outgoing ones from its T-bars' PreSynTo relationships, the incoming ones from its
    PostSyn elements' PostSynTo relationships, most connected first. Targets outside any
    body (label 0) are left out."""
    with bulk():
        elements = await body_elements(h, body)
        targets = {"PreSyn": "PreSynTo", "PostSyn": "PostSynTo"}
        ends = [[r["To"] for e in elements if e["Kind"] == kind for r in e["Rels"]
                 if r["Rel"] == rel] for kind, rel in targets.items()]
    if not ends[0] and not ends[1]:
        return []
    points = np.array(ends[0] + ends[1], np.int64).reshape(-1, 3)
    found = await labels_at(h.followed("labelmap instance"), points)
    split = len(ends[0])  # found[:split] are outgoing, the rest incoming
    ids, inverse = np.unique(found, return_inverse=True)
    inverse = inverse.reshape(-1)
    counts = np.zeros((len(ids), 2), np.int64)
    np.add.at(counts[:, 0], inverse[:split], 1)
    np.add.at(counts[:, 1], inverse[split:], 1)
    rows = [(int(b), int(o), int(i)) for b, (o, i) in zip(ids.tolist(), counts.tolist(),
                                                           strict=True) if b]
    return sorted(rows, key=lambda r: (-(r[1] + r[2]), r[0]))


async def ranked_bodies(h: DataHandle, kinds: Collection[str], *, at_least: int = 1,
                        offset: int = 0, limit: int | None = None,
                        region: DataHandle | None = None) -> list[tuple[int, int]]:
    """(body, count) of the bodies of the synced segmentation holding at least ``at_least``
    elements of ``kinds`` (inside the roi instance ``region`` if given), most first (ties by
    increasing body, as DVID's labelsz ranks them), from rank ``offset``, at most ``limit``.
    From all the elements at this version and the bodies under them, so exact after any edit
    (and as slow as reading every element)."""
    segmentation = h.followed("labelmap instance")
    with bulk():
        points = np.array([e["Pos"] for _, value in await every_block(h)
                           for e in decode_elements(value) if e["Kind"] in kinds],
                          np.int64).reshape(-1, 3)
    if region is not None:
        points = points[await roi_ops.contains(region, points)]
    if not len(points):
        return []
    found = await labels_at(segmentation, points)
    bodies, counts = np.unique(found[found != 0], return_counts=True)
    order = np.lexsort((bodies, -counts))
    order = order[counts[order] >= at_least][offset:None if limit is None else offset + limit]
    return list(zip(bodies[order].tolist(), counts[order].tolist(), strict=True))


async def tagged(h: DataHandle, tag: str, *, relationships: bool = False) -> bytes:
    """The elements having ``tag``, a JSON array; without relationships unless asked."""
    if "\x00" in tag or len(tag.encode()) > MAX_TAG_BYTES:
        raise BadRequest(f"a tag is at most {MAX_TAG_BYTES} bytes without NUL characters")
    prefix = tag_prefix(tag)
    found = [(decode_tag_tkey(tkey)[1], value) async for tkey, value in
             h.kv.scan(h.instance_id, h.lineage, prefix, prefix + IZYX_MAX)]
    if not relationships:
        return join_arrays(value for _, value in found)
    values = await h.kv.get_many(h.instance_id, [block_tkey(c) for c, _ in found], h.lineage)
    return encode_elements([e for value in values if value is not None
                            for e in decode_elements(value) if tag in e["Tags"]])


async def scan(h: DataHandle) -> dict[str, Any]:
    """Counts of blocks, elements (by Kind) and relationships, and the relationships whose
    target holds no element (allowed, as in DVID, but worth knowing about)."""
    blocks = await every_block(h)
    elements = [e for _, value in blocks for e in decode_elements(value)]
    present = {tuple(e["Pos"]) for e in elements}
    kinds = Counter(e["Kind"] for e in elements)
    dangling = [{"From": e["Pos"], "Rel": r["Rel"], "To": r["To"]}
                for e in elements for r in e["Rels"] if tuple(r["To"]) not in present]
    return {"Blocks": len(blocks), "Elements": len(elements),
            "Kinds": {k: kinds.get(k, 0) for k in KINDS},
            "Relationships": sum(len(e["Rels"]) for e in elements),
            "DanglingRelationships": len(dangling), "Dangling": dangling}


# ----- index entries, written once for edits and for reload (``upkeep``) -------------------

def tag_entry(elements: Iterable[Element], tag: str) -> bytes | None:
    """A block's tag entry: its elements having ``tag``, without relationships, in block
    order (None: the block has none, so no entry)."""
    having = [without_rels(e) for e in elements if tag in e["Tags"]]
    return encode_elements(having) if having else None


def inbound_entry(sources: Collection[Point]) -> bytes | None:
    """A block's inbound-relationship entry: the sorted blocks pointing into it (None: no
    block does, so no entry)."""
    return orjson.dumps(sorted(sources)) if sources else None


def put_entries(h: DataHandle, txn: Txn, writes: Mapping[bytes, bytes | None],
                encoded: Sequence[bytes]) -> None:
    """Write planned entries in ``txn``: ``encoded`` holds the stored form of the present
    values of ``writes`` in order; None values are deleted."""
    versioned = h.instance.versioned
    values = iter(encoded)
    for tkey, value in writes.items():
        if value is None:
            h.kv.delete(txn, h.instance_id, tkey, h.version, versioned=versioned)
        else:
            h.kv.put_raw(txn, h.instance_id, tkey, h.version, next(values),
                         versioned=versioned)


# ----- relationships=verbose ---------------------------------------------------------------

def _verbose_rel(rel: Element, partner: Element | None) -> Element:
    """A relationship with its partner's Kind and Prop beside Rel and To (DVID's
    ``relationships=verbose``), and Tags when the partner has any; unchanged when no
    element is at To."""
    if partner is None:
        return rel
    out = {"Rel": rel["Rel"], "To": rel["To"], "Kind": partner["Kind"]}
    if partner["Tags"]:
        out["Tags"] = partner["Tags"]
    out["Prop"] = partner["Prop"]
    return out


async def with_partners(h: DataHandle, elements: Sequence[Element]) -> list[Element]:
    """``elements`` with every relationship made verbose: the partners are read in one
    batch, by the blocks the relationships point into. Call within :func:`bulk`."""
    coords = sorted(relationship_targets(elements, block_size(h.instance)))
    if not coords:
        return list(elements)
    values = await h.kv.get_many(h.instance_id, [block_tkey(c) for c in coords], h.lineage)
    found = {tuple(p["Pos"]): p for value in values if value is not None
             for p in decode_elements(value)}
    return [{**e, "Rels": [_verbose_rel(r, found.get(tuple(r["To"]))) for r in e["Rels"]]}
            if e["Rels"] else e for e in elements]


async def in_body_verbose(h: DataHandle, body: int) -> bytes:
    """:func:`in_body` with verbose relationships, a JSON array."""
    with bulk():
        return encode_elements(await with_partners(h, await body_elements(h, body)))


async def tagged_verbose(h: DataHandle, tag: str) -> bytes:
    """:func:`tagged` with verbose relationships, a JSON array."""
    with bulk():
        chosen = decode_elements(await tagged(h, tag, relationships=True))
        return encode_elements(await with_partners(h, chosen))
