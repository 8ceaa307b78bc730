"""The DVID-compatible HTTP API: server, repo and node endpoints, then per-type route tables."""

from __future__ import annotations

from starlette.routing import BaseRoute

from dvidql.rest import dispatch, nodes, repos, server

__all__ = ["rest_routes"]


def rest_routes() -> list[BaseRoute]:
    """Data requests, the hot path, are matched first; the dispatcher's pattern needs a path
    below the instance, so node actions (reserved names) never reach it."""
    return [*dispatch.routes, *server.routes, *repos.routes, *nodes.routes]
