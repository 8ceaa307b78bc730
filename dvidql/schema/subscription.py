"""Subscription root."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Annotated

import strawberry
from strawberry.types import Info

from dvidql.resolvers import subscriptions as subscription_resolvers
from dvidql.schema.args import arg
from dvidql.schema.context import Context
from dvidql.schema.scalars import JSON, UInt64

__all__ = ["Subscription"]

FROM_START = UInt64(0)


@strawberry.type(description="Live feeds, over WebSocket (graphql-transport-ws or graphql-ws).")
class Subscription:
    @strawberry.subscription(description="Mutation-log records of a repo as they are logged "
                                         "(JSON objects with MutationID, Action, UUID...), "
                                         "starting after mutation id 'since'.")
    async def mutations(
        self,
        info: Info[Context, None],
        repo: Annotated[str, arg("Reference to any version of the repo.")],
        since: Annotated[UInt64, arg("Send records with larger mutation ids; 0 sends the "
                                     "whole log first.")] = FROM_START,
    ) -> AsyncGenerator[JSON, None]:
        feed = subscription_resolvers.mutations(info.context, repo, since)
        try:
            async for record in feed:
                yield JSON(record)
        finally:
            await feed.aclose()
