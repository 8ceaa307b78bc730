"""uint8blk endpoints with DVID's paths, geometry syntax and byte layouts: parse, call ops,
encode."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from dvidql.codec.blockstream import encode_block_stream
from dvidql.codec.imageblock import encode_jpeg, stored_jpeg
from dvidql.codec.images import ImageFormat, encode_image
from dvidql.codec.jsonbody import decode_json
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import layout, ops
from dvidql.datatypes.imageblk.keys import block_tkey
from dvidql.datatypes.imageblk.resample import read_arb, stretch_isotropic
from dvidql.datatypes.voxels import (
    Box,
    Geometry,
    Point,
    parse_block_list,
    parse_geometry,
    parse_point,
    span_coords,
    split_blocks_within,
)
from dvidql.errors import BadRequest
from dvidql.rest.common import (
    TypeRoute,
    caller,
    json_body,
    json_response,
    mutation_response,
    read_body,
    service,
)
from dvidql.rest.roi import mask_option
from dvidql.storage import keys as K

__all__ = ["routes"]

_OCTET = "application/octet-stream"


def _throttle(request: Request) -> AbstractAsyncContextManager[None]:
    return service(request).throttle(request.query_params.get("throttle") == "true")


def _attenuation(request: Request) -> int | None:
    """DVID's ``attenuation=1..7`` with ``roi=``: voxels outside are divided by 2^n instead of
    zeroed."""
    text = request.query_params.get("attenuation")
    if text is None:
        return None
    if text not in ("1", "2", "3", "4", "5", "6", "7"):
        raise BadRequest(f"attenuation must be an integer from 1 to 7, not {text!r}")
    return int(text)


async def _volume(request: Request, h: DataHandle, geometry: Geometry, fmt: str | None,
                  *, isotropic: bool = False) -> Response:
    """A 3D box as bytes (or a JPEG mosaic), or a 2D plane as an image; with ``roi=``,
    voxels outside the ROI are zeroed (or attenuated)."""
    attenuation = _attenuation(request)
    async with _throttle(request):
        volume = await ops.read_box(h, geometry.box)
        inside = await mask_option(request, h, geometry.box)
    if inside is not None:
        outside = volume >> attenuation if attenuation else np.zeros_like(volume)
        volume = np.where(inside.astype(bool), volume, outside)
    if geometry.is_3d:
        if fmt is None or fmt.lower() in ("octet-stream", "raw"):
            return Response(volume.data, media_type=_OCTET)
        image = ImageFormat.parse(fmt)
        if image.name != "jpg":
            raise BadRequest(f"3D requests return raw bytes or a jpeg mosaic, not {fmt!r}")
        return Response(encode_jpeg(volume, image.quality), media_type=image.media_type)
    image = ImageFormat.parse(fmt or "png")
    plane = geometry.plane(volume)
    if isotropic:
        plane = stretch_isotropic(plane, geometry.dims, layout(h.instance).voxel_size)
    return Response(encode_image(plane, image), media_type=image.media_type)


async def get_raw(request: Request, h: DataHandle, dims: str, size: str, offset: str,
                  fmt: str | None = None) -> Response:
    geometry = parse_geometry(dims, size, offset)
    if request.method == "POST":
        return await _post_raw(request, h, geometry, fmt)
    return await _volume(request, h, geometry, fmt)


async def get_raw_fmt(request: Request, h: DataHandle, dims: str, size: str, offset: str,
                      fmt: str) -> Response:
    return await get_raw(request, h, dims, size, offset, fmt)


async def _post_raw(request: Request, h: DataHandle, geometry: Geometry,
                    fmt: str | None) -> Response:
    if not geometry.is_3d:
        raise BadRequest("POST raw takes a 3D block-aligned box (dims 0_1_2)")
    if fmt is not None and fmt.lower() not in ("octet-stream", "raw"):
        raise BadRequest(f"POST raw takes packed uint8 voxels, not {fmt!r}")
    box = geometry.box
    box.require_aligned(layout(h.instance).block)
    ops.check_request_size(h, box.voxels)
    body = await read_body(request)
    if len(body) != box.voxels:
        raise BadRequest(f"the body has {len(body)} bytes but a {geometry.url()} box of uint8 "
                         f"voxels needs {box.voxels}")
    volume = np.frombuffer(body, np.uint8).reshape(box.shape)
    async with _throttle(request):
        inside = await mask_option(request, h, box)
        if inside is None:
            return mutation_response(await ops.write_box(h, box, volume))
        # as DVID: only the blocks within the ROI are written
        blocks = split_blocks_within(volume, box, layout(h.instance).block, inside)
        return mutation_response(await ops.write_blocks(h, blocks)) if blocks else Response()


async def get_isotropic(request: Request, h: DataHandle, dims: str, size: str, offset: str,
                        fmt: str | None = None) -> Response:
    return await _volume(request, h, parse_geometry(dims, size, offset), fmt, isotropic=True)


def _vector(text: str, what: str) -> tuple[float, float, float]:
    try:
        values = tuple(float(p) for p in text.split("_"))
    except ValueError:
        raise BadRequest(f"{what} must be x_y_z numbers like 10.5_20_30, not {text!r}") from None
    if len(values) != 3:
        raise BadRequest(f"{what} needs three numbers x_y_z, not {text!r}")
    return values  # type: ignore[return-value]


async def get_arb(request: Request, h: DataHandle, tl: str, tr: str, bl: str, res: str,
                  fmt: str = "png") -> Response:
    image = ImageFormat.parse(fmt)
    try:
        resolution = float(res)
    except ValueError:
        raise BadRequest(f"res must be a number (world units per pixel), not {res!r}") from None
    async with _throttle(request):
        plane = await read_arb(h, _vector(tl, "top left"), _vector(tr, "top right"),
                               _vector(bl, "bottom left"), resolution)
    return Response(encode_image(plane, image), media_type=image.media_type)


def _stream_compression(request: Request, h: DataHandle) -> str:
    wanted = request.query_params.get("compression")
    if wanted is None:
        return "jpeg" if layout(h.instance).codec.name == "jpeg" else "uncompressed"
    if wanted not in ("jpeg", "uncompressed"):
        raise BadRequest(f"compression must be jpeg or uncompressed, not {wanted!r}")
    return wanted


async def _block_stream(request: Request, h: DataHandle, coords: Sequence[Point]) -> bytes:
    """DVID's block stream: per stored block, int32 x, y, z, byte count, then the bytes."""
    compression = _stream_compression(request, h)
    lay = layout(h.instance)
    ops.check_request_size(h, len(coords) * lay.block_voxels)
    stored = await ops.read_stored(h, coords)
    found = [(c, s) for c, s in zip(coords, stored, strict=True) if s is not None]
    payloads: list[bytes | None] = [stored_jpeg(s) if compression == "jpeg" else None
                                    for _, s in found]
    missing = [s for (_, s), p in zip(found, payloads, strict=True) if p is None]
    if missing:
        decoded = iter(await ops.decode_stored(h, missing))
        quality = lay.codec.quality
        payloads = [p if p is not None else
                    (encode_jpeg(voxels, quality) if compression == "jpeg" else voxels.tobytes())
                    for p, voxels in ((p, next(decoded) if p is None else None)
                                      for p in payloads)]  # type: ignore[misc]
    return encode_block_stream((coord, payload)  # type: ignore[misc]
                               for (coord, _), payload in zip(found, payloads, strict=True))


