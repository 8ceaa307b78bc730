"""keyvalue endpoints (DVID's paths, parameters and formats): parse, call ops, encode."""

from __future__ import annotations

import re
from collections.abc import Sequence

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dvidql.codec import keyvalues as formats
from dvidql.codec.jsonbody import decode_json
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.keyvalue import ops
from dvidql.errors import BadRequest, RangeNotSatisfiable
from dvidql.rest.common import TypeRoute, json_response, read_body

__all__ = ["routes"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_OCTET = "application/octet-stream"


def _flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "").lower() in ("true", "1", "on")


def _int_param(request: Request, name: str) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    if not text.isdigit():
        raise BadRequest(f"{name} must be a non-negative integer, not {text!r}")
    return int(text)


def _slice(value: bytes, start: int, end: int | None) -> tuple[bytes, int]:
    """value[start:end] (end inclusive, clipped), refusing ranges past the end."""
    size = len(value)
    if start >= size:
        raise RangeNotSatisfiable(f"range starts at byte {start} but the value has {size} bytes")
    last = size - 1 if end is None else min(end, size - 1)
    return value[start : last + 1], last


async def get_key(request: Request, h: DataHandle, key: str) -> Response:
    if request.method == "HEAD":
        return Response(status_code=200 if await ops.exists(h, key) else 404)
    value = await ops.get(h, key)
    header = request.headers.get("range")
    start, end = _int_param(request, "byte_start"), _int_param(request, "byte_end")
    if header is not None:
        match = _RANGE.match(header.strip())
        if not match or not (match[1] or match[2]):
            raise BadRequest(f"Range header {header!r} must be a single 'bytes=start-end' range")
        if match[1]:
            first, stop = int(match[1]), int(match[2]) if match[2] else None
        else:  # suffix: the last N bytes
            first, stop = max(len(value) - int(match[2]), 0), None
        if stop is not None and stop < first:
            raise BadRequest(f"Range header {header!r} ends before it starts")
        try:
            part, last = _slice(value, first, stop)
        except RangeNotSatisfiable:
            return Response(status_code=416, headers={"Content-Range": f"bytes */{len(value)}"})
        return Response(part, status_code=206, media_type=_OCTET,
                        headers={"Content-Range": f"bytes {first}-{last}/{len(value)}"})
    if start is not None or end is not None:
        if start is not None and end is not None and end < start:
            raise BadRequest("byte_end must not be smaller than byte_start")
        value, _ = _slice(value, start or 0, end)
    return Response(value, media_type=_OCTET)


async def post_key(request: Request, h: DataHandle, key: str) -> Response:
    mutation_id = await ops.put(h, key, await read_body(request))
    return Response(headers={"X-Mutation-Id": str(mutation_id)})


async def delete_key(request: Request, h: DataHandle, key: str) -> Response:
    mutation_id = await ops.delete(h, key)
    return Response(headers={"X-Mutation-Id": str(mutation_id)})


async def key_dispatch(request: Request, h: DataHandle, key: str) -> Response:
    if request.method == "POST":
        return await post_key(request, h, key)
    if request.method == "DELETE":
        return await delete_key(request, h, key)
    return await get_key(request, h, key)


async def list_keys(request: Request, h: DataHandle) -> Response:
    return json_response(await ops.keys(h))


async def key_range(request: Request, h: DataHandle, first: str, last: str) -> Response:
    return json_response(await ops.keys(h, first, last))


def _encode(request: Request, pairs: Sequence[tuple[str, bytes | None]]) -> Response:
    """Encode found pairs as JSON, tar or protobuf, as the query string asks."""
    as_json = _flag(request, "json")
    as_tar = _flag(request, "tar") or _flag(request, "jsontar")
    if as_json and as_tar:
        raise BadRequest("ask for json or tar output, not both")
    if as_json:
        found = [(k, v) for k, v in pairs if v is not None]
        body = formats.encode_json_object(found, check=_flag(request, "check"))
        return Response(body, media_type="application/json")
    if as_tar:
        return Response(formats.encode_tar((k, v or b"") for k, v in pairs),
                        media_type="application/tar")
    return Response(formats.encode_key_values(pairs), media_type=_OCTET)


async def key_range_values(request: Request, h: DataHandle, first: str, last: str) -> Response:
    return _encode(request, [pair async for pair in ops.items(h, first, last)])


async def key_values(request: Request, h: DataHandle) -> Response:
    """GET (body = keys) reads; POST reads too when an output flag is given, otherwise it
    ingests a protobuf KeyValues (or, as application/json, an object of JSON values)."""
    body = await read_body(request)
    if request.method == "POST" and not _batch_read(request):
        return await _ingest(request, h, body)
    json_keys = _flag(request, "json") or _flag(request, "tar") or _flag(request, "jsontar")
    wanted = formats.parse_json_keys(body) if json_keys else formats.decode_keys(body)
    values = await ops.get_many(h, [w.key for w in wanted])
    return _encode(request, [(w.key, None if v is None else w.cut(v))
                             for w, v in zip(wanted, values, strict=True)])


def _batch_read(request: Request) -> bool:
    """A POST to /keyvalues with an output flag is a read (for proxies that drop GET bodies)."""
    return any(f in request.query_params for f in ("json", "tar", "jsontar", "protobuf"))


async def _ingest(request: Request, h: DataHandle, body: bytes) -> Response:
    if request.headers.get("content-type", "").startswith("application/json"):
        parsed = decode_json(body, dict, 'a JSON object {"key": value, ...}')
        pairs = [(k, orjson.dumps(v)) for k, v in parsed.items()]
    else:
        pairs = formats.decode_key_values(body)
    mutation_id = await ops.put_many(h, pairs)
    return Response(headers={"X-Mutation-Id": str(mutation_id)})


routes = [
    TypeRoute("/key/{key:path}", frozenset({"GET", "HEAD", "POST", "DELETE"}), key_dispatch,
              "GET (Range, byte_start/byte_end), HEAD, POST, DELETE one value"),
    TypeRoute("/keys", frozenset({"GET"}), list_keys, "all keys at this version (JSON list)"),
    TypeRoute("/keyrange/{first}/{last}", frozenset({"GET"}), key_range,
              "keys in the inclusive range (JSON list)"),
    TypeRoute("/keyrangevalues/{first}/{last}", frozenset({"GET"}), key_range_values,
              "values in the inclusive range (?json=true, ?tar=true or protobuf)"),
    TypeRoute("/keyvalues", frozenset({"GET", "POST"}), key_values,
              "batch read (body: keys) or ingest (POST protobuf KeyValues)",
              is_read=_batch_read),
]
