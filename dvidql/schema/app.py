"""The ASGI face: one GraphQL view for HTTP (queries, mutations, GraphiQL) and WebSockets
(subscriptions, and queries and mutations too)."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types.unset import UNSET, UnsetType

from dvidql.schema.build import schema
from dvidql.schema.context import Context, admin_token

__all__ = ["DvidqlGraphQL", "graphql_routes"]


class DvidqlGraphQL(GraphQL[Context, None]):
    async def get_context(self, request: Request | WebSocket,
                          response: Response | WebSocket) -> Context:
        service = request.app.state.service
        return Context(service=service, caller=service.caller(admin_token(request)),
                       request=request, response=response)

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """``connection_init`` may carry the admin token as ``{"adminToken": ...}``."""
        params = context.connection_params
        token = params.get("adminToken") if isinstance(params, Mapping) else None
        if isinstance(token, str) and token:
            context.caller = context.service.caller(token)
        return UNSET


def graphql_routes() -> list[BaseRoute]:
    """``/graphql`` for HTTP and WebSocket (two routes: a Mount would break the handshake)."""
    view = DvidqlGraphQL(
        schema,
        graphql_ide="graphiql",
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL],
    )
    return [Route("/graphql", view), WebSocketRoute("/graphql", view)]
