"""Subscriptions. The mutation feed polls the mutation log until an event hub exists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dvidql.schema.context import Context

__all__ = ["POLL_SECONDS", "mutations"]

POLL_SECONDS = 0.2


async def mutations(ctx: Context, ref: str, since: int) -> AsyncIterator[dict[str, Any]]:
    """Mutation-log records of the repo of ``ref`` with ids above ``since``, oldest first,
    then each new one as it is logged."""
    repo = ctx.service.repos.repo_of(ref)
    while True:
        for record in await ctx.service.repos.mutations(repo, since):
            since = max(since, int(record["MutationID"]))
            yield record
        await asyncio.sleep(POLL_SECONDS)
