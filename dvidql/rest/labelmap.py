"""labelmap endpoints with DVID's paths and byte layouts (packed uint64 LE voxels)."""

from __future__ import annotations

import hashlib

import lz4.block
import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from dvidql.codec.blockstream import decode_block_stream, encode_block_stream
from dvidql.codec.jsonbody import decode_json
from dvidql.codec.labelindex import (
    LabelIndex,
    decode_label_index,
    decode_label_indices,
    decode_mapping_ops,
    encode_label_index,
    encode_label_indices,
)
from dvidql.codec.labeltransfer import (
    READ_TRANSFERS,
    WRITE_TRANSFERS,
    decode_labels,
    encode_labels,
)
from dvidql.codec.serialization import gzip_bytes
from dvidql.codec.sparsevol import decode_rles, encode_blocks, encode_rles, encode_srles
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import layout
from dvidql.datatypes.imageblk import ops as volume_ops
from dvidql.datatypes.labelmap import bodies, edits, history, model, ops
from dvidql.datatypes.labelmap import split as split_ops
from dvidql.datatypes.labelmap.model import MAX_LABEL
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
from dvidql.errors import BadRequest, NotFound
from dvidql.rest.common import (
    TypeRoute,
    caller,
    flag,
    json_response,
    mod_info,
    mutations,
    read_body,
    service,
)
from dvidql.rest.roi import mask_option
from dvidql.versions.dag import Node

__all__ = ["routes"]

_OCTET = "application/octet-stream"
_LE = np.dtype("<u8")


def _scale(request: Request, h: DataHandle) -> DataHandle:
    """The handle at the request's ``scale`` (0 to the instance's MaxDownresLevel)."""
    text = request.query_params.get("scale", "0")
    top = h.instance.settings["MaxDownresLevel"]
    if not text.isdigit() or int(text) > top:
        raise BadRequest(f"scale must be an integer from 0 to this instance's MaxDownresLevel "
                         f"{top}, not {text!r}")
    return h.at_scale(int(text))


def _read_options(request: Request, h: DataHandle, *, stream: bool = False
                  ) -> tuple[DataHandle, bool]:
    """The handle at the requested scale, and whether supervoxels were asked for."""
    if not request.scope["query_string"]:  # the usual case: spare parsing nothing
        return h, False
    compression = request.query_params.get("compression")
    if compression and not stream and compression not in READ_TRANSFERS:
        raise BadRequest(f"compression must be one of {', '.join(READ_TRANSFERS)} (or absent "
                         f"for packed uint64 voxels), not {compression!r}")
    return _scale(request, h), flag(request, "supervoxels")


def _label(text: str, what: str = "label") -> int:
    if not text.isdigit() or int(text) > MAX_LABEL:
        raise BadRequest(f"{what} must be an integer from 0 to 2^64-1, not {text!r}")
    return int(text)


def _label_list(raw: bytes, shape: str, *, pairs: bool = False) -> list[int]:
    values = decode_json(raw, list, shape)
    if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_LABEL
               for v in values):
        raise BadRequest(f"request body must be {shape}, each an integer from 0 to 2^64-1")
    if pairs and len(values) % 2:
        raise BadRequest(f"request body must be {shape}: an even number of labels")
    return values


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
        h, supervoxels = _read_options(request, h)
        volume = await ops.read_labels(h, geometry.box, supervoxels=supervoxels)
        inside = await mask_option(request, h, geometry.box)
    if inside is not None:  # 0 outside the ROI
        volume = np.where(inside.astype(bool), volume, np.uint64(0))
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
    inside = await mask_option(request, h, box)
    if inside is None:
        mutation_id = await ops.write_label_box(h, box, volume, mod_info(request))
    else:  # as DVID: only the blocks within the ROI are written
        blocks = split_blocks_within(volume, box, layout(h.instance).block, inside)
        if not blocks:
            return Response()
        mutation_id = await ops.write_label_blocks(h, blocks, mod_info(request))
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
    h, supervoxels = _read_options(request, h, stream=True)
    compression = _stream_compression(request, default)
    lay = layout(h.instance)
    volume_ops.check_request_size(h, len(coords) * lay.block_voxels * 8)
    async with service(request).throttle(request.query_params.get("throttle") == "true"):
        found = await ops.stream_payloads(h, coords, compression, supervoxels=supervoxels)
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
    block; every block is checked before any is written, and all land in one transaction.
    At scale 0 indices are kept unless ``noindexing=true`` and lower scales computed unless
    ``downres=false``; a lower scale's blocks are stored as given."""
    return await _ingest_stream(request, h, index=not flag(request, "noindexing"),
                                downres=flag(request, "downres", default=True))


