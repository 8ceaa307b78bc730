"""annotation upkeep: DVID's bulk label ingest and index reload, with dvidql's meaning.

DVID keeps a per-label copy of the elements that clients may load in bulk (``POST labels``)
and rebuilds its tag and label copies from the blocks (``POST reload``). dvidql computes a
body's elements from the segmentation at the request, so there is no label copy: ``labels``
adds the posted elements the instance lacks, and ``reload`` checks (and rewrites) the tag and
inbound-relationship entries against the blocks. Both reuse the edit machinery of ``ops``,
so they write exactly what edits write.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from dvidql.codec.annotation import Element, block_of, bulk, decode_elements, group_by_block
from dvidql.datatypes.annotation.keys import INBOUND, TAG, inbound_tkey, tag_tkey
from dvidql.datatypes.annotation.ops import (
    IZYX_MAX,
    Edit,
    apply_edit,
    block_size,
    element_marker,
    every_block,
    inbound_entry,
    put_entries,
    relationship_targets,
    tag_entry,
)
from dvidql.datatypes.base import DataHandle, ModInfo
from dvidql.datatypes.labelmap.ops import labels_at
from dvidql.datatypes.voxels import Point

__all__ = ["post_labels", "reload"]


# ----- POST labels -------------------------------------------------------------------------

async def _other_body(h: DataHandle, pairs: Sequence[tuple[int, Element]]) -> int:
    """How many (label, element) pairs the synced segmentation now puts in another body."""
    if not pairs:
        return 0
    points = np.array([e["Pos"] for _, e in pairs], np.int64).reshape(-1, 3)
    posted = np.array([label for label, _ in pairs], np.uint64)
    found = await labels_at(h.followed("labelmap instance"), points)
    return int(np.count_nonzero(found != posted))


async def post_labels(h: DataHandle, labeled: Sequence[tuple[int, Sequence[Element]]],
                      mod: ModInfo) -> tuple[dict[str, int], int]:
    """Add the posted elements at positions holding none (the last posted at a position
    wins); elements already stored stay as they are, relationships included, since the
    blocks are the source of truth. Label 0 is ignored, as DVID ignores it. Returns the
    counts (distinct positions ``Added`` and ``Present``; ``OtherBody`` when synced) and the
    mutation id."""
    pairs = [(label, e) for label, items in labeled if label for e in items]
    counts: dict[str, int] = {"Added": 0, "Present": 0}
    if h.instance.settings.get("Sync"):
        counts["OtherBody"] = await _other_body(h, pairs)
    groups = group_by_block([e for _, e in pairs], block_size(h.instance))
    record: dict[str, Any] = {"Action": "element-post", "Elements": 0, "Blocks": 0,
                              **mod.fields()}

    async def change(edit: Edit) -> None:
        await edit.read(coord for coord, _ in groups)
        added = present = blocks = 0
        with bulk():
            for coord, items in groups:
                unique: dict[Point, Element] = {tuple(e["Pos"]): e  # type: ignore[misc]
                                                for e in items}
                raw = edit.raw[coord]
                fresh = [e for pos, e in unique.items()
                         if raw is None or element_marker(pos) not in raw]
                present += len(unique) - len(fresh)
                if fresh:
                    edit.add(coord, fresh)
                    added += len(fresh)
                    blocks += 1
        # planned again inside the transaction when blocks changed: the last plan counts
        counts.update(Added=added, Present=present)
        record.update(Elements=added, Blocks=blocks)

    mutation = await apply_edit(h, change, record)
    return counts, mutation


# ----- POST reload -------------------------------------------------------------------------

def _same_elements(stored: bytes, wanted: bytes) -> bool:
    """The same elements, in any order (a malformed entry is not)."""
    if stored == wanted:
        return True
    try:
        a, b = orjson.loads(stored), orjson.loads(wanted)
        return (type(a) is list and len(a) == len(b)
                and sorted(map(orjson.dumps, a)) == sorted(map(orjson.dumps, b)))
    except (orjson.JSONDecodeError, TypeError):
        return False


def _same_sources(stored: bytes, wanted: bytes) -> bool:
    """The same set of block coordinates (a malformed entry is not)."""
    if stored == wanted:
        return True
    try:
        return ({tuple(p) for p in orjson.loads(stored)}
                == {tuple(p) for p in orjson.loads(wanted)})
    except (orjson.JSONDecodeError, TypeError):
        return False


def _compare(wanted: Mapping[bytes, bytes], stored: Mapping[bytes, bytes],
             same: Callable[[bytes, bytes], bool]
             ) -> tuple[dict[str, int], dict[bytes, bytes | None]]:
    """Counts of entries wrong, missing and extra, and the writes that fix them."""
    wrong = [k for k, v in wanted.items() if k in stored and not same(stored[k], v)]
    missing = [k for k in wanted if k not in stored]
    extra = [k for k in stored if k not in wanted]
    writes: dict[bytes, bytes | None] = {k: wanted[k] for k in (*wrong, *missing)}
    writes.update(dict.fromkeys(extra))
    return {"Entries": len(wanted), "Wrong": len(wrong), "Missing": len(missing),
            "Extra": len(extra)}, writes


async def _stored(h: DataHandle, lo: bytes, hi: bytes) -> dict[bytes, bytes]:
    return {tkey: value async for tkey, value in h.kv.scan(h.instance_id, h.lineage, lo, hi)}


async def _reload_plan(h: DataHandle) -> tuple[dict[str, Any], dict[bytes, bytes | None]]:
    """What the tag and inbound entries should be, from every block at this version, against
    what is stored: the report and the writes that make them right."""
    block = block_size(h.instance)
    tags: dict[bytes, bytes] = {}
    sources: dict[Point, set[Point]] = {}
    elements = misplaced = 0
    blocks = await every_block(h)
    with bulk():
        for coord, value in blocks:
            items = decode_elements(value)
            elements += len(items)
            misplaced += sum(block_of(e["Pos"], block) != coord for e in items)
            for tag in dict.fromkeys(t for e in items for t in e["Tags"]):
                entry = tag_entry(items, tag)
                if entry is not None:  # always: some element has the tag
                    tags[tag_tkey(tag, coord)] = entry
            for target in relationship_targets(items, block):
                sources.setdefault(target, set()).add(coord)
        inbound = {inbound_tkey(t): inbound_entry(s) for t, s in sources.items()}
        # tags are UTF-8, so no tag key starts TAG, 0xFF
        stored_tags = await _stored(h, bytes([TAG]), bytes([TAG, 0xFF]))
        stored_inbound = await _stored(h, bytes([INBOUND]), bytes([INBOUND]) + IZYX_MAX)
        tag_report, tag_writes = _compare(tags, stored_tags, _same_elements)
        inbound_report, inbound_writes = _compare(
            {k: v for k, v in inbound.items() if v is not None}, stored_inbound, _same_sources)
    report = {"Blocks": len(blocks), "Elements": elements, "MisplacedElements": misplaced,
              "Tags": tag_report, "Relationships": inbound_report}
    return report, {**tag_writes, **inbound_writes}


async def reload(h: DataHandle, *, check: bool, mod: ModInfo
                 ) -> tuple[dict[str, Any], int | None]:
    """Check the tag and inbound-relationship entries against the blocks at this version
    and, unless ``check``, rewrite the wrong, missing and extra ones in one transaction with
    a log record. The plan is made inside the transaction, whose write lock keeps every
    other edit out meanwhile. Returns the report (``Fixed``: whether entries were written)
    and the mutation id when something was written."""
    if check:
        report, _ = await _reload_plan(h)
        return {**report, "Fixed": False}, None
    async with h.writing() as txn:
        report, writes = await _reload_plan(h)
        if not writes:
            return {**report, "Fixed": False}, None
        encoded = await h.kv.encode_many([v for v in writes.values() if v is not None])
        put_entries(h, txn, writes, encoded)
        mutation = await h.log(txn, {"Action": "reload", "Entries": len(writes),
                                     **mod.fields()})
    return {**report, "Fixed": True}, mutation
