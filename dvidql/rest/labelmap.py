"""labelmap endpoints with DVID's paths and byte layouts (packed uint64 LE voxels)."""

from __future__ import annotations

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from dvidql.codec.blockstream import decode_block_stream, encode_block_stream
from dvidql.codec.jsonbody import decode_json
from dvidql.codec.labeltransfer import (
    READ_TRANSFERS,
    WRITE_TRANSFERS,
    decode_labels,
    encode_labels,
)
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import layout
from dvidql.datatypes.imageblk import ops as volume_ops
from dvidql.datatypes.labelmap import ops
from dvidql.datatypes.voxels import (
    Box,
    Geometry,
    Point,
    parse_block_list,
    parse_geometry,
    parse_point,
    span_coords,
)
from dvidql.errors import BadRequest
from dvidql.rest.common import TypeRoute, json_response, read_body, service

__all__ = ["routes"]

_OCTET = "application/octet-stream"
_LE = np.dtype("<u8")


def _read_options(request: Request, *, stream: bool = False) -> None:
    """The query parameters labelmap reads take; those of features not built yet are
    refused rather than ignored."""
    params = request.query_params
    if params.get("scale", "0") != "0":
        raise BadRequest("only scale 0 is served so far; lower scales are not built yet")
    if params.get("supervoxels", "false").lower() not in ("true", "false"):
        raise BadRequest("supervoxels must be true or false")
    compression = params.get("compression")
    if compression and not stream and compression not in READ_TRANSFERS:
        raise BadRequest(f"compression must be one of {', '.join(READ_TRANSFERS)} (or absent "
                         f"for packed uint64 voxels), not {compression!r}")


def _geometry_3d(dims: str, size: str, offset: str) -> Geometry:
    geometry = parse_geometry(dims, size, offset)
    if not geometry.is_3d:
        raise BadRequest("labelmap serves 3D boxes (dims 0_1_2) so far, not 2D images")
    return geometry


async def raw(request: Request, h: DataHandle, dims: str, size: str, offset: str) -> Response:
    geometry = _geometry_3d(dims, size, offset)
    async with service(request).throttle(request.query_params.get("throttle") == "true"):
        if request.method == "POST":
            return await _post_raw(request, h, geometry)
        _read_options(request)
        volume = await volume_ops.read_box(h, geometry.box)
    compression = request.query_params.get("compression")
    if not compression:
        return Response(volume.astype(_LE, copy=False).data.cast("B"), media_type=_OCTET)
    # googlegzip is a gzip content encoding of compressed_segmentation, as DVID sends it
    headers = {"Content-Encoding": "gzip"} if compression == "googlegzip" else {}
    return Response(encode_labels(volume, compression), media_type=_OCTET, headers=headers)


async def _post_raw(request: Request, h: DataHandle, geometry: Geometry) -> Response:
    compression = request.query_params.get("compression")
    if compression and compression not in WRITE_TRANSFERS:
        raise BadRequest(f"a raw POST takes compression {' or '.join(WRITE_TRANSFERS)}, or "
                         f"none for packed uint64 LE, not {compression!r}")
    box = geometry.box
    box.require_aligned(layout(h.instance).block)
    volume_ops.check_request_size(h, box.voxels * 8)
    body = await read_body(request)
    if compression:
        try:
            volume = decode_labels(body, compression, box.shape)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
    elif len(body) != box.voxels * 8:
        raise BadRequest(f"the body has {len(body)} bytes but a {geometry.url()} box of uint64 "
                         f"voxels needs {box.voxels * 8}")
    else:
        volume = np.frombuffer(body, _LE).reshape(box.shape).astype(np.uint64, copy=False)
    mutation_id = await volume_ops.write_box(h, box, volume)
    return Response(headers={"X-Mutation-Id": str(mutation_id)})


_STREAM_COMPRESSIONS = ("blocks", "lz4", "gzip", "uncompressed")