async def post_downres(request: Request, h: DataHandle) -> Response:
    """Recompute the lower scales where scale-0 blocks changed since they were last computed
    (a dvidql addition): what ``downres=false`` posts left, or an interrupted ingest."""
    async with service(request).throttle(request.query_params.get("throttle") == "true"):
        written = await ops.update_scales(h)
    return json_response({"BlocksWritten": written})


async def ingest_supervoxels(request: Request, h: DataHandle) -> Response:
    """DVID's fastest ingest: blocks stored as given at ``scale``, without indices or lower
    scales (the caller posts those: ``indices``, ``maxlabel``, other scales)."""
    return await _ingest_stream(request, h, index=False, downres=False)


async def _ingest_stream(request: Request, h: DataHandle, *, index: bool,
                         downres: bool) -> Response:
    h = _scale(request, h)
    if h.scale and flag(request, "downres"):
        raise BadRequest("downres=true computes lower scales from scale 0; post scale 0")
    try:
        records = decode_block_stream(await read_body(request))
    except ValueError as exc:
        raise BadRequest(f"malformed block stream: {exc}") from None
    if not records:
        raise BadRequest("the block stream holds no blocks")
    index = index and not h.scale
    mutation_id = await ops.ingest_compressed(h, records, mod_info(request), index=index,
                                              downres=downres and not h.scale)
    return Response(headers={"X-Mutation-Id": str(mutation_id)})


async def _hashed_body(request: Request) -> bytes:
    """The request body, checked against ``hash`` (the MD5 hex of the body) when the client
    sends one, as DVID does for the JSON bodies of its GET requests, which proxies may drop."""
    body = await read_body(request)
    wanted = request.query_params.get("hash")
    if wanted is not None:
        found = hashlib.md5(body, usedforsecurity=False).hexdigest()
        if found != wanted.strip().lower():
            raise BadRequest(f"the body's MD5 is {found}, not hash={wanted}: the body was "
                             "changed or lost on its way; send it again")
    return body


async def label(request: Request, h: DataHandle, point: str) -> Response:
    h, supervoxels = _read_options(request, h)
    found = await ops.label_at(h, parse_point(point, 3, "point"), supervoxels=supervoxels)
    return json_response({"Label": found})


async def labels(request: Request, h: DataHandle) -> Response:
    """``GET`` with a JSON body of ``[[x, y, z], ...]`` (as DVID), or ``POST`` of the same."""
    h, supervoxels = _read_options(request, h)
    points = decode_json(await _hashed_body(request), list, "a JSON list of [x, y, z] points")
    if not all(isinstance(p, list) and len(p) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in p) for p in points):
        raise BadRequest("request body must be a JSON list of [x, y, z] integer points")
    found = await ops.labels_at(h, np.array(points, np.int64).reshape(-1, 3),
                                supervoxels=supervoxels)
    return json_response(found.tolist())


# ----- bodies: indices, sizes, supervoxels, sparse volumes ---------------------------------

async def _with_lastmod(h: DataHandle, indices: list[LabelIndex]) -> list[LabelIndex]:
    """Indices with their bodies' last modification filled in, as DVID's protobuf holds it."""
    for index, mod in zip(indices, await model.read_lastmod(h, [i.label for i in indices]),
                          strict=True):
        if mod is not None:
            index.last_mutid, index.last_mod_time = mod["mutation id"], mod["last mod time"]
            index.last_mod_user, index.last_mod_app = mod["last mod user"], mod["last mod app"]
    return indices


