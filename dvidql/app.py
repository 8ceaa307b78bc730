"""Builds the Starlette application: DVID-compatible REST under /api, GraphQL at /graphql."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from dvidql.config import Settings
from dvidql.errors import DvidqlError
from dvidql.rest import rest_routes
from dvidql.rest.common import error_response
from dvidql.rest.dispatch import DataRequests
from dvidql.schema import graphql_routes
from dvidql.service import Service

__all__ = ["build_app"]

log = logging.getLogger("dvidql")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path} (see /api/help)"
    elif exc.status_code == 405:
        message = f"{request.method} is not supported on {request.url.path} (see /api/help)"
    return JSONResponse({"error": message, "code": f"HTTP_{exc.status_code}"},
                        status_code=exc.status_code, headers=exc.headers)


class _CatchUp:
    """Before each request, take in repo changes other processes made in a shared store, so
    a version created through one server is usable through the next request to another."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            try:
                await scope["app"].state.service.repos.catch_up()
            except DvidqlError as exc:
                if scope["type"] == "http":
                    await (await error_response(Request(scope), exc))(scope, receive, send)
                else:  # 1013: try again later
                    await send({"type": "websocket.close", "code": 1013, "reason": exc.message})
                return
        await self.app(scope, receive, send)


_CORS: dict[str, Any] = {"allow_origins": ["*"], "allow_methods": ["*"],
                         "allow_headers": ["Authorization", "Content-Type", "Range"],
                         "expose_headers": ["Content-Range", "Content-Length"]}


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The app of the CORS policy that data requests consult for their headers only."""
    raise RuntimeError("not an app")


async def _home(request: Request) -> Response:
    return RedirectResponse("/graphql")


def build_app(settings: Settings, service: Service | None = None) -> Starlette:
    """The app for ``settings``; the store opens at start-up unless a service is given."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = service is None
        app.state.service = await Service.open(settings) if owned else service
        log.info("serving the %s in %s mode", settings.describe_store(), settings.mode.value)
        try:
            yield
        finally:
            if owned:
                await app.state.service.close()

    return Starlette(
        routes=[*rest_routes(), *graphql_routes(), Route("/", _home)],
        middleware=[  # data requests are answered first: they catch up and apply CORS too
            Middleware(DataRequests, cors=CORSMiddleware(_no_app, **_CORS)),
            Middleware(CORSMiddleware, **_CORS),
            Middleware(_CatchUp),
        ],
        exception_handlers={DvidqlError: error_response, HTTPException: _http_error},
        lifespan=lifespan,
    )
