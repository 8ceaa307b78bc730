"""Edits that rewrite voxels: ``split`` (voxels of a body, given as runs, become a new body)
and ``split-supervoxel`` (voxels of one supervoxel become a new supervoxel of the same body).

Every supervoxel the runs touch gets a new id for its split part and, if anything is left,
one for the rest; the old id then maps to 0, and no id is handed out for an empty part
(DVID's mapping hygiene, issues #289 and #361). Blocks holding split voxels are decoded and
rewritten; the other blocks of a touched supervoxel only have their palette relabeled. The
lower scales are recomputed after the edit commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dvidql.codec.labelblock import label_counts, relabel_block
from dvidql.codec.labelindex import LabelIndex, pack_block_coords, unpack_block_coords
from dvidql.codec.serialization import deserialize, serialize, stored_format
from dvidql.codec.sparsevol import BlockRuns, encode_rles
from dvidql.datatypes.base import DataHandle, ModInfo, Reads
from dvidql.datatypes.imageblk import layout
from dvidql.datatypes.imageblk.keys import block_tkey
from dvidql.datatypes.labelmap.keys import mapping_tkey
from dvidql.datatypes.labelmap.model import (
    Plan,
    allocate,
    bodies_of,
    commit,
    load_indices,
    mapping_value,
    require_indexed,
)
from dvidql.datatypes.labelmap.ops import update_scales
from dvidql.errors import BadRequest, Conflict, Forbidden, NotFound
from dvidql.parallel import in_parallel
from dvidql.storage.base import Txn

__all__ = ["require_splits", "split_body", "split_supervoxel"]


@dataclass
class _Survey:
    """What a split would do, from reads at one moment: the body's index, the blocks the
    runs cover (decoded) and the split voxel counts per (block, supervoxel)."""

    index: LabelIndex
    reads: Reads
    voxels: list[np.ndarray]  # supervoxels of each block the runs cover
    split_rows: tuple[np.ndarray, np.ndarray, np.ndarray]  # packed block, sv, split count
    touched: np.ndarray  # sorted supervoxels with split voxels
    remaining: np.ndarray  # aligned with touched: voxels of each left outside the runs


async def _survey(h: DataHandle, body: int, runs: BlockRuns, txn: Txn | None,
                  allowed: np.ndarray | None) -> _Survey:
    """Read and check a split of ``body`` by ``runs``; ``allowed`` limits the supervoxels the
    runs may cover (split-supervoxel), else any of the body's."""
    reads = Reads()
    (index,) = await load_indices(h, [body], txn, reads)
    if index is None:
        raise NotFound(f"no body {body} at this version; nothing was split")
    packed = pack_block_coords(runs.coords)
    outside = ~np.isin(packed, index.blocks)
    if outside.any():
        raise BadRequest(f"the split covers block {runs.coords[outside][0].tolist()}, outside "
                         f"body {body} (it has no voxels there); nothing was split")
    lay = layout(h.instance)
    coords = [tuple(c) for c in runs.coords.tolist()]
    tkeys = [block_tkey(c) for c in coords]  # type: ignore[arg-type]
    raws = await h.kv.get_raw_many(h.instance_id, tkeys, h.lineage, txn)
    reads.add(tkeys, raws)
    stored = await h.kv.materialize(raws)  # type: ignore[arg-type]
    members = index.supervoxels() if allowed is None else allowed
    what = "body" if allowed is None else "supervoxel"

    def decode(part: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        out = []
        for i in part:
            voxels = lay.codec.decode(stored[i], lay.block_shape)
            covered = voxels[runs.mask(i)]
            if not np.isin(covered, members).all():
                stray = covered[~np.isin(covered, members)][0]
                raise BadRequest(f"the split covers voxels of label {stray} in block "
                                 f"{coords[i]}, outside the {what} being split; nothing was "
                                 "split")
            ids, counts = label_counts(np.sort(covered))
            out.append((voxels, ids, counts))
        return out

    decoded = await in_parallel(range(len(coords)), decode)
    blocks = np.concatenate([np.full(len(ids), packed[i], np.uint64)
                             for i, (_, ids, _) in enumerate(decoded)])
    svs = np.concatenate([ids for _, ids, _ in decoded]).astype(np.uint64)
    counts = np.concatenate([c for _, _, c in decoded])
    if not counts.sum():
        raise BadRequest("the split holds no voxels")
    touched = np.unique(svs)
    total_ids, totals = index.supervoxel_sizes()
    split_total = np.bincount(np.searchsorted(touched, svs), counts, len(touched))
    remaining = totals[np.searchsorted(total_ids, touched)].astype(np.int64) - split_total
    return _Survey(index, reads, [v for v, _, _ in decoded], (blocks, svs, counts), touched,
                   remaining)


def _same(a: _Survey, b: _Survey) -> bool:
    return np.array_equal(a.touched, b.touched) and np.array_equal(
        a.remaining > 0, b.remaining > 0)


async def _rewrite(h: DataHandle, survey: _Survey, runs: BlockRuns, txn: Txn | None,
                   split_ids: np.ndarray, remain_ids: np.ndarray, split_body: int) -> Plan:
    """The plan of a surveyed split: split voxels of each touched supervoxel get its split
    id, the rest its remain id; split parts join ``split_body``, the rest stay."""
    lay = layout(h.instance)
    index, touched = survey.index, survey.touched
    plan = Plan(survey.reads, bodies=list(dict.fromkeys([index.label, split_body])))

    def renamed(labels: np.ndarray, to: np.ndarray) -> np.ndarray:
        where = np.minimum(np.searchsorted(touched, labels), len(touched) - 1)
        hit = touched[where] == labels
        return np.where(hit, to[where], labels)

    def rewrite(part: Sequence[int]) -> list[bytes]:
        out = []
        for i in part:
            voxels = survey.voxels[i]
            mask = runs.mask(i)
            new = np.where(mask, renamed(voxels, split_ids), renamed(voxels, remain_ids))
            out.append(lay.codec.encode(new.astype(np.uint64)))
        return out

    covered = set(pack_block_coords(runs.coords).tolist())
    rewritten = await in_parallel(range(len(runs)), rewrite)
    # the other blocks of touched supervoxels: relabel their palettes to the remain ids
    rows = np.isin(index.svs, touched)
    others = sorted(set(index.blocks[rows].tolist()) - covered)
    other_coords = [tuple(c) for c in unpack_block_coords(np.array(others, np.uint64)).tolist()]
    tkeys = [block_tkey(c) for c in other_coords]  # type: ignore[arg-type]
    raws = await h.kv.get_raw_many(h.instance_id, tkeys, h.lineage, txn)
    plan.reads.add(tkeys, raws)
    if any(r is None for r in raws):
        raise RuntimeError(f"body {index.label}'s index names blocks that are not stored")
    stored = await h.kv.materialize(raws)  # type: ignore[arg-type]

    def relabel(part: Sequence[bytes]) -> list[bytes]:
        return [serialize(relabel_block(bytes(deserialize(s)),
                                        lambda p: renamed(np.asarray(p, np.uint64), remain_ids)),
                          stored_format(s)) for s in part]

    relabeled = await in_parallel(stored, relabel)
    plan.blocks = {**dict(zip([tuple(c) for c in runs.coords.tolist()], rewritten,
                                strict=True)),
                   **dict(zip(other_coords, relabeled, strict=True))}
    # index rows: the split parts leave, by block; what remains keeps the remain ids
    split_blocks, split_svs, split_counts = survey.split_rows
    split_part = LabelIndex.of(split_body, split_blocks, renamed(split_svs, split_ids),
                               split_counts)
    old = index.select(rows)
    rest = LabelIndex.of(index.label, np.concatenate([old.blocks, split_blocks]),
                         np.concatenate([renamed(old.svs, remain_ids),
                                         renamed(split_svs, remain_ids)]),
                         np.concatenate([old.counts.astype(np.int64), -split_counts]))
    kept = index.select(~rows)
    remain = LabelIndex.of(index.label, np.concatenate([kept.blocks, rest.blocks]),
                           np.concatenate([kept.svs, rest.svs]),
                           np.concatenate([kept.counts, rest.counts]).astype(np.int64))
    if split_body == index.label:
        remain = LabelIndex.of(index.label, *(np.concatenate([a, b]) for a, b in (
            (remain.blocks, split_part.blocks), (remain.svs, split_part.svs),
            (remain.counts, split_part.counts))))
    else:
        plan.put_index(split_part)
    plan.put_index(remain)
    for sv, split, left in zip(touched.tolist(), split_ids.tolist(), remain_ids.tolist(),
                               strict=True):
        plan.writes[mapping_tkey(sv)] = mapping_value(0)
        plan.writes[mapping_tkey(split)] = mapping_value(split_body)
        if left:
            plan.writes[mapping_tkey(left)] = mapping_value(index.label)
    return plan


async def _new_ids(h: DataHandle, count: int) -> list[int]:
    async with h.writing() as txn:
        first = await allocate(h, txn, count)
    return list(range(first, first + count))


def _ids(survey: _Survey, fresh: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Split and remain ids of the touched supervoxels from fresh labels (0: nothing left)."""
    n = len(survey.touched)
    split = np.array(fresh[:n], np.uint64)
    remain = np.zeros(n, np.uint64)
    left = survey.remaining > 0
    remain[left] = np.array(fresh[n:n + int(left.sum())], np.uint64)
    return split, remain


def require_splits(h: DataHandle) -> None:
    """Refuse splits where the server disallows them or the instance keeps no indices; the
    split functions check it too, and callers may check it first, before parsing runs."""
    require_indexed(h)
    if not h.allow_split:
        raise Forbidden("labelmap splits are disabled on this server (allow_labelmap_split)")


async def split_body(h: DataHandle, body: int, runs: np.ndarray, mod: ModInfo,
                     *, downres: bool = True) -> tuple[int, int]:
    """Split the voxels ``runs`` off ``body`` into a new body; returns (new body, mutation
    id)."""
    require_splits(h)
    grouped = _grouped(h, runs)
    first = await _survey(h, body, grouped, None, None)
    if int(first.split_rows[2].sum()) == first.index.num_voxels:
        raise BadRequest(f"the split covers all of body {body}; nothing was split")
    left = int((first.remaining > 0).sum())
    fresh = await _new_ids(h, 1 + len(first.touched) + left)
    new_body, fresh = fresh[0], fresh[1:]
    split_ids, remain_ids = _ids(first, fresh)

    async def planner(txn: Txn | None) -> Plan:
        survey = first if txn is None else await _survey(h, body, grouped, txn, None)
        if not _same(survey, first):
            raise Conflict(f"body {body} changed while it was being split; try again")
        plan = await _rewrite(h, survey, grouped, txn, split_ids, remain_ids, new_body)
        plan.writes.setdefault(mapping_tkey(new_body), mapping_value(0))
        return plan

    splits = {str(sv): {"Split": int(a), "Remain": int(b)} for sv, a, b in
              zip(first.touched.tolist(), split_ids, remain_ids, strict=True)}
    record = {"Action": "split", "Target": body, "NewLabel": new_body, "SVSplits": splits,
              "SplitSize": int(first.split_rows[2].sum()),
              "Split": await _keep_runs(h, runs)}
    mutation_id, _ = await commit(h, planner, lambda p: record, mod)
    if downres:
        await update_scales(h)
    return new_body, mutation_id


async def split_supervoxel(h: DataHandle, supervoxel: int, runs: np.ndarray, mod: ModInfo, *,
                           split_id: int = 0, remain_id: int = 0, downres: bool = True
                           ) -> tuple[int, int, int]:
    """Split the voxels ``runs`` of ``supervoxel`` into a new supervoxel of the same body
    (ids chosen by the caller or allocated); returns (split id, remain id, mutation id)."""
    require_splits(h)
    grouped = _grouped(h, runs)
    (body,) = (await bodies_of(h, np.array([supervoxel], np.uint64))).tolist()
    if not body:
        raise NotFound(f"supervoxel {supervoxel} was split or is reserved; nothing was split")
    allowed = np.array([supervoxel], np.uint64)
    first = await _survey(h, body, grouped, None, allowed)
    left = bool(first.remaining[0] > 0)
    chosen = [v for v in (split_id, remain_id if left else 0) if v]
    await _check_free(h, chosen)
    wanted = (0 if split_id else 1) + (1 if left and not remain_id else 0)
    fresh = await _new_ids(h, wanted) if wanted else []
    split = split_id or fresh.pop(0)
    remain = (remain_id or fresh.pop(0)) if left else 0

    async def planner(txn: Txn | None) -> Plan:
        survey = first if txn is None else await _survey(h, body, grouped, txn, allowed)
        if not _same(survey, first):
            raise Conflict(f"supervoxel {supervoxel} changed while it was being split; "
                           "try again")
        plan = await _rewrite(h, survey, grouped, txn, np.array([split], np.uint64),
                              np.array([remain], np.uint64), body)
        plan.highest = max(split, remain)
        return plan

    record: dict[str, Any] = {
        "Action": "split-supervoxel", "Supervoxel": supervoxel, "Body": body,
        "SplitSupervoxel": split, "RemainSupervoxel": remain,
        "SplitSize": int(first.split_rows[2].sum()), "RemainSize": int(first.remaining[0]),
        "Split": await _keep_runs(h, runs)}
    mutation_id, _ = await commit(h, planner, lambda p: record, mod)
    if downres:
        await update_scales(h)
    return split, remain, mutation_id


def _grouped(h: DataHandle, runs: np.ndarray) -> BlockRuns:
    if not len(runs):
        raise BadRequest("the split holds no runs")
    if (runs[:, 3] <= 0).any():
        raise BadRequest("the split has a run of length 0 or less")
    return BlockRuns(runs, layout(h.instance).block)


async def _check_free(h: DataHandle, labels: Sequence[int]) -> None:
    """Refuse caller-chosen ids that are bodies or supervoxels already."""
    if len(set(labels)) != len(labels):
        raise BadRequest("split and remain ids must differ")
    if not labels:
        return
    indices = await load_indices(h, labels)
    mapped = await h.kv.get_raw_many(h.instance_id, [mapping_tkey(v) for v in labels],
                                     h.lineage)
    used = [v for v, i, m in zip(labels, indices, mapped, strict=True)
            if i is not None or m is not None]
    if used:
        raise BadRequest(f"label {used[0]} is in use; choose an unused id")


async def _keep_runs(h: DataHandle, runs: np.ndarray) -> str:
    """Keep the split's runs in the blob store (as DVID does); the log record refers to them."""
    return await h.kv.blobs.put(encode_rles(runs))

