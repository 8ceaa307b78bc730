"""The DVID-compatible HTTP API: server, repo and node endpoints, then per-type route tables."""

from __future__ import annotations

from starlette.routing import BaseRoute

from dvidql.rest import nodes, repos, server

__all__ = ["rest_routes"]


def rest_routes() -> list[BaseRoute]:
    """Server, repo and node endpoints; data requests, the hot path, never reach the router:
    :class:`dvidql.rest.dispatch.DataRequests` serves them from the middleware stack."""
    return [*server.routes, *repos.routes, *nodes.routes]
