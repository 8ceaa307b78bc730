"""Grayscale (uint8blk) for GraphQL: geometry, scales, REST URLs of boxes and slices, and the
voxels themselves for small requests, all through the datatype's operations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dvidql.codec.images import ImageFormat, encode_image
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import Uint8BlkType, layout, ops
from dvidql.datatypes.imageblk.pyramid import level_name
from dvidql.datatypes.voxels import Geometry, parse_geometry
from dvidql.errors import BadRequest, PayloadTooLarge

if TYPE_CHECKING:
    from dvidql.schema.context import Context

__all__ = [
    "INLINE_LIMIT",
    "Scale",
    "base_url",
    "box_geometry",
    "open_instance",
    "read_slice",
    "read_subvolume",
    "scales",
    "url",
]

INLINE_LIMIT = 4 * 1024 * 1024  # voxels returned inline as base64; larger reads go to REST
PLANE_DIMS = {"XY": "xy", "XZ": "xz", "YZ": "yz"}


def open_instance(ctx: Context, ref: str, name: str,
                  type_name: str = Uint8BlkType.type_name) -> DataHandle:
    handle = ctx.service.handle(ref, name, ctx.caller)
    if handle.instance.type_name != type_name:
        raise BadRequest(f"data instance {name!r} is a {handle.instance.type_name} instance, "
                         f"not {type_name}")
    return handle


@dataclass(frozen=True)
class Scale:
    level: int
    handle: DataHandle


def scales(ctx: Context, handle: DataHandle) -> list[Scale]:
    """Level 0 and the pyramid levels ``name_1``, ``name_2``... present in the repo."""
    found = [Scale(0, handle)]
    while True:
        name = level_name(handle.instance.name, len(found))
        instance = handle.repo.instances.get(name)
        if instance is None or instance.type_name != Uint8BlkType.type_name:
            return found
        found.append(Scale(len(found), open_instance(ctx, handle.node.uuid, name)))


def at_scale(ctx: Context, handle: DataHandle, scale: int) -> DataHandle:
    available = scales(ctx, handle)
    if not 0 <= scale < len(available):
        raise BadRequest(f"{handle.instance.name!r} has scales 0 to {len(available) - 1}, "
                         f"not {scale}; build more with the pyramid endpoint")
    return available[scale].handle


def box_geometry(plane: str | None, offset: Sequence[int], size: Sequence[int]) -> Geometry:
    if len(offset) != 3:
        raise BadRequest("offset needs three integers [x, y, z]")
    dims = "0_1_2" if plane is None else PLANE_DIMS[plane]
    return parse_geometry(dims, "_".join(map(str, size)), "_".join(map(str, offset)))


def base_url(ctx: Context) -> str:
    request = ctx.request
    if request is None:
        return ""
    base = str(request.base_url).rstrip("/")
    return "http" + base[2:] if base.startswith("ws") else base


def url(ctx: Context, handle: DataHandle, scale: int, plane: str | None,
        offset: Sequence[int], size: Sequence[int], fmt: str | None) -> str:
    """The DVID REST URL that returns this box (octet-stream) or slice (an image)."""
    target = at_scale(ctx, handle, scale)
    geometry = box_geometry(plane, offset, size)
    path = f"/api/node/{handle.node.uuid}/{target.instance.name}/raw/{geometry.url()}"
    if fmt is not None:
        path += f"/{ImageFormat.parse(fmt)}"
    elif plane is not None:
        path += "/png"
    return base_url(ctx) + path


def _check_inline(ctx: Context, handle: DataHandle, scale: int, plane: str | None,
                  offset: Sequence[int], size: Sequence[int], fmt: str | None) -> Geometry:
    geometry = box_geometry(plane, offset, size)
    if geometry.box.voxels > INLINE_LIMIT:
        link = url(ctx, handle, scale, plane, offset, size, fmt)
        raise PayloadTooLarge(f"{geometry.box.voxels} voxels are more than the "
                              f"{INLINE_LIMIT} returned inline; GET {link} instead")
    return geometry


async def read_subvolume(ctx: Context, handle: DataHandle, scale: int,
                         offset: Sequence[int], size: Sequence[int]) -> bytes:
    """Packed uint8 voxels, z-major then y then x, as the REST raw endpoint returns them."""
    geometry = _check_inline(ctx, handle, scale, None, offset, size, None)
    return (await ops.read_box(at_scale(ctx, handle, scale), geometry.box)).tobytes()


async def read_slice(ctx: Context, handle: DataHandle, scale: int, plane: str,
                     offset: Sequence[int], size: Sequence[int], fmt: str) -> bytes:
    """An image file (png or jpg) of a plane."""
    image = ImageFormat.parse(fmt)
    geometry = _check_inline(ctx, handle, scale, plane, offset, size, fmt)
    volume = await ops.read_box(at_scale(ctx, handle, scale), geometry.box)
    return encode_image(geometry.plane(volume), image)


def extents_of(info: dict[str, object]) -> tuple[list[int], list[int]] | None:
    extended = info["Extended"]
    assert isinstance(extended, dict)
    if extended["MinPoint"] is None:
        return None
    return extended["MinPoint"], extended["MaxPoint"]


def geometry_of(handle: DataHandle) -> dict[str, object]:
    lay = layout(handle.instance)
    return {"block_size": list(lay.block), "voxel_size": list(lay.voxel_size),
            "voxel_units": list(lay.voxel_units), "background": lay.background,
            "scale_level": lay.scale_level, "compression": str(lay.codec)}
