"""The DVID-compatible HTTP API: server, repo and node endpoints, then per-type route tables."""

from __future__ import annotations

from starlette.routing import BaseRoute

from dvidql.rest import dispatch, nodes, repos, server

__all__ = ["rest_routes"]


def rest_routes() -> list[BaseRoute]:
    """Node actions come before the instance dispatcher, so their names stay reserved."""
    return [*server.routes, *repos.routes, *nodes.routes, *dispatch.routes]
