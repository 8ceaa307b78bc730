"""/api/node/<uuid>/<instance>/...: resolve the instance once, apply the write policy once,
and hand the request to its datatype's route table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.convertors import Convertor
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, compile_path

from dvidql.datatypes.base import DataHandle
from dvidql.errors import BadRequest, NotFound
from dvidql.rest import imageblk, keyvalue, labelmap
from dvidql.rest.common import TypeRoute, caller, json_body, json_response, service
from dvidql.rest.server import help_text

__all__ = ["TYPE_ROUTES", "routes"]

_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]


async def _info(request: Request, h: DataHandle) -> Response:
    return json_response(await service(request).instance_info(h.repo, h.instance))


async def _help(request: Request, h: DataHandle) -> Response:
    return PlainTextResponse(help_text(h.instance.type_name))


async def _tags(request: Request, h: DataHandle) -> Response:
    if request.method in ("GET", "HEAD"):
        return json_response(h.instance.tags)
    body = await json_body(request, required=True)
    if not all(isinstance(v, str) for v in body.values()):
        raise BadRequest('tags must be a JSON object of strings: {"tag1": "value", ...}')
    replace = request.query_params.get("replace") == "true"
    tags = await service(request).set_instance_tags(caller(request), h.repo, h.instance.name,
                                                    body, replace=replace)
    return json_response(tags)


COMMON_ROUTES = [
    TypeRoute("/info", frozenset({"GET"}), _info, "instance settings and extents (JSON)"),
    TypeRoute("/help", frozenset({"GET"}), _help, "the datatype's help text"),
    TypeRoute("/tags", frozenset({"GET", "POST"}), _tags, "instance tags (JSON object)"),
]

TYPE_ROUTES: dict[str, list[TypeRoute]] = {"keyvalue": keyvalue.routes,
                                             "uint8blk": imageblk.routes,
                                             "labelmap": labelmap.routes}

_Compiled = tuple[TypeRoute, re.Pattern[str], dict[str, Convertor[Any]]]


def _compile(table: Sequence[TypeRoute]) -> list[_Compiled]:
    out = []
    for route in table:
        regex, _, convertors = compile_path(route.path)
        out.append((route, regex, convertors))
    return out


_COMPILED = {name: _compile([*table, *COMMON_ROUTES]) for name, table in TYPE_ROUTES.items()}


async def dispatch(request: Request) -> Response:
    svc = service(request)
    repo, node = svc.repos.resolve(request.path_params["uuid"])
    instance = svc.repos.instance(repo, request.path_params["name"])
    path = "/" + request.path_params["rest"]
    method = request.method
    allowed: set[str] = set()
    for route, regex, convertors in _COMPILED[instance.type_name]:
        match = regex.match(path)
        if match is None:
            continue
        methods = route.methods | ({"HEAD"} if "GET" in route.methods else set())
        if method not in methods:
            allowed |= methods
            continue
        params = {k: convertors[k].convert(v) for k, v in match.groupdict().items()}
        handle = svc.handle_at(repo, node, instance, caller(request),
                               write=route.mutates(request))
        return await route.handler(request, handle, **params)
    if allowed:
        return json_response(
            {"error": f"{method} is not supported on {path} of {instance.type_name} "
                      f"instances; use {', '.join(sorted(allowed))}", "code": "HTTP_405"},
            status=405)
    raise NotFound(f"{instance.type_name} instances have no endpoint {path!r}; "
                   f"see /api/help/{instance.type_name}")


routes = [Route("/api/node/{uuid}/{name}/{rest:path}", dispatch, methods=_ALL_METHODS)]
