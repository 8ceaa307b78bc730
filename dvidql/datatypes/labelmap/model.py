"""The labelmap model beyond voxels: the supervoxel→body mapping, per-body label indices and
last modifications, max labels and label allocation, all versioned store entries (so start-up
costs nothing however many mutations were made).

Mutations are planned from reads made outside any transaction, so edits on different bodies
compute in parallel; inside its transaction a plan checks that every entry it read is
unchanged and, if another edit got there first, is planned again from reads inside the
transaction, which writers hold one at a time. No edit is lost and none waits on another's
planning.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from dvidql.codec.labelblock import Relabel, label_counts
from dvidql.codec.labelindex import (
    LabelIndex,
    load_label_index,
    pack_block_coords,
    store_label_index,
)
from dvidql.datatypes.base import DataHandle, ModInfo, Reads
from dvidql.datatypes.imageblk import layout
from dvidql.datatypes.imageblk.keys import block_tkey
from dvidql.datatypes.imageblk.ops import put_block
from dvidql.datatypes.labelmap.keys import (
    MAPPING,
    MAXLABEL,
    counter_key,
    decode_label,
    index_tkey,
    lastmod_tkey,
    mapping_tkey,
)
from dvidql.datatypes.voxels import Point
from dvidql.errors import BadRequest
from dvidql.ids import now
from dvidql.parallel import in_parallel
from dvidql.storage.base import Txn

__all__ = [
    "MAX_LABEL",
    "BodyChanges",
    "Followed",
    "Plan",
    "all_mappings",
    "allocate",
    "block_write_plan",
    "bodies_of",
    "body_of",
    "commit",
    "follow_bodies",
    "label_counter",
    "load_indices",
    "max_label",
    "next_label",
    "put_label_counter",
    "read_lastmod",
    "relabeler",
    "replan_if_stale",
    "require_indexed",
]

MAX_LABEL = 2**64 - 1
_LE = np.dtype("<u8")


async def _raw(h: DataHandle, tkeys: Sequence[bytes], txn: Txn | None) -> list[bytes | None]:
    if not tkeys:
        return []
    return await h.kv.get_raw_many(h.instance_id, tkeys, h.lineage, txn)


async def _values(h: DataHandle, raws: Sequence[bytes | None]) -> list[bytes | None]:
    found = iter(await h.kv.materialize([r for r in raws if r is not None]))
    return [None if r is None else next(found) for r in raws]


# ----- the mapping -----------------------------------------------------------------------

async def bodies_of(h: DataHandle, labels: np.ndarray, txn: Txn | None = None,
                    reads: Reads | None = None) -> np.ndarray:
    """The body of each supervoxel (aligned; unmapped supervoxels are their own body, 0 stays
    0), with one batch of mapping reads; ``reads`` collects the entries read."""
    labels = np.asarray(labels, np.uint64)
    if labels.size <= 1:  # already distinct: spare the sort
        return (await _map_unique(h, labels.reshape(-1), txn, reads)).reshape(labels.shape)
    unique, inverse = np.unique(labels, return_inverse=True)
    mapped = await _map_unique(h, unique, txn, reads)
    return mapped[inverse.reshape(labels.shape)]


async def _map_unique(h: DataHandle, unique: np.ndarray, txn: Txn | None,
                      reads: Reads | None) -> np.ndarray:
    tkeys = [mapping_tkey(v) for v in unique.tolist()]
    raws = await _raw(h, tkeys, txn)
    if reads is not None:
        reads.add(tkeys, raws)
    mapped = unique.copy()
    for i, value in enumerate(await _values(h, raws)):
        if value is not None:
            mapped[i] = _body(0, value)
    if len(unique) and unique[0] == 0:
        mapped[0] = 0
    return mapped


async def body_of(h: DataHandle, supervoxel: int) -> int:
    """The body of one supervoxel, as :func:`bodies_of` gives it, without the arrays: the
    mapping read of a single-point request."""
    if not supervoxel:
        return 0
    raw = await h.kv.get_raw(h.instance_id, mapping_tkey(supervoxel), h.lineage)
    return _body(supervoxel, None if raw is None else (await h.kv.materialize([raw]))[0])


def _body(supervoxel: int, value: bytes | None) -> int:
    """The body a mapping entry names; a supervoxel without one is its own body."""
    return supervoxel if value is None else int.from_bytes(value, "little")


async def relabeler(h: DataHandle, labels: np.ndarray) -> Relabel:
    """A palette relabeling from supervoxels to bodies for any of ``labels``."""
    unique = np.unique(np.asarray(labels, np.uint64))
    mapped = await _map_unique(h, unique, None, None)

    def relabel(palette: np.ndarray) -> np.ndarray:
        where = np.searchsorted(unique, palette)
        return mapped[np.minimum(where, len(unique) - 1)] if len(unique) else palette

    return relabel


def mapping_value(body: int) -> bytes:
    return body.to_bytes(8, "little")


async def all_mappings(h: DataHandle) -> np.ndarray:
    """(n, 2) uint64 supervoxel, body pairs of every supervoxel not mapped to itself."""
    lo, hi = mapping_tkey(0), mapping_tkey(MAX_LABEL)
    pairs = [(decode_label(tkey), int.from_bytes(value, "little"))
             async for tkey, value in h.kv.scan(h.instance_id, h.lineage, lo, hi)]
    found = np.array(pairs, np.uint64).reshape(-1, 2)
    return found[found[:, 0] != found[:, 1]]


# ----- label indices ---------------------------------------------------------------------

def require_indexed(h: DataHandle) -> None:
    """Refuse what needs label indices (bodies, sizes, sparse volumes, edits) on an instance
    created with IndexedLabels=false, which keeps none."""
    if not h.instance.settings["IndexedLabels"]:
        raise BadRequest(f"labelmap {h.instance.name!r} was created with IndexedLabels=false, "
                         "so it keeps no label indices for bodies, their sizes or edits")


async def load_indices(h: DataHandle, bodies: Sequence[int], txn: Txn | None = None,
                       reads: Reads | None = None) -> list[LabelIndex | None]:
    """The label index of each body (None where there is no such body)."""
    require_indexed(h)
    tkeys = [index_tkey(b) for b in bodies]
    raws = await _raw(h, tkeys, txn)
    if reads is not None:
        reads.add(tkeys, raws)
    stored = await _values(h, raws)

    def work(part: Sequence[bytes | None]) -> list[LabelIndex | None]:
        return [None if s is None else load_label_index(s) for s in part]

    return await in_parallel(stored, work)


def lastmod_record(mutation_id: int, when: str, mod: ModInfo) -> bytes:
    return orjson.dumps({"mutation id": mutation_id, "last mod user": mod.user,
                         "last mod time": when, "last mod app": mod.app})


async def read_lastmod(h: DataHandle, bodies: Sequence[int]) -> list[dict[str, Any] | None]:
    """DVID's ``lastmod`` JSON of each body, None where never modified."""
    values = await _values(h, await _raw(h, [lastmod_tkey(b) for b in bodies], None))
    return [None if v is None else orjson.loads(v) for v in values]


