"""Bodies of a segmentation (labelmap) for GraphQL: label indices, last modifications and the
supervoxel-to-body mapping read in batches through per-request DataLoaders, the instance's
mutation log, and the proofreading edits (merge, cleave, renumber, split of a supervoxel), all
through the datatype's operations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from strawberry.dataloader import DataLoader

from dvidql.codec.labelindex import LabelIndex
from dvidql.codec.sparsevol import decode_rles
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import layout
from dvidql.datatypes.labelmap import LabelmapType, bodies, edits, model
from dvidql.datatypes.labelmap import split as split_ops
from dvidql.errors import BadRequest

if TYPE_CHECKING:
    from dvidql.schema.context import Context

__all__ = [
    "MAX_BODIES",
    "MAX_MUTATIONS",
    "MAX_RUNS",
    "BodyLoaders",
    "block_count",
    "body_of_supervoxel",
    "bounding_box",
    "cleave",
    "index_of_body",
    "index_of_supervoxel",
    "indices_of_bodies",
    "last_modified",
    "loaders",
    "max_label",
    "merge",
    "mutations",
    "next_label",
    "open_for_edit",
    "renumber",
    "split_supervoxel",
]

MAX_BODIES = 10_000  # bodies per query; more go to the REST indices endpoint
MAX_MUTATIONS = 10_000  # log records per query; page on with since=
MAX_RUNS = 100_000  # runs per split; more go to the REST split-supervoxel endpoint

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


async def _distinct(keys: Sequence[K], load: Callable[[list[K]], Awaitable[Sequence[V]]]
                    ) -> list[V]:
    """``load`` of each distinct key once, answered for every key in order."""
    unique = list(dict.fromkeys(keys))
    found = dict(zip(unique, await load(unique), strict=True))
    return [found[k] for k in keys]


class BodyLoaders:
    """Batched reads of one labelmap instance at one version for one request context: the
    loads made while a query's fields resolve together reach the store as one call each.
    Nothing is kept between batches, so that reads after a mutation, and later operations
    of a WebSocket connection (one context for all of them), see the current data."""

    def __init__(self, handle: DataHandle) -> None:
        self.handle = handle
        self.bodies: DataLoader[int, LabelIndex | None] = DataLoader(self._bodies, cache=False)
        self.supervoxels: DataLoader[int, LabelIndex | None] = DataLoader(
            self._supervoxels, cache=False)
        self.lastmod: DataLoader[int, dict[str, Any] | None] = DataLoader(
            self._lastmod, cache=False)
        self.owners: DataLoader[int, int] = DataLoader(self._owners, cache=False)

    async def _bodies(self, labels: list[int]) -> list[LabelIndex | None]:
        return await _distinct(labels, lambda u: bodies.indices_of(self.handle, u))

    async def _supervoxels(self, labels: list[int]) -> list[LabelIndex | None]:
        return await _distinct(labels, lambda u: bodies.indices_of(self.handle, u,
                                                                   supervoxels=True))

    async def _lastmod(self, labels: list[int]) -> list[dict[str, Any] | None]:
        return await _distinct(labels, lambda u: model.read_lastmod(self.handle, u))

    async def _owners(self, labels: list[int]) -> list[int]:
        async def load(unique: list[int]) -> list[int]:
            found = await model.bodies_of(self.handle, np.asarray(unique, np.uint64))
            return [int(v) for v in found.tolist()]

        return await _distinct(labels, load)


def loaders(ctx: Context, handle: DataHandle) -> BodyLoaders:
    """The request's loaders of ``handle``'s instance at its version (made on first use)."""
    key = ("labelmap-bodies", handle.repo.repo_id, handle.instance.data_uuid, handle.version)
    found = ctx.loaders.get(key)
    if found is None:
        found = ctx.loaders[key] = BodyLoaders(handle)
    return found  # type: ignore[no-any-return]


# ----- reads -----------------------------------------------------------------------------------

async def index_of_body(ctx: Context, h: DataHandle, label: int) -> LabelIndex | None:
    return await loaders(ctx, h).bodies.load(label)


async def indices_of_bodies(ctx: Context, h: DataHandle, labels: Sequence[int]
                            ) -> list[LabelIndex | None]:
    if len(labels) > MAX_BODIES:
        raise BadRequest(f"{len(labels)} bodies are more than the {MAX_BODIES} a query takes; "
                         "ask in parts, or GET the REST indices endpoint")
    pending = [loaders(ctx, h).bodies.load(label) for label in labels]
    # not load_many: its gather resolves a tick after the batch, so the fields of these
    # bodies would load in a batch of their own, apart from those of bodies asked for alone
    return [await found for found in pending]


async def index_of_supervoxel(ctx: Context, h: DataHandle, label: int) -> LabelIndex | None:
    return await loaders(ctx, h).supervoxels.load(label)


async def body_of_supervoxel(ctx: Context, h: DataHandle, label: int) -> int:
    return await loaders(ctx, h).owners.load(label)


async def last_modified(ctx: Context, h: DataHandle, label: int) -> dict[str, Any] | None:
    """DVID's lastmod JSON of a body ("mutation id", "last mod user"...), None if never."""
    return await loaders(ctx, h).lastmod.load(label)


def block_count(index: LabelIndex) -> int:
    return len(np.unique(index.blocks))


