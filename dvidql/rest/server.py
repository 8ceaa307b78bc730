"""/api/server/* and /api/help: what this server is and what it serves."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from dvidql.datatypes.registry import get_datatype
from dvidql.rest.common import json_response, service

__all__ = ["routes"]


def help_text(name: str) -> str:
    """DVID-style plain-text help shipped as package data (``rest/help/<name>.txt``)."""
    return (resources.files("dvidql.rest") / "help" / f"{name}.txt").read_text()


async def info(request: Request) -> Response:
    return json_response(service(request).server_info())


async def types(request: Request) -> Response:
    return json_response(service(request).types())


async def note(request: Request) -> Response:
    return PlainTextResponse(service(request).settings.note)


async def help_index(request: Request) -> Response:
    body = help_text("server")
    type_links = "".join(
        f'<li><a href="/api/help/{name}">{name}</a></li>' for name in service(request).types()
    )
    return HTMLResponse(
        "<html><head><title>dvidql API</title></head><body>"
        "<h1>dvidql: DVID-compatible HTTP API</h1>"
        '<p>GraphQL (queries, mutations, subscriptions) is at <a href="/graphql">/graphql</a>.</p>'
        f"<h2>Datatypes</h2><ul>{type_links}</ul><pre>{body}</pre></body></html>"
    )


async def help_type(request: Request) -> Response:
    name = request.path_params["typename"]
    get_datatype(name)  # 404 for unknown types
    return PlainTextResponse(help_text(name))


routes = [
    Route("/api/help", help_index, methods=["GET"]),
    Route("/api/help/{typename}", help_type, methods=["GET"]),
    Route("/api/server/info", info, methods=["GET"]),
    Route("/api/server/types", types, methods=["GET"]),
    Route("/api/server/compiled-types", types, methods=["GET"]),
    Route("/api/server/note", note, methods=["GET"]),
]