# ----- max labels and allocation ---------------------------------------------------------

async def max_label(h: DataHandle, txn: Txn | None = None) -> int:
    """The largest label at this version and its ancestors (children never report less)."""
    (value,) = await _values(h, await _raw(h, [MAXLABEL], txn))
    return int(value) if value else 0


async def label_counter(h: DataHandle, txn: Txn | None) -> dict[str, int]:
    """The repo-wide label record: ``max`` (largest label ever), ``next`` (the next-label
    counter, 0 when unset) and ``ceiling`` (0: none)."""
    key = counter_key(h.repo, h.instance)
    raw = await (h.kv.meta.get(key) if txn is None else txn.get(key))
    return {"max": 0, "next": 0, "ceiling": 0, **(orjson.loads(raw) if raw else {})}


def put_label_counter(h: DataHandle, txn: Txn, counter: dict[str, int]) -> None:
    txn.put(counter_key(h.repo, h.instance), orjson.dumps(counter))


async def next_label(h: DataHandle) -> int:
    counter = await label_counter(h, None)
    return counter["next"] or counter["max"] + 1


async def note_labels(h: DataHandle, txn: Txn, highest: int) -> None:
    """Raise this version's max label and the repo-wide one to ``highest``."""
    if highest > await max_label(h, txn):
        await h.kv.put(txn, h.instance_id, MAXLABEL, h.version, str(highest).encode(),
                       versioned=h.instance.versioned)
    counter = await label_counter(h, txn)
    if highest > counter["max"]:
        counter["max"] = highest
        put_label_counter(h, txn, counter)


