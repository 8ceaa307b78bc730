"""The schema object."""

from __future__ import annotations

from strawberry.schema.config import StrawberryConfig

from dvidql.schema.errors import DvidqlSchema
from dvidql.schema.mutation import Mutation
from dvidql.schema.query import Query
from dvidql.schema.scalars import SCALAR_MAP
from dvidql.schema.subscription import Subscription

__all__ = ["schema", "sdl"]

schema = DvidqlSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(scalar_map=SCALAR_MAP),
)


def sdl() -> str:
    """The schema in SDL, as committed in ``schema.graphql``."""
    return schema.as_str() + "\n"
