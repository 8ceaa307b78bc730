"""Cross-cutting HTTP policy, written once: who is calling, bounded bodies, JSON in and out,
and the route-table entry that datatypes use."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from dvidql.codec.jsonbody import decode_json
from dvidql.datatypes.base import DataHandle, ModInfo
from dvidql.errors import BadRequest, DvidqlError, PayloadTooLarge
from dvidql.service import Caller, Service
from dvidql.versions.dag import Instance

__all__ = [
    "TypeRoute",
    "caller",
    "error_response",
    "flag",
    "json_body",
    "json_response",
    "mod_info",
    "mutation_response",
    "mutations",
    "post_sync",
    "read_body",
    "service",
    "string_list",
    "text_field",
]

log = logging.getLogger("dvidql")

MUTATING = frozenset({"POST", "PUT", "DELETE", "PATCH"})
_ANONYMOUS = Caller()

Handler = Callable[..., Awaitable[Response]]


@dataclass(frozen=True)
class TypeRoute:
    """One endpoint of a datatype, relative to ``/api/node/<uuid>/<instance>``.

    ``is_read`` tells requests that do not mutate although their method usually does (DVID's
    exceptions, such as POST for clients whose proxies drop GET bodies)."""

    path: str
    methods: frozenset[str]
    handler: Handler
    summary: str
    is_read: Callable[[Request], bool] | None = None

    def mutates(self, request: Request) -> bool:
        if request.method not in MUTATING:
            return False
        return not (self.is_read is not None and self.is_read(request))


def service(request: Request) -> Service:
    svc: Service = request.app.state.service
    return svc


def caller(request: Request) -> Caller:
    """The admin token comes as ``?admintoken=`` (DVID) or an ``Authorization: Bearer``."""
    if b"admintoken" not in request.scope["query_string"] and not any(
        name == b"authorization" for name, _ in request.scope["headers"]
    ):
        return _ANONYMOUS
    token = request.query_params.get("admintoken")
    if token is None:
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            token = auth[7:].strip()
    return service(request).caller(token)


async def read_body(request: Request) -> bytes:
    """The request body, refused with 413 past the configured limit."""
    limit = service(request).settings.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {limit}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


async def json_body(request: Request, *, required: bool = False) -> dict[str, Any]:
    """A JSON object body; an empty body is ``{}`` unless ``required``."""
    raw = await read_body(request)
    if not raw.strip():
        if required:
            raise BadRequest("this request needs a JSON object body")
        return {}
    return decode_json(raw, dict, "a JSON object")


def json_response(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def mutation_response(mutation_id: int | None, body: Any = None) -> Response:
    """The answer to a write: its mutation id in DVID's header (none when nothing was
    logged), and ``body`` as JSON when the write reports something."""
    headers = {} if mutation_id is None else {"X-Mutation-Id": str(mutation_id)}
    if body is None:
        return Response(headers=headers)
    return Response(orjson.dumps(body), media_type="application/json", headers=headers)


def mod_info(request: Request) -> ModInfo:
    """Who asks for a mutation: DVID's ``u=`` and ``app=``."""
    return ModInfo(request.query_params.get("u", ""), request.query_params.get("app", ""))


def flag(request: Request, name: str, default: bool = False) -> bool:
    """A true/false (or 1/0) query option; anything else is refused."""
    value = request.query_params.get(name)
    if value is None:
        return default
    if value.lower() not in ("true", "false", "1", "0"):
        raise BadRequest(f"{name} must be true or false, not {value!r}")
    return value.lower() in ("true", "1")


async def post_sync(request: Request, h: DataHandle, check: Callable[[Instance], None]
                    ) -> Response:
    """DVID's ``POST .../sync`` of datatypes that follow one other instance: ``{"sync":
    "name[,name]"}``, added to the current one unless ``replace=true`` (``""`` with
    replace=true ends it). ``check`` refuses an instance the datatype cannot follow; the
    name is kept in the instance's ``Sync`` setting."""
    request_body = await json_body(request, required=True)
    if "sync" not in request_body:
        raise BadRequest('sync takes {"sync": "<instance name>"}')
    wanted = [n.strip() for n in text_field(request_body, "sync").split(",") if n.strip()]
    current = h.instance.settings.get("Sync", "")
    if request.query_params.get("replace") != "true" and current:
        wanted.insert(0, current)
    chosen = list(dict.fromkeys(wanted))
    if len(chosen) > 1:
        raise BadRequest(f"{h.instance.name!r} follows one instance, not "
                         f"{', '.join(chosen)} (use replace=true to change it)")
    svc = service(request)
    for name in chosen:
        check(svc.repos.instance(h.repo, name))
    await svc.set_instance_settings(caller(request), h.repo, h.instance.name,
                                    {"Sync": chosen[0] if chosen else ""})
    return Response()


async def error_response(request: Request, exc: Exception) -> Response:
    """The JSON answer to a refused request: the message, a stable code and any details;
    server-side failures are logged too."""
    assert isinstance(exc, DvidqlError)
    if exc.status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.message)
    body = {"error": exc.message, "code": exc.code, **exc.details()}
    return json_response(body, status=exc.status)


def text_field(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string")
    return value


def string_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadRequest(f"field {name!r} must be a list of strings")
    return value


async def mutations(request: Request, h: DataHandle) -> Response:
    """``GET mutations``: the instance's log records made at this version, oldest first."""
    return json_response(await h.records({h.node.uuid}))