def _stream_compression(request: Request, default: str) -> str:
    wanted = request.query_params.get("compression", default)
    if wanted not in _STREAM_COMPRESSIONS:
        raise BadRequest(f"compression must be one of {', '.join(_STREAM_COMPRESSIONS)}, "
                         f"not {wanted!r}")
    return wanted


async def _block_stream(request: Request, h: DataHandle, coords: list[Point],
                        default: str) -> Response:
    """The stored blocks among ``coords``, as DVID's block stream."""
    _read_options(request, stream=True)
    compression = _stream_compression(request, default)
    lay = layout(h.instance)
    volume_ops.check_request_size(h, len(coords) * lay.block_voxels * 8)
    async with service(request).throttle(request.query_params.get("throttle") == "true"):
        found = await ops.stream_payloads(h, coords, compression)
    return Response(encode_block_stream(found), media_type=_OCTET)


async def get_blocks(request: Request, h: DataHandle, size: str, offset: str) -> Response:
    box = Box(parse_point(offset, 3, "offset"), parse_point(size, 3, "size"))  # type: ignore[arg-type]
    box.require_aligned(layout(h.instance).block)
    return await _block_stream(request, h, span_coords(box, layout(h.instance).block), "lz4")


async def get_specificblocks(request: Request, h: DataHandle) -> Response:
    coords = parse_block_list(request.query_params.get("blocks", ""))
    return await _block_stream(request, h, coords, "blocks")


async def post_blocks(request: Request, h: DataHandle) -> Response:
    """DVID's ingest stream: per block its coordinates and the gzip of its compressed label
    block; every block is checked before any is written, and all land in one transaction."""
    if request.query_params.get("scale", "0") != "0":
        raise BadRequest("only scale 0 is ingested so far; lower scales are not built yet")
    try:
        records = decode_block_stream(await read_body(request))
    except ValueError as exc:
        raise BadRequest(f"malformed block stream: {exc}") from None
    if not records:
        raise BadRequest("the block stream holds no blocks")
    mutation_id = await ops.ingest_compressed(h, records)
    return Response(headers={"X-Mutation-Id": str(mutation_id)})


async def label(request: Request, h: DataHandle, point: str) -> Response:
    _read_options(request)
    found = await ops.labels_at(h, np.array([parse_point(point, 3, "point")]))
    return json_response({"Label": int(found[0])})


async def labels(request: Request, h: DataHandle) -> Response:
    """``GET`` with a JSON body of ``[[x, y, z], ...]`` (as DVID), or ``POST`` of the same."""
    _read_options(request)
    points = decode_json(await read_body(request), list, "a JSON list of [x, y, z] points")
    if not all(isinstance(p, list) and len(p) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in p) for p in points):
        raise BadRequest("request body must be a JSON list of [x, y, z] integer points")
    found = await ops.labels_at(h, np.array(points, np.int64).reshape(-1, 3))
    return json_response([int(v) for v in found])


_GEOMETRY = "/{dims}/{size}/{offset}"
routes = [
    TypeRoute("/raw" + _GEOMETRY, frozenset({"GET", "POST"}), raw,
              "GET a 3D box of packed uint64 LE labels; POST a block-aligned box of them"),
    TypeRoute("/blocks/{size}/{offset}", frozenset({"GET"}), get_blocks,
              "block stream of a block-aligned box (compression=lz4|gzip|blocks|uncompressed)"),
    TypeRoute("/blocks", frozenset({"POST"}), post_blocks,
              "ingest a block stream of gzipped compressed label blocks"),
    TypeRoute("/specificblocks", frozenset({"GET"}), get_specificblocks,
              "block stream of listed blocks (?blocks=x,y,z,...; compression as blocks)"),
    TypeRoute("/label/{point}", frozenset({"GET"}), label, "the label at x_y_z (JSON)"),
    TypeRoute("/labels", frozenset({"GET", "POST"}), labels,
              "labels at many points: a JSON body [[x,y,z],...] -> [label,...]"),
]