async def allocate(h: DataHandle, txn: Txn, count: int) -> int:
    """The first of ``count`` new labels, never handed out before on any branch: from the
    next-label counter when one is set, else above the largest label in the repo."""
    counter = await label_counter(h, txn)
    start = counter["next"] or counter["max"] + 1
    end = start + count - 1
    limit = counter["ceiling"] or MAX_LABEL
    if end > limit:
        raise BadRequest(f"allocating {count} label(s) from {start} would pass the label "
                         f"limit {limit}")
    if counter["next"]:
        counter["next"] = end + 1
    put_label_counter(h, txn, counter)
    await note_labels(h, txn, end)
    return start


# ----- plans and commits -----------------------------------------------------------------

@dataclass
class Plan:
    """What a mutation writes, from what it read: ``writes`` maps tkeys to new values (None
    deletes); ``bodies`` get this mutation as their last modification; ``highest`` is the
    largest label the mutation introduces; ``result`` is for the caller."""

    reads: Reads
    writes: dict[bytes, bytes | None] = field(default_factory=dict)
    bodies: list[int] = field(default_factory=list)
    highest: int = 0
    result: dict[str, Any] = field(default_factory=dict)
    blocks: dict[Point, bytes] = field(default_factory=dict)  # scale-0 blocks, as stored
    written: dict[Point, np.ndarray] = field(default_factory=dict)  # blocks the caller writes
    indices: list[LabelIndex] = field(default_factory=list)  # as put_index stores them
    _encoded: list[bytes] = field(default_factory=list)
    _blocks: list[bytes] = field(default_factory=list)
    _followers: list[str] = field(default_factory=list)  # the instances asked, by name
    _followed: list[tuple[DataHandle, Followed]] = field(default_factory=list)
    _followed_in: Txn | None = None

    async def prepare(self, h: DataHandle, txn: Txn | None = None) -> None:
        """Encode the values (large ones and blocks go to the blob store) and find what the
        instances following the segmentation will log, before the transaction (or in
        ``txn``, when planned there)."""
        values = [v for v in self.writes.values() if v is not None]
        self._encoded = await h.kv.encode_many(values)
        self._blocks = await h.kv.encode_many(list(self.blocks.values()), blob=True)
        self._followers = _followers(h)
        self._followed = await _follow(h, txn, self)
        self._followed_in = txn

    async def apply(self, h: DataHandle, txn: Txn, mutation_id: int, when: str,
                    mod: ModInfo, action: str) -> None:
        """Write the plan in ``txn``, the mutation ``action`` (its log record's Action) with
        id ``mutation_id``, and the following instances' records: found again inside
        ``txn`` if anything they were found from has changed since."""
        if self._followed_in is not txn and (_followers(h) != self._followers or not all(
                [await done.unchanged(h, follower, txn) for follower, done in self._followed])):
            self._followed = await _follow(h, txn, self)
        cause = {"DataName": h.instance.name, "MutationID": mutation_id, "Action": action}
        for follower, done in self._followed:
            if done.record is not None:
                await follower.log(txn, {**done.record, "Cause": cause, **mod.fields()})
        versioned = h.instance.versioned
        encoded = iter(self._encoded)
        for tkey, value in self.writes.items():
            if value is None:
                h.kv.delete(txn, h.instance_id, tkey, h.version, versioned=versioned)
            else:
                h.kv.put_raw(txn, h.instance_id, tkey, h.version, next(encoded),
                             versioned=versioned)
        marked = h.instance.settings["MaxDownresLevel"] > 0
        for coord, raw in zip(self.blocks, self._blocks, strict=True):
            put_block(h, txn, coord, raw, mark=marked)
        record = lastmod_record(mutation_id, when, mod)
        for body in self.bodies:
            await h.kv.put(txn, h.instance_id, lastmod_tkey(body), h.version, record,
                           versioned=versioned)
        if self.highest:
            await note_labels(h, txn, self.highest)

    def put_index(self, index: LabelIndex) -> None:
        """Store the index, or delete it when empty (a body without voxels is no body)."""
        self.writes[index_tkey(index.label)] = (
            store_label_index(index) if len(index.counts) else None)
        self.indices.append(index)

    def body_changes(self) -> BodyChanges:
        """Where and how this plan can change the body under a point: in the blocks it
        rewrites, and in the blocks of the supervoxels it maps to another body (found in
        the new indices, which hold every supervoxel that keeps voxels)."""
        remapped = {decode_label(tkey): decode_label(tkey) if value is None
                    else int.from_bytes(value, "little")
                    for tkey, value in self.writes.items() if tkey[0] == MAPPING}
        moved = np.fromiter(remapped, np.uint64, len(remapped))
        rewritten: dict[Point, bytes | np.ndarray] = {**self.blocks, **self.written}
        coords = set(rewritten)
        for index in self.indices:
            coords.update(map(tuple, index.select(np.isin(index.svs, moved))
                              .block_coords().tolist()))
        return BodyChanges(sorted(coords), rewritten, remapped)  # type: ignore[arg-type]


