"""Segmentation (labelmap) for GraphQL: geometry, labels at points, REST URLs of boxes, all
through the datatype's operations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.labelmap import LabelmapType, ops
from dvidql.errors import BadRequest
from dvidql.resolvers.grayscale import base_url, box_geometry, open_instance

if TYPE_CHECKING:
    from dvidql.schema.context import Context

__all__ = ["MAX_POINTS", "label_at", "labels_at", "open_segmentation", "subvolume_url"]

MAX_POINTS = 100_000  # points per labels query; more go to the REST labels endpoint
TRANSFERS = {None, "lz4", "gzip", "google", "googlegzip"}


def open_segmentation(ctx: Context, ref: str, name: str) -> DataHandle:
    return open_instance(ctx, ref, name, LabelmapType.type_name)


_POINT_SHAPE = "each point needs three integers [x, y, z]"


async def labels_at(handle: DataHandle, points: Sequence[Sequence[int]]) -> list[int]:
    if len(points) > MAX_POINTS:
        raise BadRequest(f"{len(points)} points are more than the {MAX_POINTS} a query takes; "
                         "POST them to the REST labels endpoint instead")
    if any(len(p) != 3 for p in points):
        raise BadRequest(_POINT_SHAPE)
    return [int(v) for v in await ops.labels_at(handle, np.array(points, np.int64))]


async def label_at(handle: DataHandle, point: Sequence[int]) -> int:
    if len(point) != 3:
        raise BadRequest(_POINT_SHAPE)
    return await ops.label_at(handle, point)


def subvolume_url(ctx: Context, handle: DataHandle, offset: Sequence[int],
                  size: Sequence[int], compression: str | None) -> str:
    """The DVID REST URL returning a box of labels (packed uint64 LE, or compressed)."""
    if compression not in TRANSFERS:
        raise BadRequest(f"compression must be lz4, gzip, google or googlegzip, not "
                         f"{compression!r}")
    geometry = box_geometry(None, offset, size)
    path = f"/api/node/{handle.node.uuid}/{handle.instance.name}/raw/{geometry.url()}"
    return base_url(ctx) + path + (f"?compression={compression}" if compression else "")
