"""Bodies of a segmentation (labelmap) for GraphQL: label indices, last modifications and the
supervoxel-to-body mapping read in batches through per-request DataLoaders, all through the
datatype's operations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from strawberry.dataloader import DataLoader

from dvidql.codec.labelindex import LabelIndex
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import layout
from dvidql.datatypes.labelmap import bodies, model
from dvidql.errors import BadRequest

if TYPE_CHECKING:
    from dvidql.schema.context import Context

__all__ = [
    "MAX_BODIES",
    "BodyLoaders",
    "block_count",
    "body_of_supervoxel",
    "bounding_box",
    "index_of_body",
    "index_of_supervoxel",
    "indices_of_bodies",
    "last_modified",
    "loaders",
    "max_label",
    "next_label",
]

MAX_BODIES = 10_000  # bodies per query; more go to the REST indices endpoint

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


def _require_indexed(h: DataHandle) -> None:
    if not h.instance.settings["IndexedLabels"]:
        raise BadRequest(f"labelmap {h.instance.name!r} was created with IndexedLabels=false, "
                         "so it keeps no label indices for bodies, labels or edits")


# ----- reads -----------------------------------------------------------------------------------

async def index_of_body(ctx: Context, h: DataHandle, label: int) -> LabelIndex | None:
    _require_indexed(h)
    return await loaders(ctx, h).bodies.load(label)


async def indices_of_bodies(ctx: Context, h: DataHandle, labels: Sequence[int]
                            ) -> list[LabelIndex | None]:
    _require_indexed(h)
    if len(labels) > MAX_BODIES:
        raise BadRequest(f"{len(labels)} bodies are more than the {MAX_BODIES} a query takes; "
                         "ask in parts, or GET the REST indices endpoint")
    pending = [loaders(ctx, h).bodies.load(label) for label in labels]
    # not load_many: its gather resolves a tick after the batch, so the fields of these
    # bodies would load in a batch of their own, apart from those of bodies asked for alone
    return [await found for found in pending]


async def index_of_supervoxel(ctx: Context, h: DataHandle, label: int) -> LabelIndex | None:
    _require_indexed(h)
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
    _require_indexed(h)
    return await model.max_label(h)


async def next_label(h: DataHandle) -> int:
    _require_indexed(h)
    return await model.next_label(h)