async def index(request: Request, h: DataHandle, label: str) -> Response:
    body = _label(label)
    if request.method == "POST":
        return await _store_indices(request, h, [_decode_index(await read_body(request), body)])
    if "mutid" in request.query_params:
        raise BadRequest("index as of an earlier mutation (mutid=) is not kept by this server")
    (found,) = await _with_lastmod(h, [await bodies.index_of(h, body)])
    if flag(request, "metadata-only"):
        return json_response({"num_voxels": found.num_voxels, "last_mutid": found.last_mutid,
                              "last_mod_time": found.last_mod_time,
                              "last_mod_user": found.last_mod_user,
                              "last_mod_app": found.last_mod_app})
    return Response(encode_label_index(found), media_type=_OCTET)


def _decode_index(raw: bytes, label: int) -> LabelIndex:
    try:
        found = decode_label_index(raw)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if found.label not in (0, label):
        raise BadRequest(f"the posted index is of label {found.label}, not {label}")
    found.label = label
    return found


async def _store_indices(request: Request, h: DataHandle, indices: list[LabelIndex]) -> Response:
    mutation_id = await edits.store_indices(h, indices, mod_info(request))
    return Response(headers={"X-Mutation-Id": str(mutation_id)})


_MAX_INDICES = 50_000


async def indices(request: Request, h: DataHandle) -> Response:
    """GET with a JSON body of labels: their indices as LabelIndices; POST LabelIndices to
    store them."""
    raw = await read_body(request)
    if request.method == "POST":
        try:
            posted = decode_label_indices(raw)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        if any(i.label == 0 for i in posted):
            raise BadRequest("every posted index needs its label (0 is background)")
        return await _store_indices(request, h, posted)
    labels = _label_list(raw, "a JSON list of labels")
    if len(labels) > _MAX_INDICES:
        raise BadRequest(f"ask for at most {_MAX_INDICES} indices at a time, not {len(labels)}")
    found = [i for i in await bodies.indices_of(h, labels) if i is not None]
    return Response(encode_label_indices(await _with_lastmod(h, found)), media_type=_OCTET)


async def size(request: Request, h: DataHandle, label: str) -> Response:
    found = await bodies.index_of(h, _label(label), supervoxels=flag(request, "supervoxels"))
    return json_response({"voxels": found.num_voxels})


async def sizes(request: Request, h: DataHandle) -> Response:
    labels = _label_list(await _hashed_body(request), "a JSON list of labels")
    return json_response(await bodies.label_sizes(h, labels,
                                                  supervoxels=flag(request, "supervoxels")))


async def supervoxels(request: Request, h: DataHandle, label: str) -> Response:
    return json_response((await bodies.index_of(h, _label(label))).supervoxels().tolist())


async def supervoxel_sizes(request: Request, h: DataHandle, label: str) -> Response:
    ids, counts = (await bodies.index_of(h, _label(label))).supervoxel_sizes()
    return json_response({"supervoxels": ids.tolist(), "sizes": counts.tolist()})


async def sparsevol_size(request: Request, h: DataHandle, label: str) -> Response:
    found = await bodies.index_of(h, _label(label), supervoxels=flag(request, "supervoxels"))
    lo, hi = bodies.block_extent(found, layout(h.instance).block)
    return json_response({"voxels": found.num_voxels, "numblocks": len(np.unique(found.blocks)),
                          "minvoxel": lo, "maxvoxel": hi})


def _bounds(request: Request) -> bodies.Bounds:
    params = request.query_params

    def bound(name: str) -> int | None:
        text = params.get(name)
        if text is None:
            return None
        try:
            return int(text)
        except ValueError:
            raise BadRequest(f"{name} must be an integer voxel coordinate, not {text!r}") from None

    return bodies.Bounds((bound("minx"), bound("miny"), bound("minz")),
                         (bound("maxx"), bound("maxy"), bound("maxz")))


