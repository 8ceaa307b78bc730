"""Grayscale pyramids by DVID's convention: one uint8blk instance per scale, ``name_1``,
``name_2``... each the 2x2x2 average of the one above, updated only where blocks changed."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import Layout, layout
from dvidql.datatypes.imageblk.keys import decode_extents, extents_key
from dvidql.datatypes.imageblk.ops import downres
from dvidql.errors import BadRequest, Conflict
from dvidql.versions.dag import Instance

__all__ = ["build", "level_name", "level_settings"]

MAX_LEVELS = 20
LevelMaker = Callable[[str, dict[str, str]], Awaitable[DataHandle]]


def level_name(base: str, level: int) -> str:
    return f"{base}_{level}"


def level_settings(base: Instance, level: int) -> dict[str, str]:
    """Creation settings of pyramid level ``level`` of ``base``: same blocks, codec and
    background, voxels 2^level times larger."""
    lay = layout(base)
    return {
        "typename": "uint8blk",
        "dataname": level_name(base.name, level),
        "BlockSize": ",".join(map(str, lay.block)),
        "VoxelSize": ",".join(str(v * 2**level) for v in lay.voxel_size),
        "VoxelUnits": ",".join(lay.voxel_units),
        "Background": str(lay.background),
        "ScaleLevel": str(level),
        "Compression": str(lay.codec),
        "Versioned": str(base.versioned).lower(),
    }


def default_levels(lay: Layout, extents: dict[str, list[int]] | None) -> int:
    """Enough levels for the whole volume to fit in one block at the coarsest scale."""
    if extents is None:
        return 1
    blocks = max(-(-(hi + 1) // b) for hi, b in zip(extents["MaxPoint"], lay.block, strict=True))
    return max(1, min(MAX_LEVELS, math.ceil(math.log2(max(blocks, 1)))))


def _check_level(existing: Instance, base: Instance, level: int) -> None:
    lay, base_lay = layout(existing), layout(base)
    if existing.type_name != "uint8blk" or lay.block != base_lay.block \
            or lay.scale_level != level:
        raise Conflict(f"instance {existing.name!r} exists but is not level {level} of "
                       f"{base.name!r} (a uint8blk with ScaleLevel {level} and the same "
                       "BlockSize); rename or delete it")


async def build(h: DataHandle, levels: int | None, handle_for: LevelMaker) -> dict[str, Any]:
    """Build or update levels 1..``levels`` below ``h``'s instance at its version, creating
    missing level instances through ``handle_for(name, settings)``."""
    base = h.instance
    lay = layout(base)
    if lay.scale_level != 0:
        raise BadRequest(f"{base.name!r} is pyramid level {lay.scale_level}; build the pyramid "
                         "from the level-0 instance")
    extents = decode_extents(await h.kv.meta.get(extents_key(h.repo, base)))
    count = levels if levels is not None else default_levels(lay, extents)
    report = []
    source = h
    for level in range(1, count + 1):
        name = level_name(base.name, level)
        existing = h.repo.instances.get(name)
        if existing is not None:
            _check_level(existing, base, level)
        target = await handle_for(name, level_settings(base, level))
        written = await downres(source, target)
        report.append({"Name": name, "ScaleLevel": level, "BlocksWritten": written})
        source = target
    return {"Instance": base.name, "Levels": report}