async def get_subvolblocks(request: Request, h: DataHandle, size: str,
                           offset: str) -> Response:
    box = Box(parse_point(offset, 3, "offset"), parse_point(size, 3, "size"))  # type: ignore[arg-type]
    lay = layout(h.instance)
    box.require_aligned(lay.block)
    coords = span_coords(box, lay.block)
    async with _throttle(request):
        return Response(await _block_stream(request, h, coords), media_type=_OCTET)


async def get_specificblocks(request: Request, h: DataHandle) -> Response:
    coords = parse_block_list(request.query_params.get("blocks", ""))
    body = await _block_stream(request, h, coords)
    if request.query_params.get("prefetch", "").lower() in ("true", "on"):
        return Response(b"", media_type=_OCTET)
    return Response(body, media_type=_OCTET)


async def blocks(request: Request, h: DataHandle, coord: str, span: str) -> Response:
    """A run of ``span`` blocks along x: raw (z, y, x) arrays one after another."""
    start = parse_point(coord, 3, "block coordinate")
    if not span.isdigit() or int(span) < 1:
        raise BadRequest(f"spanX must be a positive integer, not {span!r}")
    count = int(span)
    lay = layout(h.instance)
    coords = [(start[0] + i, start[1], start[2]) for i in range(count)]
    parse_point("_".join(map(str, coords[-1])), 3, "last block coordinate")
    ops.check_request_size(h, count * lay.block_voxels)
    if request.method == "POST":
        body = await read_body(request)
        if len(body) != count * lay.block_voxels:
            raise BadRequest(f"{count} blocks of {'x'.join(map(str, lay.block))} uint8 voxels "
                             f"need {count * lay.block_voxels} bytes, the body has {len(body)}")
        arrays = np.frombuffer(body, np.uint8).reshape(count, *lay.block_shape)
        return mutation_response(await ops.write_blocks(h, list(zip(coords, arrays, strict=True))))
    voxels = await ops.decode_stored(h, await ops.read_stored(h, coords))
    out = np.full((count, *lay.block_shape), lay.background, np.uint8)
    for i, v in enumerate(voxels):
        if v is not None:
            out[i] = v
    return Response(out.data, media_type=_OCTET)


async def stored_blocks(request: Request, h: DataHandle, size: str, offset: str) -> Response:
    box = Box(parse_point(offset, 3, "offset"), parse_point(size, 3, "size"))  # type: ignore[arg-type]
    return json_response([list(c) for c in await ops.stored_coords(h, box)])


