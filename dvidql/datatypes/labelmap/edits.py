"""Proofreading edits that change bodies but not voxels: merge, cleave, renumber. Each is one
transaction with its log record (DVID's Kafka message fields) and a repo-wide mutation id;
every input is checked against the indices before anything is written."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dvidql.codec.labelindex import LabelIndex
from dvidql.datatypes.base import DataHandle, ModInfo, Reads
from dvidql.datatypes.labelmap.keys import mapping_tkey
from dvidql.datatypes.labelmap.model import (
    Plan,
    allocate,
    commit,
    label_counter,
    load_indices,
    mapping_value,
    put_label_counter,
    require_indexed,
)
from dvidql.errors import BadRequest, NotFound
from dvidql.storage.base import Txn

__all__ = ["cleave", "merge", "raise_max_label", "renumber", "reserve_labels", "set_next_label",
           "store_indices", "store_mappings"]


def _labels(values: Sequence[int], what: str) -> None:
    for v in values:
        if v == 0:
            raise BadRequest(f"{what}: label 0 is background, not a body")


async def _existing(h: DataHandle, bodies: Sequence[int], txn: Txn | None,
                    reads: Reads) -> list[LabelIndex]:
    found = await load_indices(h, bodies, txn, reads)
    missing = [b for b, index in zip(bodies, found, strict=True) if index is None]
    if missing:
        raise NotFound(f"no body {', '.join(map(str, missing))} at this version (no label "
                       "index: it has no voxels, or was merged or renumbered away)")
    return found  # type: ignore[return-value]


def _move(plan: Plan, index: LabelIndex, target: int) -> None:
    """Map every supervoxel of ``index`` to ``target``."""
    value = mapping_value(target)
    for sv in index.supervoxels().tolist():
        plan.writes[mapping_tkey(sv)] = value


async def merge(h: DataHandle, labels: Sequence[int], mod: ModInfo) -> int:
    """Merge bodies ``labels[1:]`` into the target ``labels[0]``: their supervoxels map to it
    and their indices join its own; returns the mutation id."""
    require_indexed(h)
    if len(labels) < 2:
        raise BadRequest("merge needs a JSON list [target, merged1, merged2, ...] naming at "
                         "least one body to merge into the target")
    target, others = labels[0], list(dict.fromkeys(labels[1:]))
    _labels(labels, "merge")
    if target in others:
        raise BadRequest(f"cannot merge body {target} into itself")

    async def planner(txn: Txn | None) -> Plan:
        reads = Reads()
        into, *rest = await _existing(h, [target, *others], txn, reads)
        plan = Plan(reads, bodies=[target], result={"MutationID": 0})
        joined = LabelIndex.of(target, *(np.concatenate([i.blocks for i in [into, *rest]]),
                                         np.concatenate([i.svs for i in [into, *rest]]),
                                         np.concatenate([i.counts for i in [into, *rest]])))
        plan.put_index(joined)
        for index in rest:
            _move(plan, index, target)
            plan.put_index(LabelIndex(index.label))  # deletes it
        plan.result["MergedSize"] = int(sum(i.num_voxels for i in rest))
        return plan

    mutation_id, _ = await commit(h, planner, lambda p: {
        "Action": "merge", "Target": target, "Labels": others}, mod)
    return mutation_id


async def cleave(h: DataHandle, body: int, supervoxels: Sequence[int], mod: ModInfo
                 ) -> tuple[int, int]:
    """Move ``supervoxels`` of ``body`` into a new body; returns (new label, mutation id)."""
    require_indexed(h)
    _labels([body, *supervoxels], "cleave")
    wanted = np.unique(np.asarray(list(supervoxels), np.uint64))
    if not len(wanted):
        raise BadRequest("cleave needs a JSON list of the supervoxels to cleave off")

    def check(index: LabelIndex) -> np.ndarray:
        owned = index.supervoxels()
        missing = np.setdiff1d(wanted, owned)
        if len(missing):
            raise BadRequest(f"supervoxels {', '.join(map(str, missing.tolist()))} are not "
                             f"in body {body}; nothing was cleaved")
        if len(wanted) == len(owned):
            raise BadRequest(f"cleaving every supervoxel of body {body} would leave it "
                             "empty; nothing was cleaved")
        return np.isin(index.svs, wanted)

    check((await _existing(h, [body], None, Reads()))[0])  # refuse before allocating
    async with h.writing() as txn:
        new = await allocate(h, txn, 1)

    async def planner(txn: Txn | None) -> Plan:
        reads = Reads()
        (index,) = await _existing(h, [body], txn, reads)
        moving = check(index)
        plan = Plan(reads, bodies=[body, new])
        cleaved, remain = index.select(moving, new), index.select(~moving)
        plan.put_index(cleaved)
        plan.put_index(remain)
        _move(plan, cleaved, new)
        # the new id is reserved as a supervoxel mapped to nothing, as DVID does (#361)
        plan.writes.setdefault(mapping_tkey(new), mapping_value(0))
        plan.result = {"CleavedSize": cleaved.num_voxels, "RemainSize": remain.num_voxels}
        return plan

    def record(plan: Plan) -> dict[str, Any]:
        return {"Action": "cleave", "OrigLabel": body, "CleavedLabel": new,
                "CleavedSupervoxels": wanted.tolist(), **plan.result}

    mutation_id, _ = await commit(h, planner, record, mod)
    return new, mutation_id


async def renumber(h: DataHandle, pairs: Sequence[tuple[int, int]], mod: ModInfo) -> int:
    """Give bodies new ids, ``(new, old)`` pairs, all in one mutation; a new id must not be
    a body already. Returns the mutation id."""
    require_indexed(h)
    news, olds = [n for n, _ in pairs], [o for _, o in pairs]
    _labels([*news, *olds], "renumber")
    if not pairs:
        raise BadRequest("renumber needs a JSON list [new1, old1, new2, old2, ...]")
    if len(set(news)) != len(news) or len(set(olds)) != len(olds) or set(news) & set(olds):
        raise BadRequest("renumber: each label may appear once, as a new or an old id")

    async def planner(txn: Txn | None) -> Plan:
        reads = Reads()
        current = await _existing(h, olds, txn, reads)
        taken = [n for n, i in zip(news, await load_indices(h, news, txn, reads), strict=True)
                 if i is not None]
        if taken:
            raise BadRequest(f"cannot renumber to {', '.join(map(str, taken))}: already a body")
        plan = Plan(reads, bodies=list(news), highest=max(news))
        mapped = await load_mapping(h, news, txn, reads)
        for new, index, reserved in zip(news, current, mapped, strict=True):
            plan.put_index(LabelIndex(new, index.blocks, index.svs, index.counts))
            plan.put_index(LabelIndex(index.label))
            _move(plan, index, new)
            if reserved is None:  # reserve the id unless it is an existing supervoxel's
                plan.writes.setdefault(mapping_tkey(new), mapping_value(0))
        return plan

    mutation_id, _ = await commit(h, planner, lambda p: {
        "Action": "renumber", "Labels": [{"NewLabel": n, "OrigLabel": o} for n, o in pairs]},
        mod)
    return mutation_id


async def load_mapping(h: DataHandle, labels: Sequence[int], txn: Txn | None,
                       reads: Reads) -> list[int | None]:
    """The stored mapping entry of each label, None where it has none."""
    tkeys = [mapping_tkey(v) for v in labels]
    raws = await h.kv.get_raw_many(h.instance_id, tkeys, h.lineage, txn)
    reads.add(tkeys, raws)
    values = iter(await h.kv.materialize([r for r in raws if r is not None]))
    return [None if r is None else int.from_bytes(next(values), "little") for r in raws]


async def store_indices(h: DataHandle, indices: Sequence[LabelIndex], mod: ModInfo) -> int:
    """Store label indices as given (DVID's POST index/indices, for segmentation ingested
    without indexing); an index without blocks deletes the body's. Returns the mutation id."""
    require_indexed(h)
    labels = [i.label for i in indices]
    if len(set(labels)) != len(labels):
        raise BadRequest("each label may have one posted index")
    if not indices:
        raise BadRequest("no label indices posted")
    highest = max(max(labels), *(int(i.svs.max()) for i in indices if len(i.svs)))

    async def planner(txn: Txn | None) -> Plan:
        plan = Plan(Reads(), bodies=labels, highest=highest)
        for index in indices:
            plan.put_index(LabelIndex(index.label, index.blocks, index.svs, index.counts))
        return plan

    mutation_id, _ = await commit(h, planner, lambda p: {
        "Action": "post-indices", "Labels": labels}, mod)
    return mutation_id