@dataclass(frozen=True)
class BodyChanges:
    """How one segmentation mutation may change the body under points, for the instances
    that follow the segmentation (annotations log which of their elements change body).
    Until the mutation writes, the store shows the old state; the new one is the store with
    ``rewritten`` scale-0 blocks (as stored, or voxel arrays) and ``remapped`` supervoxels
    (to their new body). Only points in ``blocks`` can change body."""

    blocks: list[Point]
    rewritten: dict[Point, bytes | np.ndarray]
    remapped: dict[int, int]


@dataclass
class Followed:
    """What a following instance will log for a mutation (None: nothing), and the entries
    of it and of the segmentation it was found from."""

    record: dict[str, Any] | None
    reads: Reads = field(default_factory=Reads)  # of the following instance
    segmentation_reads: Reads = field(default_factory=Reads)

    async def unchanged(self, segmentation: DataHandle, follower: DataHandle, txn: Txn
                        ) -> bool:
        return (await self.reads.unchanged(follower, txn)
                and await self.segmentation_reads.unchanged(segmentation, txn))


Follower = Callable[[DataHandle, DataHandle, Txn | None, BodyChanges], Awaitable[Followed]]
_FOLLOWERS: dict[str, Follower] = {}


def follow_bodies(type_name: str, follower: Follower) -> None:
    """Have ``follower(segmentation, instance, txn, changes)`` tell, for every mutation of a
    labelmap, what each instance of ``type_name`` that syncs with it (its ``Sync`` setting
    names it) logs about it. It is asked before the mutation's transaction, so that the
    work is not done while writers wait, and again inside it (``txn``) only if what it read
    has changed meanwhile; its record commits with the mutation or not at all."""
    _FOLLOWERS[type_name] = follower


def _followers(h: DataHandle) -> list[str]:
    """The instances following the segmentation now (a sync may come between a mutation's
    planning and its transaction)."""
    repo = h.repos.repos.get(h.repo.repo_id, h.repo)  # as installed now
    return sorted(i.name for i in repo.instances.values()
                  if i.type_name in _FOLLOWERS and i.settings.get("Sync") == h.instance.name)


async def _follow(h: DataHandle, txn: Txn | None, plan: Plan
                  ) -> list[tuple[DataHandle, Followed]]:
    names = _followers(h)
    if not names or h.scale:
        return []
    changes = plan.body_changes()
    if not changes.blocks:
        return []
    followers = [h.sibling(name) for name in names]
    return [(f, await _FOLLOWERS[f.instance.type_name](h, f, txn, changes)) for f in followers]


Planner = Callable[[Txn | None], Awaitable[Plan]]


async def replan_if_stale(h: DataHandle, txn: Txn, plan: Plan, planner: Planner) -> Plan:
    """The plan if what it read is unchanged, else a new one from reads inside ``txn``."""
    if await plan.reads.unchanged(h, txn):
        return plan
    plan = await planner(txn)
    await plan.prepare(h, txn)
    return plan


