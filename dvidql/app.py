"""Builds the Starlette application: DVID-compatible REST under /api, GraphQL at /graphql."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from dvidql.config import Settings
from dvidql.errors import DvidqlError
from dvidql.rest import rest_routes
from dvidql.schema import graphql_routes
from dvidql.service import Service

__all__ = ["build_app"]

log = logging.getLogger("dvidql")


async def _dvidql_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DvidqlError)
    if exc.status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.message)
    body = {"error": exc.message, "code": exc.code, **exc.details()}
    return JSONResponse(body, status_code=exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path} (see /api/help)"
    elif exc.status_code == 405:
        message = f"{request.method} is not supported on {request.url.path} (see /api/help)"
    return JSONResponse({"error": message, "code": f"HTTP_{exc.status_code}"},
                        status_code=exc.status_code, headers=exc.headers)


async def _home(request: Request) -> Response:
    return RedirectResponse("/graphql")


def build_app(settings: Settings, service: Service | None = None) -> Starlette:
    """The app for ``settings``; the store opens at start-up unless a service is given."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        owned = service is None
        app.state.service = await Service.open(settings) if owned else service
        log.info("serving store %s in %s mode", settings.data, settings.mode.value)
        try:
            yield
        finally:
            if owned:
                await app.state.service.close()

    return Starlette(
        routes=[*rest_routes(), *graphql_routes(), Route("/", _home)],
        middleware=[
            Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"],
                       allow_headers=["Authorization", "Content-Type", "Range"],
                       expose_headers=["Content-Range", "Content-Length"]),
        ],
        exception_handlers={DvidqlError: _dvidql_error, HTTPException: _http_error},
        lifespan=lifespan,
    )