async def raise_max_label(h: DataHandle, label: int, mod: ModInfo) -> int:
    """Raise this version's max label (and the repo's) to ``label`` if it is larger."""
    async def planner(txn: Txn | None) -> Plan:
        return Plan(Reads(), highest=label)

    mutation_id, _ = await commit(h, planner, lambda p: {
        "Action": "post-maxlabel", "Max Label": label}, mod)
    return mutation_id


async def reserve_labels(h: DataHandle, count: int, mod: ModInfo) -> tuple[int, int]:
    """Reserve ``count`` new labels for the client; returns (first label, mutation id)."""
    async with h.writing() as txn:
        start = await allocate(h, txn, count)
        mutation_id = await h.log(txn, {"Action": "post-nextlabel", "Start Label": start,
                                        "End Label": start + count - 1, **mod.fields()})
    return start, mutation_id


async def store_mappings(h: DataHandle, mappings: Sequence[tuple[int, Sequence[int]]],
                         mod: ModInfo) -> int:
    """Set supervoxels' bodies as given, ``(body, [supervoxel, ...])`` pairs (DVID's POST
    mappings, for loading an agglomeration; indices are posted separately). Returns the
    mutation id."""
    if not mappings:
        raise BadRequest("no mappings posted")
    writes: dict[bytes, bytes | None] = {}
    for body, originals in mappings:
        for sv in originals:
            if sv == 0:
                raise BadRequest("supervoxel 0 is background and cannot be mapped")
            writes[mapping_tkey(sv)] = mapping_value(body)
    highest = max(max(b for b, _ in mappings), *(max(o, default=0) for _, o in mappings))

    async def planner(txn: Txn | None) -> Plan:
        return Plan(Reads(), writes=dict(writes), highest=highest)

    mutation_id, _ = await commit(h, planner, lambda p: {
        "Action": "post-mappings", "Mappings": len(writes)}, mod)
    return mutation_id


async def set_next_label(h: DataHandle, label: int, ceiling: int | None, mod: ModInfo) -> int:
    """Make ``label + 1`` the next label allocated (0: allocate above the max label again),
    optionally with an allocation ceiling (0 clears it). Returns the mutation id."""
    async with h.writing() as txn:
        counter = await label_counter(h, txn)
        counter["next"] = label + 1 if label else 0
        if ceiling is not None:
            counter["ceiling"] = ceiling
        if counter["ceiling"] and counter["next"] > counter["ceiling"]:
            raise BadRequest(f"the next label {counter['next']} would be above the ceiling "
                             f"{counter['ceiling']}")
        put_label_counter(h, txn, counter)
        return await h.log(txn, {"Action": "post-setnextlabel", "Label": label,
                                 **({"Ceiling": ceiling} if ceiling is not None else {}),
                                 **mod.fields()})