async def commit(h: DataHandle, planner: Planner, record: Callable[[Plan], dict[str, Any]],
                 mod: ModInfo) -> tuple[int, Plan]:
    """Plan, then apply in one transaction with the mutation's log record; returns the
    mutation id and the plan applied."""
    plan = await planner(None)
    await plan.prepare(h)
    async with h.writing() as txn:
        plan = await replan_if_stale(h, txn, plan, planner)
        when = now()
        fields = record(plan)
        mutation_id = await h.log(txn, {**fields, **mod.fields(), "Timestamp": when})
        await plan.apply(h, txn, mutation_id, when, mod, fields["Action"])
    return mutation_id, plan


# ----- indices kept in step with block writes --------------------------------------------

def _rows(coords: Sequence[Point], counted: Sequence[tuple[np.ndarray, np.ndarray]],
          sign: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(packed block, supervoxel, signed count) rows of counted blocks, label 0 left out."""
    packed = pack_block_coords(np.array(coords, np.int64).reshape(-1, 3))
    sizes = [len(ids) for ids, _ in counted]
    blocks = np.repeat(packed, sizes)
    svs = np.concatenate([ids for ids, _ in counted]) if counted else np.zeros(0, np.uint64)
    counts = np.concatenate([c for _, c in counted]) if counted else np.zeros(0, np.int64)
    keep = svs != 0
    return blocks[keep], svs[keep].astype(np.uint64), sign * counts[keep]


async def block_write_plan(h: DataHandle, blocks: Sequence[tuple[Point, np.ndarray]],
                           txn: Txn | None = None) -> Plan:
    """The index changes of overwriting ``blocks`` (scale 0): the old blocks' supervoxel
    counts leave their bodies' indices, the new ones join them."""
    lay = layout(h.instance)
    reads = Reads()
    coords = [c for c, _ in blocks]
    tkeys = [block_tkey(c) for c in coords]
    old_raws = await _raw(h, tkeys, txn)
    reads.add(tkeys, old_raws)
    present = [i for i, r in enumerate(old_raws) if r is not None]
    old_stored = await h.kv.materialize([old_raws[i] for i in present])  # type: ignore[misc]

    def count_new(part: Sequence[tuple[Point, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [label_counts(v) for _, v in part]

    def count_old(part: Sequence[bytes]) -> list[tuple[np.ndarray, np.ndarray]]:
        return [label_counts(lay.codec.decode(s, lay.block_shape)) for s in part]

    new_counts = await in_parallel(blocks, count_new)
    old_counts = await in_parallel(old_stored, count_old)
    parts = [_rows(coords, new_counts, 1), _rows([coords[i] for i in present], old_counts, -1)]
    rows = [np.concatenate([p[k] for p in parts]) for k in range(3)]
    highest = int(max((ids[-1] for ids, _ in new_counts if len(ids)), default=0))
    bodies = await bodies_of(h, rows[1], txn, reads)
    return await _apply_rows(h, reads, rows, bodies, txn, highest)


async def _apply_rows(h: DataHandle, reads: Reads, rows: list[np.ndarray], bodies: np.ndarray,
                      txn: Txn | None, highest: int) -> Plan:
    """A plan adding signed (block, supervoxel, count) rows to the indices of ``bodies``."""
    live = bodies != 0  # supervoxels split away or reserved ids are not indexed
    blocks, svs, counts = (r[live] for r in rows)
    bodies = bodies[live]
    order = np.argsort(bodies, kind="stable")
    touched, starts = np.unique(bodies[order], return_index=True)
    ends = [*starts[1:].tolist(), len(order)]
    plan = Plan(reads, highest=highest)
    current = await load_indices(h, touched.tolist(), txn, reads)
    for body, lo, hi, old in zip(touched.tolist(), starts.tolist(), ends, current, strict=True):
        mine = order[lo:hi]
        base = old if old is not None else LabelIndex(body)
        try:
            index = LabelIndex.of(body, np.concatenate([base.blocks, blocks[mine]]),
                                  np.concatenate([base.svs, svs[mine]]),
                                  np.concatenate([base.counts.astype(np.int64), counts[mine]]))
        except ValueError as exc:
            raise RuntimeError(f"label index of body {body} disagrees with its blocks: "
                               f"{exc}") from None
        plan.put_index(index)
        plan.bodies.append(body)
    return plan