async def sparsevol(request: Request, h: DataHandle, label: str) -> Response:
    return await _sparsevol(request, h, _label(label))


async def sparsevol_by_point(request: Request, h: DataHandle, point: str) -> Response:
    supervoxels = flag(request, "supervoxels")
    found = await ops.label_at(h, parse_point(point, 3, "point"), supervoxels=supervoxels)
    if not found:
        raise NotFound(f"no label at point {point}")
    return await _sparsevol(request, h, found)


_SPARSE_FORMATS = ("rles", "srles", "blocks")


async def _sparsevol(request: Request, h: DataHandle, label: int) -> Response:
    scaled, supervoxels = _read_options(request, h, stream=True)
    fmt = request.query_params.get("format", "rles")
    if fmt not in _SPARSE_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(_SPARSE_FORMATS)}, not {fmt!r}")
    compression = request.query_params.get("compression")
    if compression and (fmt != "rles" or compression not in ("lz4", "gzip")):
        raise BadRequest("compression (lz4 or gzip) applies to format=rles only")
    found = await bodies.index_of(h, label, supervoxels=supervoxels)
    bounds = _bounds(request)
    lay = layout(h.instance)
    if request.method == "HEAD":
        present = bounds.block_mask(found.block_coords(), lay.block).any()
        return Response(status_code=200 if present else 204)
    if fmt == "blocks":
        masks = [m async for m in bodies.sparse_masks(scaled, found, bounds)]
        return Response(encode_blocks(label, masks, lay.block_shape), media_type=_OCTET)
    runs = [r async for r in bodies.sparse_runs(scaled, found, bounds)]
    every = np.concatenate(runs) if runs else np.zeros((0, 4), np.int32)
    if not len(every):
        raise NotFound(f"label {label} has no voxels within the bounds")
    if fmt == "srles":
        return Response(encode_srles(every), media_type=_OCTET)
    payload = encode_rles(every)
    if compression == "lz4":
        payload = lz4.block.compress(payload, store_size=False)
    elif compression == "gzip":
        payload = gzip_bytes(payload)
    return Response(payload, media_type=_OCTET)


async def sparsevol_coarse(request: Request, h: DataHandle, label: str) -> Response:
    supervoxels = flag(request, "supervoxels")
    found = await bodies.index_of(h, _label(label), supervoxels=supervoxels)
    runs = bodies.coarse_runs(found, _bounds(request), layout(h.instance).block)
    if not len(runs):
        raise NotFound(f"label {label} has no blocks within the bounds")
    return Response(encode_rles(runs), media_type=_OCTET)


_MAX_LIST = 10_000_000


async def listlabels(request: Request, h: DataHandle) -> Response:
    """uint64 LE labels in numeric order (label, size pairs with ``sizes=true``)."""
    params = request.query_params
    start = _label(params.get("start", "0"), "start")
    number = _label(params.get("number", str(_MAX_LIST)), "number")
    if number > _MAX_LIST:
        raise BadRequest(f"number must be at most {_MAX_LIST}")
    with_sizes = flag(request, "sizes")
    found = [(label, 0 if i is None else i.num_voxels) async for label, i in
             bodies.labels_in_order(h, start, number, with_index=with_sizes)]
    columns = np.array(found, np.uint64).reshape(-1, 2)
    out = columns if with_sizes else columns[:, 0]
    return Response(out.astype(_LE).tobytes(), media_type=_OCTET)


async def existing_labels(request: Request, h: DataHandle) -> Response:
    return json_response([label async for label, _ in bodies.labels_in_order(h)])


async def lastmod(request: Request, h: DataHandle, label: str) -> Response:
    body = _label(label)
    await bodies.index_of(h, body)
    (found,) = await model.read_lastmod(h, [body])
    if found is None:
        raise NotFound(f"body {body} has no recorded modification")
    return json_response(found)


