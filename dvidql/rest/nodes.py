"""/api/node/<uuid>/<action>: notes, logs, status, commit, newversion, branch, tag.

These words are reserved, so no data instance can shadow them."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dvidql.errors import BadRequest
from dvidql.rest.common import caller, json_body, json_response, service, string_list, text_field
from dvidql.service import Caller, Service
from dvidql.versions.dag import Node, Repo

__all__ = ["routes"]


def _target(request: Request) -> tuple[Service, Repo, Node]:
    svc = service(request)
    repo, node = svc.repos.resolve(request.path_params["uuid"])
    return svc, repo, node


async def _write_target(request: Request) -> tuple[Service, Repo, Node, dict[str, Any], Caller]:
    svc, repo, node = _target(request)
    body = await json_body(request)
    return svc, repo, node, body, caller(request)


def _optional_uuid(body: dict[str, Any]) -> str | None:
    value = body.get("uuid")
    if value is not None and not isinstance(value, str):
        raise BadRequest("field 'uuid' must be a 32-hex-character string")
    return value or None


async def note(request: Request) -> Response:
    if request.method == "GET":
        _, _, node = _target(request)
        return json_response({"note": node.note})
    svc, repo, node, body, who = await _write_target(request)
    if "note" not in body:
        raise BadRequest('POST note needs {"note": "..."}')
    await svc.set_note(who, repo, node, text_field(body, "note"))
    return json_response({"note": text_field(body, "note")})


async def log(request: Request) -> Response:
    if request.method == "GET":
        _, _, node = _target(request)
        return json_response({"log": node.log})
    svc, repo, node, body, who = await _write_target(request)
    messages = string_list(body, "log")
    if not messages:
        raise BadRequest('POST log needs {"log": ["message", ...]}')
    await svc.append_node_log(who, repo, node, messages)
    return json_response({"log": svc.repos.repos[repo.repo_id].nodes[node.version_id].log})


async def status(request: Request) -> Response:
    _, _, node = _target(request)
    return json_response({"Locked": node.locked})


async def commit(request: Request) -> Response:
    if request.method == "GET":
        return await status(request)
    svc, repo, node, body, who = await _write_target(request)
    note_text = text_field(body, "note") if "note" in body else None
    await svc.commit(who, repo, node, note=note_text, log=string_list(body, "log"))
    return json_response({"committed": node.uuid})


async def newversion(request: Request) -> Response:
    svc, repo, node, body, who = await _write_target(request)
    child = await svc.new_version(who, repo, node, note=text_field(body, "note"),
                                  uuid=_optional_uuid(body))
    return json_response({"child": child.uuid})


async def branch(request: Request) -> Response:
    svc, repo, node, body, who = await _write_target(request)
    child = await svc.branch(who, repo, node, text_field(body, "branch"),
                             note=text_field(body, "note"), uuid=_optional_uuid(body))
    return json_response({"child": child.uuid})


async def tag(request: Request) -> Response:
    svc, repo, node, body, who = await _write_target(request)
    child = await svc.tag(who, repo, node, text_field(body, "tag"),
                          note=text_field(body, "note"))
    return json_response({"child": child.uuid})


routes = [
    Route("/api/node/{uuid}/note", note, methods=["GET", "POST"]),
    Route("/api/node/{uuid}/log", log, methods=["GET", "POST"]),
    Route("/api/node/{uuid}/status", status, methods=["GET"]),
    Route("/api/node/{uuid}/commit", commit, methods=["GET", "POST"]),
    Route("/api/node/{uuid}/newversion", newversion, methods=["POST"]),
    Route("/api/node/{uuid}/branch", branch, methods=["POST"]),
    Route("/api/node/{uuid}/tag", tag, methods=["POST"]),
]
