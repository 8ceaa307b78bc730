"""/api/node/<uuid>/<instance>/...: resolve the instance once, apply the write policy once,
and hand the request to its datatype's route table.

These data requests are the hot path (a label at a point is a few tens of microseconds of
work), so they are served straight from the middleware stack by :class:`DataRequests`
rather than through the router, whose scan of every route and exception wrappers would cost
more than the work itself."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from starlette.convertors import Convertor
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from dvidql.datatypes.base import DataHandle
from dvidql.errors import BadRequest, DvidqlError, NotFound
from dvidql.rest import annotation, imageblk, keyvalue, labelmap, labelsz, roi
from dvidql.rest.common import (
    TypeRoute,
    caller,
    error_response,
    json_body,
    json_response,
    service,
)
from dvidql.rest.server import help_text
from dvidql.service import Service

__all__ = ["TYPE_ROUTES", "DataRequests"]


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
                                             "labelmap": labelmap.routes,
                                             "roi": roi.routes,
                                             "annotation": annotation.routes,
                                             "labelsz": labelsz.routes}

# a route, its path's regex and convertors, and the methods it answers (HEAD with GET)
_Compiled = tuple[TypeRoute, re.Pattern[str], dict[str, Convertor[Any]], frozenset[str]]


def _compile(table: Sequence[TypeRoute]) -> dict[str, list[_Compiled]]:
    """The routes by the first segment of their path, always a literal (``/label/{point}``
    is under ``label``), so that a request tries only the few routes it can match."""
    out: dict[str, list[_Compiled]] = {}
    for route in table:
        regex, _, convertors = compile_path(route.path)
        methods = route.methods | ({"HEAD"} if "GET" in route.methods else set())
        out.setdefault(_first_segment(route.path), []).append(
            (route, regex, convertors, frozenset(methods)))
    return out


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1]


_COMPILED = {name: _compile([*table, *COMMON_ROUTES]) for name, table in TYPE_ROUTES.items()}


async def dispatch(request: Request, svc: Service) -> Response:
    where = request.path_params
    repo, node = svc.repos.resolve(where["uuid"])
    instance = svc.repos.instance(repo, where["name"])
    path = "/" + where["rest"]
    method = request.method
    allowed: set[str] = set()
    for route, regex, convertors, methods in _COMPILED[instance.type_name].get(
            _first_segment(path), ()):
        match = regex.match(path)
        if match is None:
            continue
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


# A path below an instance: node actions (/api/node/<uuid>/commit, ...) have none.
_DATA_PATH = re.compile(r"/api/node/(?P<uuid>[^/]+)/(?P<name>[^/]+)/(?P<rest>.*)")


class DataRequests:
    """ASGI middleware serving data requests with :func:`dispatch` and answering its refusals
    (:class:`DvidqlError`) as the app's exception handler does; every other request, and
    CORS preflights, go on to the app. Handlers return whole responses (no streaming), so a
    refusal always comes before anything is sent.

    It sits outside the CORS middleware, whose wrapping of every response costs as much as a
    label read, and adds what that middleware would add to a simple response: the ``cors``
    policy's headers when the request has an Origin, and ``Vary: Origin``. It also takes in
    other processes' repo changes first, as the app does for every other request."""

    def __init__(self, app: ASGIApp, cors: CORSMiddleware) -> None:
        self.app = app
        self.cors_headers = [(k.lower().encode(), v.encode())
                             for k, v in cors.simple_headers.items()]
        if not cors.allow_all_origins or cors.allow_credentials:
            raise ValueError("data requests apply a CORS policy that allows every origin "
                             "without credentials")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _DATA_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        origin = any(name == b"origin" for name, _ in headers)
        if origin and scope["method"] == "OPTIONS" and any(
                name == b"access-control-request-method" for name, _ in headers):
            await self.app(scope, receive, send)  # a preflight: the CORS middleware's
            return
        scope["path_params"] = match.groupdict()
        request = Request(scope, receive)
        svc: Service = scope["app"].state.service
        try:
            await svc.repos.catch_up()  # as the app's _CatchUp does
            response = await dispatch(request, svc)
        except DvidqlError as exc:
            response = await error_response(request, exc)
        if origin:
            response.raw_headers.extend(self.cors_headers)
        response.raw_headers.append((b"vary", b"Origin"))
        await response(scope, receive, send)