# ----- the mapping and labels --------------------------------------------------------------

async def mapping(request: Request, h: DataHandle) -> Response:
    labels = _label_list(await _hashed_body(request), "a JSON list of supervoxel ids")
    return json_response((await model.bodies_of(h, np.asarray(labels, np.uint64))).tolist())


async def mappings(request: Request, h: DataHandle) -> Response:
    """GET: every supervoxel not mapped to itself, as text lines ``sv body`` or binary LE
    pairs; POST: DVID's MappingOps protobuf, to load an agglomeration."""
    if request.method == "POST":
        try:
            posted = decode_mapping_ops(await read_body(request))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        mutation_id = await edits.store_mappings(h, posted, mod_info(request))
        return Response(headers={"X-Mutation-Id": str(mutation_id)})
    pairs = await model.all_mappings(h)
    if request.query_params.get("format") == "binary":
        return Response(pairs.astype(_LE).tobytes(), media_type=_OCTET)
    return Response("".join(f"{sv} {body}\n" for sv, body in pairs.tolist()),
                    media_type="text/plain")


async def maxlabel(request: Request, h: DataHandle, value: str | None = None) -> Response:
    if request.method == "GET":
        return json_response({"maxlabel": await model.max_label(h)})
    service(request).require_privilege(caller(request), "POST maxlabel")
    label = _label(value or "", "max label")
    if not 0 < label <= _SETTABLE_MAX:
        raise BadRequest(f"max label must be from 1 to 2^48, not {label}")
    mutation_id = await edits.raise_max_label(h, label, mod_info(request))
    return Response(headers={"X-Mutation-Id": str(mutation_id)})


_SETTABLE_MAX = 2**48


async def nextlabel(request: Request, h: DataHandle, count: str | None = None) -> Response:
    if request.method == "GET":
        return json_response({"nextlabel": await model.next_label(h)})
    wanted = _label(count or "", "count")
    if not 0 < wanted <= _SETTABLE_MAX:
        raise BadRequest(f"count must be from 1 to 2^48, not {wanted}")
    start, _ = await edits.reserve_labels(h, wanted, mod_info(request))
    return json_response({"start": start, "end": start + wanted - 1})


# ----- edits ---------------------------------------------------------------------------------

async def merge(request: Request, h: DataHandle) -> Response:
    labels = _label_list(await read_body(request), "a JSON list [target, merged1, ...]")
    mutation_id = await edits.merge(h, labels, mod_info(request))
    return json_response({"MutationID": mutation_id})


async def cleave(request: Request, h: DataHandle, label: str) -> Response:
    svs = _label_list(await read_body(request), "a JSON list of supervoxels to cleave")
    new, mutation_id = await edits.cleave(h, _label(label), svs, mod_info(request))
    return json_response({"CleavedLabel": new, "MutationID": mutation_id})


async def renumber(request: Request, h: DataHandle) -> Response:
    labels = _label_list(await read_body(request), "a JSON list [new1, old1, new2, old2, ...]",
                         pairs=True)
    pairs = list(zip(labels[::2], labels[1::2], strict=True))
    mutation_id = await edits.renumber(h, pairs, mod_info(request))
    return json_response({"MutationID": mutation_id})


def _split_runs(h: DataHandle, body: bytes) -> np.ndarray:
    split_ops.require_splits(h)
    try:
        return decode_rles(body)
    except ValueError as exc:
        raise BadRequest(f"the split must be a sparse volume in DVID's rles format: {exc}"
                         ) from None


async def split(request: Request, h: DataHandle, label: str) -> Response:
    runs = _split_runs(h, await read_body(request))
    new, mutation_id = await split_ops.split_body(
        h, _label(label), runs, mod_info(request), downres=flag(request, "downres", default=True))
    return json_response({"label": new, "MutationID": mutation_id})


