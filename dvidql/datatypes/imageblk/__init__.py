"""uint8blk: 8-bit grayscale stored in fixed-size blocks, as DVID's imageblk family.

Settings (case-insensitive): ``BlockSize`` (default 32,32,32), ``VoxelSize`` (8,8,8),
``VoxelUnits`` (nanometers), ``Background`` (0), ``ScaleLevel`` (0; pyramid levels are separate
instances ``name_1``, ``name_2``... by DVID's convention) and ``Compression``: ``lz4`` (the
default), ``gzip``, ``none`` or ``jpeg[:quality]``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dvidql.codec.imageblock import BlockCodec
from dvidql.codec.labelblock import LabelCodec
from dvidql.datatypes.base import Datatype
from dvidql.datatypes.imageblk.keys import (
    BLOCK,
    DIRTY,
    EXTENTS,
    SCALED_BLOCK,
    SCALED_DIRTY,
    decode_extents,
    decode_izyx,
    extents_key,
)
from dvidql.datatypes.voxels import Point
from dvidql.errors import BadRequest
from dvidql.storage.versioned import VersionedKV
from dvidql.versions.dag import Instance, Repo

__all__ = ["Layout", "Uint8BlkType", "VolumeType", "layout", "parse_block_size", "parse_small_int",
           "parse_triple", "parse_voxel_size"]

MAX_BLOCK = 512
JPEG_MAX_ROWS = 65535  # a JPEG image is at most 65535 pixels high (y·z rows)


@dataclass(frozen=True)
class Layout:
    """An instance's voxel geometry, parsed once from its stored settings."""

    block: Point
    voxel_size: tuple[float, float, float]
    voxel_units: tuple[str, str, str]
    background: int
    scale_level: int
    codec: BlockCodec | LabelCodec

    @property
    def dtype(self) -> np.dtype[Any]:
        return self.codec.dtype

    @property
    def block_shape(self) -> tuple[int, int, int]:
        return self.block[2], self.block[1], self.block[0]

    @property
    def block_voxels(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]


def layout(instance: Instance) -> Layout:
    """The layout of a uint8blk or labelmap instance (labelmap: uint64 label blocks, no
    background but 0, its scales within the instance)."""
    s = instance.settings
    codec: BlockCodec | LabelCodec
    if instance.type_name == "labelmap":
        codec, background, scale_level = LabelCodec.parse(instance.compression), 0, 0
    else:
        codec = BlockCodec.parse(instance.compression)
        background, scale_level = s["Background"], s["ScaleLevel"]
    return Layout(tuple(s["BlockSize"]), tuple(s["VoxelSize"]), tuple(s["VoxelUnits"]),  # type: ignore[arg-type]
                  background, scale_level, codec)


def parse_triple(text: str, what: str, convert: type) -> list[Any]:
    parts = [p for p in text.replace("_", ",").split(",") if p.strip()]
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise BadRequest(f"{what} needs one or three comma-separated values, not {text!r}")
    try:
        return [convert(p.strip()) for p in parts]
    except ValueError:
        raise BadRequest(f"{what} {text!r} must hold numbers") from None


def parse_block_size(text: str) -> list[int]:
    sizes = parse_triple(text, "BlockSize", int)
    if not all(1 <= b <= MAX_BLOCK for b in sizes):
        raise BadRequest(f"BlockSize values must be from 1 to {MAX_BLOCK}, not {text!r}")
    return sizes


def parse_voxel_size(text: str) -> list[float]:
    sizes = parse_triple(text, "VoxelSize", float)
    if not all(math.isfinite(v) and v > 0 for v in sizes):
        raise BadRequest(f"VoxelSize values must be positive, not {text!r}")
    return sizes


def parse_small_int(text: str, what: str, high: int) -> int:
    if not text.strip().isdigit() or int(text) > high:
        raise BadRequest(f"{what} must be an integer from 0 to {high}, not {text!r}")
    return int(text)