def bounding_box(h: DataHandle, index: LabelIndex) -> tuple[list[int], list[int]]:
    """First and last voxel of the index's blocks (bounds accurate to blocks)."""
    return bodies.block_extent(index, layout(h.instance).block)


async def max_label(h: DataHandle) -> int:
    return await model.max_label(h)


async def next_label(h: DataHandle) -> int:
    return await model.next_label(h)


async def mutations(h: DataHandle, since: int, limit: int) -> list[dict[str, Any]]:
    """This instance's log records that the handle's version sees (made there or at an
    ancestor; any version for unversioned instances) with mutation id above ``since``,
    oldest first, at most ``limit``."""
    if not 0 < limit <= MAX_MUTATIONS:
        raise BadRequest(f"limit must be from 1 to {MAX_MUTATIONS}, not {limit}; page on "
                         "with since set to the last mutationId")
    versions = None
    if h.instance.versioned:
        versions = {h.repo.nodes[v].uuid for v in h.repo.lineage(h.node.version_id).members}
    return await h.records(versions, since, limit)


# ----- edits -----------------------------------------------------------------------------------

def open_for_edit(ctx: Context, ref: str, name: str) -> DataHandle:
    """The labelmap instance ``name`` at version ``ref``, with the write policy."""
    handle = ctx.service.handle(ref, name, ctx.caller, write=True)
    if handle.instance.type_name != LabelmapType.type_name:
        raise BadRequest(f"data instance {name!r} is a {handle.instance.type_name} instance, "
                         f"not {LabelmapType.type_name}")
    return handle


def _begin(ctx: Context, ref: str, name: str, user: str, app: str,
           refusal: str | None = None) -> tuple[DataHandle, model.ModInfo]:
    """The start every edit shares: the write policy first, so that a caller it refuses
    learns nothing of the arguments, then ``refusal``, what is wrong with them if anything."""
    h = open_for_edit(ctx, ref, name)
    if refusal is not None:
        raise BadRequest(refusal)
    return h, model.ModInfo(user, app)


async def merge(ctx: Context, ref: str, name: str, target: int, merged: Sequence[int],
                user: str, app: str) -> tuple[DataHandle, int]:
    """Merge bodies ``merged`` into ``target``; returns the handle and the mutation id."""
    h, mod = _begin(ctx, ref, name, user, app, None if merged else (
        "mergeBodies needs at least one body in 'merged' to merge into the target"))
    return h, await edits.merge(h, [target, *merged], mod)


async def cleave(ctx: Context, ref: str, name: str, body: int, supervoxels: Sequence[int],
                 user: str, app: str) -> tuple[DataHandle, int, int]:
    """Move ``supervoxels`` of ``body`` into a new body; returns the handle, the new label
    and the mutation id."""
    h, mod = _begin(ctx, ref, name, user, app, None if supervoxels else (
        "cleaveBody needs at least one supervoxel in 'supervoxels' to cleave off"))
    new, mutation_id = await edits.cleave(h, body, supervoxels, mod)
    return h, new, mutation_id


async def renumber(ctx: Context, ref: str, name: str, pairs: Sequence[tuple[int, int]],
                   user: str, app: str) -> tuple[DataHandle, int]:
    """Give bodies new ids, ``(new, old)`` pairs, in one mutation; returns the handle and
    the mutation id."""
    h, mod = _begin(ctx, ref, name, user, app, None if pairs else (
        "renumberBodies needs at least one {newLabel, oldLabel} pair"))
    return h, await edits.renumber(h, pairs, mod)


def _split_runs(runs: Sequence[Sequence[int]] | None, rles: bytes | None) -> np.ndarray:
    """The (n, 4) x, y, z, length runs of a split, from exactly one of the two forms a
    client may send; the datatype refuses empty splits and runs of no length."""
    if (runs is None) == (rles is None):
        raise BadRequest("splitSupervoxel takes its voxels in exactly one of 'runs' and "
                         "'rles'")
    if rles is None:
        found = np.array(runs, np.int32).reshape(-1, 4)
    else:
        try:
            found = decode_rles(rles)
        except ValueError as exc:
            raise BadRequest(f"'rles' must be a sparse volume in DVID's rles format: {exc}"
                             ) from None
    if len(found) > MAX_RUNS:
        raise BadRequest(f"{len(found)} runs are more than the {MAX_RUNS} a mutation takes; "
                         "POST them to the REST split-supervoxel endpoint instead")
    return found


async def split_supervoxel(ctx: Context, ref: str, name: str, supervoxel: int,
                           runs: Sequence[Sequence[int]] | None, rles: bytes | None,
                           split_id: int, remain_id: int, downres: bool, user: str, app: str
                           ) -> tuple[DataHandle, int, int, int]:
    """Split the voxels of ``runs`` (x, y, z, length) or ``rles`` (DVID's binary sparse
    volume) off ``supervoxel`` into a new supervoxel of its body (ids 0: allocated);
    returns the handle, the split and remain ids (0: nothing remains) and the mutation id."""
    h, mod = _begin(ctx, ref, name, user, app)
    split_ops.require_splits(h)
    split, remain, mutation_id = await split_ops.split_supervoxel(
        h, supervoxel, _split_runs(runs, rles), mod, split_id=split_id, remain_id=remain_id,
        downres=downres)
    return h, split, remain, mutation_id
