"""Query root."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from dvidql.resolvers import repos as repo_resolvers
from dvidql.resolvers import server as server_resolvers
from dvidql.schema.args import arg
from dvidql.schema.context import Context
from dvidql.schema.types import Repo, ServerInfo, Version

__all__ = ["Query"]

REF = ("A version reference: a UUID or unique prefix, 'uuid:branch', 'uuid:branch~N', or "
       "':branch' on a server with one repo.")


@strawberry.type(description="Reads: server information, repos, versions and their data.")
class Query:
    @strawberry.field(description="The server's version, configuration and state.")
    def server_info(self, info: Info[Context, None]) -> ServerInfo:
        return ServerInfo.build(*server_resolvers.server_info(info.context))

    @strawberry.field(description="All repos on the server, oldest first.")
    def repos(self, info: Info[Context, None]) -> list[Repo]:
        return [Repo(doc=doc) for doc in repo_resolvers.all_repos(info.context)]

    @strawberry.field(description="The repo holding a version (any version of it may be named).")
    def repo(self, info: Info[Context, None], uuid: Annotated[str, arg(REF)]) -> Repo | None:
        doc, _ = repo_resolvers.resolve(info.context, uuid)
        return Repo(doc=doc)

    @strawberry.field(description="A version by reference.")
    def version(self, info: Info[Context, None], ref: Annotated[str, arg(REF)]) -> Version | None:
        return Version.of(repo_resolvers.resolve(info.context, ref))
