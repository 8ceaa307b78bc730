"""roi endpoints with DVID's paths and formats: parse, call ops, encode."""

from __future__ import annotations

import re

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from dvidql.codec.jsonbody import decode_json
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.roi import ops
from dvidql.datatypes.roi.spans import parse_points, parse_spans
from dvidql.datatypes.voxels import Box, parse_geometry
from dvidql.errors import BadRequest
from dvidql.rest.common import (
    TypeRoute,
    caller,
    json_response,
    mutation_response,
    read_body,
    service,
)

__all__ = ["mask_option", "roi_handle", "routes"]

_SPANS = "a JSON list of block spans [[z, y, x0, x1], ...]"
_POINTS = "a JSON list of voxel points [[x, y, z], ...]"
_COUNT = re.compile(r"[0-9]{1,9}")


async def _list(request: Request, shape: str) -> list[object]:
    return decode_json(await read_body(request), list, shape)


async def roi(request: Request, h: DataHandle) -> Response:
    if request.method == "POST":
        return mutation_response(await ops.add(h, parse_spans(await _list(request, _SPANS))))
    if request.method == "DELETE":
        return mutation_response(await ops.delete(h))
    return json_response((await ops.read_spans(h)).tolist())


async def mask(request: Request, h: DataHandle, dims: str, size: str, offset: str) -> Response:
    geometry = parse_geometry(dims, size, offset)
    if not geometry.is_3d:
        raise BadRequest("roi masks are 3D: use dims 0_1_2")
    volume = await ops.mask(h, geometry.box)
    return Response(volume.data, media_type="application/octet-stream")


def roi_handle(request: Request, h: DataHandle, name: str, ref: str | None = None
               ) -> DataHandle:
    """The roi instance ``name`` of ``h``'s repo, at ``h``'s version or the version ``ref``
    names, for requests that use a region (roi= options, elements in a region)."""
    svc = service(request)
    repo, node = (h.repo, h.node) if ref is None else svc.repos.resolve(ref)
    if repo.repo_id != h.repo.repo_id:
        raise BadRequest(f"version {ref!r} is in another repo than {h.instance.name!r}")
    instance = svc.repos.instance(repo, name)  # 404 when there is no such instance
    if instance.type_name != "roi":
        raise BadRequest(f"instance {name!r} is a {instance.type_name}, not a roi; this "
                         "request takes a roi instance")
    return svc.handle_at(repo, node, instance, caller(request))


async def mask_option(request: Request, h: DataHandle, box: Box) -> np.ndarray | None:
    """The ``roi=<name>`` option of voxel requests (DVID's): the mask of ``box`` (z, y, x;
    nonzero inside) by the named roi instance at the request's version, or None without it."""
    name = request.query_params.get("roi")
    if not name:
        return None
    return await ops.mask(roi_handle(request, h, name), box)


async def ptquery(request: Request, h: DataHandle) -> Response:
    points = parse_points(await _list(request, _POINTS))
    return json_response((await ops.contains(h, points)).tolist())


async def partition(request: Request, h: DataHandle) -> Response:
    text = request.query_params.get("batchsize", "8")
    if not _COUNT.fullmatch(text):
        raise BadRequest(f"batchsize must be a positive integer (blocks along a subvolume's "
                         f"side), not {text!r}")
    optimized = request.query_params.get("optimized", "").lower() in ("true", "on")
    return json_response(await ops.partition(h, int(text), optimized))


routes = [
    TypeRoute("/roi", frozenset({"GET", "POST", "DELETE"}), roi,
              "GET the block spans [[z, y, x0, x1], ...], POST spans to add, DELETE all"),
    TypeRoute("/mask/{dims}/{size}/{offset}", frozenset({"GET"}), mask,
              "uint8 volume of a 3D box: 1 inside the ROI, 0 outside"),
    TypeRoute("/ptquery", frozenset({"POST"}), ptquery,
              "which voxel points [[x, y, z], ...] are inside (JSON list of booleans)",
              is_read=lambda request: True),
    TypeRoute("/partition", frozenset({"GET"}), partition,
              "subvolumes of batchsize³ blocks covering the ROI (?batchsize=8&optimized=true)"),
]
