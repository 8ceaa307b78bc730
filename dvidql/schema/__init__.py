"""GraphQL schema (placeholder until the schema lands)."""

from starlette.routing import BaseRoute


def graphql_routes() -> list[BaseRoute]:
    return []