async def split_supervoxel(request: Request, h: DataHandle, label: str) -> Response:
    runs = _split_runs(h, await read_body(request))
    params = request.query_params
    split_id, remain_id, mutation_id = await split_ops.split_supervoxel(
        h, _label(label), runs, mod_info(request),
        split_id=_label(params.get("split", "0"), "split"),
        remain_id=_label(params.get("remain", "0"), "remain"),
        downres=flag(request, "downres", default=True))
    return json_response({"SplitSupervoxel": split_id, "RemainSupervoxel": remain_id,
                          "MutationID": mutation_id})


def _node(request: Request, h: DataHandle, ref: str) -> Node:
    repo, node = service(request).repos.resolve(ref)
    if repo.repo_id != h.repo.repo_id:
        raise BadRequest(f"version {ref} belongs to another repo")
    return node


async def mutations_range(request: Request, h: DataHandle, first: str, last: str) -> Response:
    """This instance's records from version ``first`` down to ``last``."""
    return json_response(await history.records_between(h, _node(request, h, first),
                                                       _node(request, h, last)))


async def label_history(request: Request, h: DataHandle, label: str, first: str,
                        last: str) -> Response:
    """Records from ``first`` to ``last`` naming the body (at ``last``) or any of its
    supervoxels; a JSON array (DVID concatenates objects)."""
    body = _label(label)
    at_last = h if _node(request, h, last).uuid == h.node.uuid else service(request).handle(
        last, h.instance.name, caller(request))
    (index,) = await bodies.indices_of(at_last, [body])
    labels = {body, *(index.supervoxels().tolist() if index is not None else [])}
    records = await history.records_between(h, _node(request, h, first),
                                            _node(request, h, last))
    return json_response(history.touching(records, labels))


async def set_nextlabel(request: Request, h: DataHandle, label: str) -> Response:
    """Admin only: the next allocation is ``label + 1`` (0 resets), ``ceiling=`` bounds it."""
    service(request).require_privilege(caller(request), "set-nextlabel")
    ceiling = request.query_params.get("ceiling")
    mutation_id = await edits.set_next_label(
        h, _label(label), None if ceiling is None else _label(ceiling, "ceiling"),
        mod_info(request))
    return Response(headers={"X-Mutation-Id": str(mutation_id)})


async def supervoxel_splits(request: Request, h: DataHandle) -> Response:
    return json_response(await history.supervoxel_splits(h))


def _reads(request: Request) -> bool:
    return True