class VolumeType(Datatype):
    """What the block-volume types share: extents grown by writes and kept in one record,
    geometry in the Extended info, block keys."""

    async def info_state(
        self, kv: VersionedKV, repo: Repo, instance: Instance
    ) -> dict[str, list[int]] | None:
        return decode_extents(await kv.meta.get(extents_key(repo, instance)))

    def geometry(self, instance: Instance, state: Any = None) -> dict[str, Any]:
        """Block and voxel sizes and the extents (``state``: the stored record, or None)."""
        lay = layout(instance)
        lo = hi = lo_index = hi_index = None
        if state is not None:
            lo, hi = state["MinPoint"], state["MaxPoint"]
            lo_index = [v // b for v, b in zip(lo, lay.block, strict=True)]
            hi_index = [v // b for v, b in zip(hi, lay.block, strict=True)]
        return {
            "BlockSize": list(lay.block),
            "VoxelSize": list(lay.voxel_size),
            "VoxelUnits": list(lay.voxel_units),
            "MinPoint": lo,
            "MaxPoint": hi,
            "MinIndex": lo_index,
            "MaxIndex": hi_index,
            "Background": lay.background,
        }

    def describe_key(self, tkey: bytes) -> str:
        if tkey == EXTENTS:
            return "extents"
        kind = {BLOCK: "block", DIRTY: "pyramid marker", SCALED_BLOCK: "block",
                SCALED_DIRTY: "pyramid marker"}.get(tkey[0], "key")
        where = "_".join(map(str, decode_izyx(tkey[-12:])))
        if tkey[0] in (SCALED_BLOCK, SCALED_DIRTY):
            return f"{kind} {where} at scale {tkey[1]}"
        return f"{kind} {where}"


class Uint8BlkType(VolumeType):
    type_name = "uint8blk"
    type_url = "github.com/janelia-flyem/dvid/datatype/imageblk/uint8blk"
    type_version = "0.2"
    default_compression = "lz4"

    def parse_compression(self, text: str) -> str:
        return str(BlockCodec.parse(text))

    def parse_settings(self, settings: Mapping[str, str], *, compression: str) -> dict[str, Any]:
        known = {"blocksize", "voxelsize", "voxelunits", "background", "scalelevel"}
        unknown = set(settings) - known
        if "gridstore" in unknown:
            raise BadRequest("GridStore (serving an external precomputed volume) is not "
                             "supported; ingest the volume with 'dvidql ingest' instead")
        if unknown:
            raise BadRequest(f"unknown setting(s) for uint8blk: {', '.join(sorted(unknown))}; "
                             "use BlockSize, VoxelSize, VoxelUnits, Background, Compression")
        block = parse_block_size(settings.get("blocksize", "32"))
        units = parse_triple(settings.get("voxelunits", "nanometers"), "VoxelUnits", str)
        parsed = {
            "BlockSize": block,
            "VoxelSize": parse_voxel_size(settings.get("voxelsize", "8")),
            "VoxelUnits": units,
            "Background": parse_small_int(settings.get("background", "0"), "Background", 255),
            "ScaleLevel": parse_small_int(settings.get("scalelevel", "0"), "ScaleLevel", 30),
        }
        if compression.startswith("jpeg") and block[1] * block[2] > JPEG_MAX_ROWS:
            raise BadRequest(f"a JPEG block is an image {block[0]} wide and Y·Z = "
                             f"{block[1] * block[2]} rows high, over JPEG's {JPEG_MAX_ROWS}; "
                             "use smaller blocks or another compression")
        return parsed

    def extended(self, instance: Instance, state: Any = None) -> dict[str, Any]:
        """DVID's Extended info; ``state`` is the stored extents record (None when empty)."""
        return {"Values": [{"DataType": "uint8", "Label": "uint8"}], "Interpolable": True,
                **self.geometry(instance, state), "GridStore": "",
                "ScaleLevel": layout(instance).scale_level}

    def describe_compression(self, compression: str) -> str:
        return BlockCodec.parse(compression).describe()
