"""The baseline for REST overhead: a bare Starlette handler returning the same value bytes,
served by the same uvicorn configuration as dvidql."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

VALUE = os.urandom(int(os.environ.get("BENCH_VALUE_BYTES", "1024")))


async def get_key(request: Request) -> Response:
    return Response(VALUE, media_type="application/octet-stream")


app = Starlette(routes=[Route("/api/node/{uuid}/{name}/key/{key}", get_key)])
