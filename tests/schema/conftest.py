"""GraphQL clients for the live test servers, and small helpers shared by the schema tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from gql import Client, GraphQLRequest
from gql.client import AsyncClientSession
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXAsyncTransport
from gql.transport.websockets import WebsocketsTransport

from tests.conftest import LiveServer

TRANSPORT_WS = WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL  # "graphql-transport-ws"
LEGACY_WS = WebsocketsTransport.APOLLO_SUBPROTOCOL  # "graphql-ws"


class Gql:
    """One open gql session: ``run`` returns ``data`` (errors fail the test), ``error``
    expects exactly one error and checks its code."""

    def __init__(self, session: AsyncClientSession) -> None:
        self.session = session

    async def run(self, query: str, **variables: Any) -> dict[str, Any]:
        request = GraphQLRequest(query, variable_values=variables or None)
        return await self.session.execute(request)

    async def error(self, code: str, query: str, **variables: Any) -> dict[str, Any]:
        try:
            data = await self.run(query, **variables)
        except TransportQueryError as exc:
            assert exc.errors, exc
            assert len(exc.errors) == 1, exc.errors
            error = exc.errors[0]
            assert error["extensions"]["code"] == code, error
            assert isinstance(error["extensions"]["status"], int), error
            assert error["message"], error
            return error
        raise AssertionError(f"expected a {code} error, got data {data}")

    async def subscribe(self, query: str, **variables: Any) -> AsyncIterator[dict[str, Any]]:
        request = GraphQLRequest(query, variable_values=variables or None)
        async for result in self.session.subscribe(request):
            yield result


def ws_url(server: LiveServer) -> str:
    return server.url.replace("http://", "ws://") + "/graphql"


@asynccontextmanager
async def http_session(
    server: LiveServer, headers: Mapping[str, str] | None = None, query: str = ""
) -> AsyncIterator[Gql]:
    transport = HTTPXAsyncTransport(url=f"{server.url}/graphql{query}",
                                    headers=dict(headers or {}), timeout=30)
    async with Client(transport=transport) as session:
        yield Gql(session)


@asynccontextmanager
async def ws_session(
    server: LiveServer,
    *,
    protocol: str = TRANSPORT_WS,
    headers: Mapping[str, str] | None = None,
    init_payload: dict[str, Any] | None = None,
) -> AsyncIterator[Gql]:
    transport = WebsocketsTransport(url=ws_url(server), subprotocols=[protocol],
                                    headers=dict(headers or {}), init_payload=init_payload)
    async with Client(transport=transport) as session:
        yield Gql(session)


@pytest.fixture
async def api(server: LiveServer) -> AsyncIterator[Gql]:
    """A GraphQL-over-HTTP session with the shared server."""
    async with http_session(server) as gql:
        yield gql


# ----- scenario helpers ----------------------------------------------------------------------

REPO_STATE = """
query State($ref: String!) {
  repo(uuid: $ref) {
    uuid alias description log mutationId
    versions { uuid branch note log committed parents { uuid } children { uuid } }
    instances { name typeName dataUuid versioned }
    branches { name head { uuid } }
  }
}
"""


async def repo_state(gql: Gql, ref: str) -> dict[str, Any]:
    """Everything a failed mutation must leave untouched."""
    return (await gql.run(REPO_STATE, ref=ref))["repo"]


async def new_repo(gql: Gql, alias: str = "test", *, instance: str | None = "kv") -> str:
    """A fresh repo, with a keyvalue instance unless ``instance`` is None; its root UUID."""
    data = await gql.run("mutation($a: String!) { createRepo(alias: $a) { uuid } }", a=alias)
    root = data["createRepo"]["uuid"]
    if instance is not None:
        await gql.run(
            """mutation($r: String!, $n: String!) {
                 createInstance(repo: $r, typeName: "keyvalue", name: $n) { name } }""",
            r=root, n=instance)
    return root


async def put_text(gql: Gql, version: str, key: str, text: str, instance: str = "kv") -> str:
    """Store ``text``; returns the mutation id (a decimal string)."""
    data = await gql.run(
        """mutation($v: String!, $i: String!, $k: String!, $t: String!) {
             putKey(version: $v, instance: $i, key: $k, text: $t) { mutationId key } }""",
        v=version, i=instance, k=key, t=text)
    assert data["putKey"]["key"] == key
    return data["putKey"]["mutationId"]


async def read_text(gql: Gql, version: str, key: str, instance: str = "kv") -> str | None:
    data = await gql.run(
        """query($v: String!, $i: String!, $k: String!) {
             version(ref: $v) { keyvalue(instance: $i) { text(key: $k) } } }""",
        v=version, i=instance, k=key)
    return data["version"]["keyvalue"]["text"]


async def read_keys(gql: Gql, version: str, instance: str = "kv") -> list[str]:
    data = await gql.run(
        """query($v: String!, $i: String!) {
             version(ref: $v) { keyvalue(instance: $i) { keys } } }""", v=version, i=instance)
    return data["version"]["keyvalue"]["keys"]


async def commit(gql: Gql, version: str) -> None:
    data = await gql.run("mutation($v: String!) { commit(version: $v) { committed } }",
                         v=version)
    assert data["commit"]["committed"] is True


async def new_version(gql: Gql, parent: str) -> str:
    data = await gql.run("mutation($p: String!) { newVersion(parent: $p) { uuid } }", p=parent)
    return data["newVersion"]["uuid"]


async def branch(gql: Gql, parent: str, name: str) -> str:
    data = await gql.run(
        "mutation($p: String!, $n: String!) { branch(parent: $p, name: $n) { uuid branch } }",
        p=parent, n=name)
    assert data["branch"]["branch"] == name
    return data["branch"]["uuid"]