async def rawkey(request: Request, h: DataHandle) -> Response:
    try:
        coord = tuple(int(request.query_params[a]) for a in "xyz")
    except (KeyError, ValueError):
        raise BadRequest("rawkey needs integer block coordinates ?x=&y=&z=") from None
    parse_point("_".join(map(str, coord)), 3, "block coordinate")
    key = K.data_key(h.instance_id, block_tkey(coord), h.version)  # type: ignore[arg-type]
    return json_response({"Key": key.hex().upper()})


async def post_extents(request: Request, h: DataHandle) -> Response:
    body = await json_body(request, required=True)
    points = []
    for name in ("MinPoint", "MaxPoint"):
        value = body.get(name)
        if not (isinstance(value, list) and len(value) == 3 and
                all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            raise BadRequest(f'{name} must be three integers: {{"MinPoint": [0,0,0], '
                             '"MaxPoint": [511,511,511]}')
        points.append(parse_point("_".join(map(str, value)), 3, name))
    return mutation_response(await ops.set_extents(h, points[0], points[1]))


async def post_resolution(request: Request, h: DataHandle) -> Response:
    value = decode_json(await read_body(request), list,
                        "a JSON list of three voxel sizes like [8,8,8]")
    if len(value) != 3 or not all(isinstance(v, int | float) and not isinstance(v, bool)
                                  and v > 0 for v in value):
        raise BadRequest("resolution must be three positive numbers like [8,8,8]")
    await service(request).set_instance_settings(
        caller(request), h.repo, h.instance.name, {"VoxelSize": [float(v) for v in value]})
    return Response()


async def metadata(request: Request, h: DataHandle) -> Response:
    info = await service(request).instance_info(h.repo, h.instance)
    ext = info["Extended"]
    lo, hi = ext["MinPoint"], ext["MaxPoint"]
    axes = [{"Label": label, "Resolution": ext["VoxelSize"][i], "Units": ext["VoxelUnits"][i],
             "Size": 0 if lo is None else hi[i] - lo[i] + 1,
             "Offset": 0 if lo is None else lo[i]}
            for i, label in enumerate("XYZ")]
    return Response(orjson.dumps({"Axes": axes, "Properties": ext}),
                    media_type="application/vnd.dvid-nd-data+json")


async def pyramid(request: Request, h: DataHandle) -> Response:
    text = request.query_params.get("levels")
    if text is not None and (not text.isdigit() or not 1 <= int(text) <= 20):
        raise BadRequest(f"levels must be an integer from 1 to 20, not {text!r}")
    levels = None if text is None else int(text)
    report = await service(request).build_pyramid(caller(request), h, levels=levels)
    return json_response(report)


_GEOMETRY = "/{dims}/{size}/{offset}"
routes = [
    TypeRoute("/raw" + _GEOMETRY, frozenset({"GET", "POST"}), get_raw,
              "GET a 3D box (octet-stream) or 2D plane (png); POST a block-aligned 3D box"),
    TypeRoute("/raw" + _GEOMETRY + "/{fmt}", frozenset({"GET", "POST"}), get_raw_fmt,
              "GET with a format: png, jpg[:quality], or jpeg for a 3D mosaic"),
    TypeRoute("/isotropic" + _GEOMETRY, frozenset({"GET"}), get_isotropic,
              "a 2D plane stretched to square pixels"),
    TypeRoute("/isotropic" + _GEOMETRY + "/{fmt}", frozenset({"GET"}), get_isotropic,
              "isotropic with a format"),
    TypeRoute("/arb/{tl}/{tr}/{bl}/{res}", frozenset({"GET"}), get_arb,
              "an arbitrarily oriented plane from three corners (world units)"),
    TypeRoute("/arb/{tl}/{tr}/{bl}/{res}/{fmt}", frozenset({"GET"}), get_arb,
              "arb with a format"),
    TypeRoute("/subvolblocks/{size}/{offset}", frozenset({"GET"}), get_subvolblocks,
              "block stream of a block-aligned box (compression=jpeg|uncompressed)"),
    TypeRoute("/specificblocks", frozenset({"GET"}), get_specificblocks,
              "block stream of listed blocks (?blocks=x,y,z,...)"),
    TypeRoute("/blocks/{coord}/{span}", frozenset({"GET", "POST"}), blocks,
              "spanX raw blocks along x from a block coordinate"),
    TypeRoute("/stored-blocks/{size}/{offset}", frozenset({"GET"}), stored_blocks,
              "coordinates of the blocks stored in a box at this version (JSON)"),
    TypeRoute("/rawkey", frozenset({"GET"}), rawkey, "the storage key of a block (hex)"),
    TypeRoute("/extents", frozenset({"POST"}), post_extents, "set MinPoint and MaxPoint"),
    TypeRoute("/resolution", frozenset({"POST"}), post_resolution, "set the voxel size"),
    TypeRoute("/metadata", frozenset({"GET"}), metadata, "axes and value layout (JSON)"),
    TypeRoute("/pyramid", frozenset({"POST"}), pyramid,
              "build or update the lower-resolution instances name_1, name_2, ..."),
]
