"""annotation endpoints with DVID's paths and element JSON: parse, call ops, answer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dvidql.codec.annotation import parse_blocks, parse_elements, parse_labels
from dvidql.datatypes.annotation import ops, upkeep
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.voxels import Box, Point, parse_point
from dvidql.errors import BadRequest
from dvidql.rest.common import (
    TypeRoute,
    flag,
    json_response,
    mod_info,
    mutation_response,
    mutations,
    post_sync,
    read_body,
)
from dvidql.rest.roi import roi_handle

__all__ = ["routes"]

_JSON = "application/json"


def _point(text: str, what: str) -> Point:
    return parse_point(text, 3, what)  # type: ignore[return-value]


def _box(size: str, offset: str) -> Box:
    return Box(_point(offset, "offset"), _point(size, "size"))


async def post_elements(request: Request, h: DataHandle) -> Response:
    elements = parse_elements(await read_body(request))
    return mutation_response(await ops.post_elements(h, elements, mod_info(request)))


async def get_elements(request: Request, h: DataHandle, size: str, offset: str) -> Response:
    return Response(await ops.elements_in(h, _box(size, offset)), media_type=_JSON)


async def delete_element(request: Request, h: DataHandle, point: str) -> Response:
    return mutation_response(await ops.delete_element(h, _point(point, "element position"),
                                             mod_info(request)))


async def move_element(request: Request, h: DataHandle, src: str, dst: str) -> Response:
    return mutation_response(await ops.move_element(h, _point(src, "from position"),
                                           _point(dst, "to position"), mod_info(request)))


async def get_blocks(request: Request, h: DataHandle, size: str, offset: str) -> Response:
    return Response(await ops.blocks_in(h, _box(size, offset)), media_type=_JSON)


async def post_blocks(request: Request, h: DataHandle) -> Response:
    blocks = parse_blocks(await read_body(request), ops.block_size(h.instance))
    return mutation_response(await ops.post_blocks(h, blocks, mod_info(request)))


async def all_elements(request: Request, h: DataHandle) -> Response:
    return Response(await ops.all_blocks(h), media_type=_JSON)


def _relationships(request: Request) -> bool | str:
    """``relationships``: true/false (or 1/0), or ``verbose`` for partners inlined."""
    if request.query_params.get("relationships", "").lower() == "verbose":
        return "verbose"
    return flag(request, "relationships")


async def tag(request: Request, h: DataHandle, tag: str) -> Response:
    relationships = _relationships(request)
    if relationships == "verbose":
        return Response(await ops.tagged_verbose(h, tag), media_type=_JSON)
    body = await ops.tagged(h, tag, relationships=bool(relationships))
    return Response(body, media_type=_JSON)


async def sync(request: Request, h: DataHandle) -> Response:
    return await post_sync(request, h, lambda instance: ops.check_sync(h, instance))


async def body_elements(request: Request, h: DataHandle, label: str) -> Response:
    if not label.isdigit() or int(label) >= 2**64:
        raise BadRequest(f"label must be an integer from 0 to 2^64-1, not {label!r}")
    relationships = _relationships(request)
    if relationships == "verbose":
        return Response(await ops.in_body_verbose(h, int(label)), media_type=_JSON)
    body = await ops.in_body(h, int(label), relationships=bool(relationships))
    return Response(body, media_type=_JSON)


async def post_labels(request: Request, h: DataHandle) -> Response:
    labeled = parse_labels(await read_body(request))
    counts, mutation = await upkeep.post_labels(h, labeled, mod_info(request))
    return mutation_response(mutation, counts)


def _checking(request: Request) -> bool:
    return flag(request, "check")


async def reload(request: Request, h: DataHandle) -> Response:
    flag(request, "inmemory", True)  # DVID's memory strategy: validated, nothing to choose
    report, mutation = await upkeep.reload(h, check=_checking(request), mod=mod_info(request))
    return mutation_response(mutation, report)


async def in_roi(request: Request, h: DataHandle, roi: str) -> Response:
    """``roi/<name>[,<uuid>]``: the region at this version, or at the one named."""
    name, _, ref = roi.partition(",")
    region = roi_handle(request, h, name, ref or None)
    return Response(await ops.elements_in_roi(h, region), media_type=_JSON)


async def scan(request: Request, h: DataHandle) -> Response:
    return json_response(await ops.scan(h))


routes = [
    TypeRoute("/elements", frozenset({"POST"}), post_elements,
              "add or replace elements (JSON array) by position"),
    TypeRoute("/elements/{size}/{offset}", frozenset({"GET"}), get_elements,
              "elements with relationships whose position lies in the box (JSON array)"),
    TypeRoute("/element/{point}", frozenset({"DELETE"}), delete_element,
              "delete the element at x_y_z and relationships pointing at it"),
    TypeRoute("/move/{src}/{dst}", frozenset({"POST"}), move_element,
              "move the element at from_x_y_z to to_x_y_z, rewriting partners"),
    TypeRoute("/blocks/{size}/{offset}", frozenset({"GET"}), get_blocks,
              'every element of the blocks the box touches ({"x,y,z": [...]})'),
    TypeRoute("/blocks", frozenset({"POST"}), post_blocks,
              'replace whole blocks ({"x,y,z": [...]})'),
    TypeRoute("/all-elements", frozenset({"GET"}), all_elements,
              'every block of the instance ({"x,y,z": [...]})'),
    TypeRoute("/tag/{tag:path}", frozenset({"GET"}), tag,
              "elements with the tag (?relationships=true|verbose adds their relationships)"),
    TypeRoute("/label/{label}", frozenset({"GET"}), body_elements,
              "elements in a body of the synced segmentation (?relationships=true|verbose)"),
    TypeRoute("/labels", frozenset({"POST"}), post_labels,
              'add elements not yet stored from {"<label>": "[elements]", ...} (JSON counts)'),
    TypeRoute("/reload", frozenset({"POST"}), reload,
              "check (?check=true) or rebuild the tag and relationship indices (JSON report)",
              is_read=_checking),
    TypeRoute("/sync", frozenset({"POST"}), sync,
              'follow a labelmap instance: {"sync": "<name>"} (?replace=true)'),
    TypeRoute("/roi/{roi}", frozenset({"GET"}), in_roi,
              "elements (with relationships) inside a roi instance: roi/<name>[,<uuid>]"),
    TypeRoute("/scan", frozenset({"GET"}), scan,
              "counts and relationships pointing at no element (JSON)"),
    TypeRoute("/mutations", frozenset({"GET"}), mutations,
              "this version's log records (JSON), mod-elements ones included"),
]