_GEOMETRY = "/{dims}/{size}/{offset}"
routes = [
    TypeRoute("/raw" + _GEOMETRY, frozenset({"GET", "POST"}), raw,
              "GET a 3D box of packed uint64 LE labels; POST a block-aligned box of them"),
    TypeRoute("/blocks/{size}/{offset}", frozenset({"GET"}), get_blocks,
              "block stream of a block-aligned box (compression=lz4|gzip|blocks|uncompressed)"),
    TypeRoute("/blocks", frozenset({"POST"}), post_blocks,
              "ingest a block stream of gzipped compressed label blocks"),
    TypeRoute("/downres", frozenset({"POST"}), post_downres,
              "recompute the lower scales where scale-0 blocks changed since last computed"),
    TypeRoute("/ingest-supervoxels", frozenset({"POST"}), ingest_supervoxels,
              "store a block stream as given at ?scale= (no indices, no lower scales)"),
    TypeRoute("/specificblocks", frozenset({"GET"}), get_specificblocks,
              "block stream of listed blocks (?blocks=x,y,z,...; compression as blocks)"),
    TypeRoute("/label/{point}", frozenset({"GET"}), label, "the label at x_y_z (JSON)"),
    TypeRoute("/labels", frozenset({"GET", "POST"}), labels,
              "labels at many points: a JSON body [[x,y,z],...] -> [label,...]",
              is_read=_reads),
    TypeRoute("/index/{label}", frozenset({"GET", "POST"}), index,
              "a body's label index (protobuf; metadata-only=true for JSON); POST stores one"),
    TypeRoute("/indices", frozenset({"GET", "POST"}), indices,
              "indices of a JSON body of labels (LabelIndices); POST LabelIndices to store"),
    TypeRoute("/size/{label}", frozenset({"GET"}), size, "voxel count (supervoxels=true)"),
    TypeRoute("/sizes", frozenset({"GET", "POST"}), sizes,
              "voxel counts of a JSON body of labels", is_read=_reads),
    TypeRoute("/supervoxels/{label}", frozenset({"GET"}), supervoxels,
              "the supervoxels of a body"),
    TypeRoute("/supervoxel-sizes/{label}", frozenset({"GET"}), supervoxel_sizes,
              "a body's supervoxels and their voxel counts"),
    TypeRoute("/sparsevol-size/{label}", frozenset({"GET"}), sparsevol_size,
              "voxels, blocks and block-accurate bounds of a label"),
    TypeRoute("/sparsevol/{label}", frozenset({"GET"}), sparsevol,
              "a label's voxels as runs (format=rles|srles|blocks; bounds; HEAD: any?)"),
    TypeRoute("/sparsevol-by-point/{point}", frozenset({"GET"}), sparsevol_by_point,
              "the sparse volume of the label at x_y_z"),
    TypeRoute("/sparsevol-coarse/{label}", frozenset({"GET"}), sparsevol_coarse,
              "a label's blocks as runs of block coordinates"),
    TypeRoute("/listlabels", frozenset({"GET"}), listlabels,
              "uint64 labels in order (start=, number=, sizes=true)"),
    TypeRoute("/existing-labels", frozenset({"GET"}), existing_labels,
              "JSON list of every body with voxels"),
    TypeRoute("/lastmod/{label}", frozenset({"GET"}), lastmod,
              "the mutation id, user, time and app of a body's last change"),
    TypeRoute("/mapping", frozenset({"GET", "POST"}), mapping,
              "bodies of a JSON body of supervoxels", is_read=_reads),
    TypeRoute("/mappings", frozenset({"GET", "POST"}), mappings,
              "every supervoxel not mapped to itself (format=binary for uint64 pairs); "
              "POST MappingOps protobuf"),
    TypeRoute("/set-nextlabel/{label}", frozenset({"POST"}), set_nextlabel,
              "admin: allocate from label+1 on (ceiling=)"),
    TypeRoute("/maxlabel", frozenset({"GET"}), maxlabel, "the largest label at this version"),
    TypeRoute("/maxlabel/{value}", frozenset({"POST"}), maxlabel, "raise the max label"),
    TypeRoute("/nextlabel", frozenset({"GET"}), nextlabel, "the next label to be allocated"),
    TypeRoute("/nextlabel/{count}", frozenset({"POST"}), nextlabel,
              "reserve count new labels: {start, end}"),
    TypeRoute("/merge", frozenset({"POST"}), merge, "merge bodies: [target, merged1, ...]"),
    TypeRoute("/cleave/{label}", frozenset({"POST"}), cleave,
              "move supervoxels [sv1, ...] of a body into a new body"),
    TypeRoute("/renumber", frozenset({"POST"}), renumber,
              "give bodies new ids: [new1, old1, new2, old2, ...]"),
    TypeRoute("/split/{label}", frozenset({"POST"}), split,
              "split the voxels of an rles sparse volume off a body into a new body"),
    TypeRoute("/split-supervoxel/{label}", frozenset({"POST"}), split_supervoxel,
              "split the voxels of an rles sparse volume off a supervoxel (split=, remain=)"),
    TypeRoute("/supervoxel-splits", frozenset({"GET"}), supervoxel_splits,
              "every supervoxel split this version sees, by version, nearest first"),
    TypeRoute("/mutations", frozenset({"GET"}), mutations,
              "this instance's mutation records at this version"),
    TypeRoute("/mutations-range/{first}/{last}", frozenset({"GET"}), mutations_range,
              "records from version first down to version last"),
    TypeRoute("/history/{label}/{first}/{last}", frozenset({"GET"}), label_history,
              "records from first to last naming the body or its supervoxels"),
]
