"""The GraphQL face of dvidql: schema, scalars, error mapping and the ASGI routes.

``schema`` is the Strawberry schema (its SDL is committed as ``schema.graphql``);
``graphql_routes()`` serves it at ``/graphql`` over HTTP and WebSockets. Regenerate the SDL
file with ``python -m dvidql.schema schema.graphql``.
"""

from dvidql.schema.app import graphql_routes
from dvidql.schema.build import schema, sdl

__all__ = ["graphql_routes", "schema", "sdl"]
