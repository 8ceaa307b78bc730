"""labelsz endpoints with DVID's paths and JSON: parse, call ops, answer."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from dvidql.codec.jsonbody import decode_json
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.labelsz import ops
from dvidql.errors import BadRequest
from dvidql.rest.common import TypeRoute, json_response, post_sync, read_body

__all__ = ["routes"]

PAGE = 10_000  # labels per threshold answer, as DVID


def _count(text: str, what: str, top: int = 2**63 - 1) -> int:
    if not text.isdigit() or int(text) > top:
        raise BadRequest(f"{what} must be an integer from 0 to {top}, not {text!r}")
    return int(text)


def _rows(index_type: str, found: list[tuple[int, int]]) -> Response:
    return json_response([{"Label": label, index_type: n} for label, n in found])


async def sync(request: Request, h: DataHandle) -> Response:
    return await post_sync(request, h, ops.check_sync)


async def count(request: Request, h: DataHandle, label: str, index_type: str) -> Response:
    body = _count(label, "label", 2**64 - 1)
    (found,) = await ops.counts(h, [body], index_type)
    return json_response({"Label": body, index_type: found})


async def counts(request: Request, h: DataHandle, index_type: str) -> Response:
    labels = decode_json(await read_body(request), list, "a JSON list of labels")
    if not all(type(v) is int and 0 <= v < 2**64 for v in labels):
        raise BadRequest("the body must be a JSON list of labels, integers from 0 to 2^64-1")
    return _rows(index_type, list(zip(labels, await ops.counts(h, labels, index_type),
                                      strict=True)))


async def top(request: Request, h: DataHandle, n: str, index_type: str) -> Response:
    return _rows(index_type, await ops.ranked(h, index_type, limit=_count(n, "N")))


async def threshold(request: Request, h: DataHandle, t: str, index_type: str) -> Response:
    offset = _count(request.query_params.get("offset", "0"), "offset")
    limit = _count(request.query_params.get("n", str(PAGE)), "n", PAGE)
    found = await ops.ranked(h, index_type, at_least=max(1, _count(t, "the threshold")),
                             offset=offset, limit=limit or PAGE)
    return _rows(index_type, found)


routes = [
    TypeRoute("/sync", frozenset({"POST"}), sync,
              'follow an annotation instance: {"sync": "<name>"} (?replace=true)'),
    TypeRoute("/count/{label}/{index_type}", frozenset({"GET"}), count,
              '{"Label": l, "<type>": n}: elements of a type (PreSyn, PostSyn, Gap, Note, '
              "AllSyn) in a body"),
    TypeRoute("/counts/{index_type}", frozenset({"GET", "POST"}), counts,
              "the same for a JSON list of labels (GET or POST body)",
              is_read=lambda request: True),
    TypeRoute("/top/{n}/{index_type}", frozenset({"GET"}), top,
              "the N bodies with the most elements of the type, most first"),
    TypeRoute("/threshold/{t}/{index_type}", frozenset({"GET"}), threshold,
              "bodies with at least T elements of the type, most first (?offset=&n=, pages "
              "of at most 10,000)"),
]
