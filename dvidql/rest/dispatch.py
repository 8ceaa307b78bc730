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
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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

_Compiled = tuple[TypeRoute, re.Pattern[str], dict[str, Convertor[Any]]]


def _compile(table: Sequence[TypeRoute]) -> dict[str, list[_Compiled]]:
    """The routes by the first segment of their path, always a literal (``/label/{point}``
    is under ``label``), so that a request tries only the few routes it can match."""
    out: dict[str, list[_Compiled]] = {}
    for route in table:
        regex, _, convertors = compile_path(route.path)
        out.setdefault(_first_segment(route.path), []).append((route, regex, convertors))
    return out


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1]


_COMPILED = {name: _compile([*table, *COMMON_ROUTES]) for name, table in TYPE_ROUTES.items()}


async def dispatch(request: Request) -> Response:
    svc = service(request)
    repo, node = svc.repos.resolve(request.path_params["uuid"])
    instance = svc.repos.instance(repo, request.path_params["name"])
    path = "/" + request.path_params["rest"]
    method = request.method
    allowed: set[str] = set()
    for route, regex, convertors in _COMPILED[instance.type_name].get(_first_segment(path), ()):
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


# A path below an instance: node actions (/api/node/<uuid>/commit, ...) have none.
_DATA_PATH = re.compile(r"/api/node/(?P<uuid>[^/]+)/(?P<name>[^/]+)/(?P<rest>.*)")


class DataRequests:
    """ASGI middleware serving data requests with :func:`dispatch` and answering its refusals
    (:class:`DvidqlError`) as the app's exception handler does; every other request goes on
    to the app. Errors raised after a response has started propagate, as in Starlette."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = _DATA_PATH.fullmatch(scope["path"]) if scope["type"] == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        scope["path_params"] = match.groupdict()
        request = Request(scope, receive)
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await dispatch(request)
            await response(scope, receive, sender)
        except DvidqlError as exc:
            if started:
                raise
            await (await error_response(request, exc))(scope, receive, send)
