"""GraphQL over WebSocket: queries and mutations, and the mutation-log subscription."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from gql.transport.exceptions import TransportQueryError

from tests.conftest import LiveServer
from tests.schema.conftest import (
    LEGACY_WS,
    TRANSPORT_WS,
    commit,
    http_session,
    new_repo,
    put_text,
    read_keys,
    read_text,
    ws_session,
)

MUTATIONS = "subscription($r: String!, $s: UInt64!) { mutations(repo: $r, since: $s) }"


async def test_queries_and_mutations_over_ws(server: LiveServer) -> None:
    async with ws_session(server, protocol=TRANSPORT_WS) as ws:
        root = await new_repo(ws)
        mutation_id = await put_text(ws, root, "k", "over ws")
        assert mutation_id == "3"
        assert await read_text(ws, root, "k") == "over ws"
        await commit(ws, root)
        assert await read_keys(ws, root) == ["k"]
        error = await ws.error("VERSION_LOCKED", """mutation($v: String!) {
            putKey(version: $v, instance: "kv", key: "k", text: "again") { key } }""", v=root)
        assert error["extensions"]["status"] == 409
        info = (await ws.run("{ serverInfo { mode } }"))["serverInfo"]
        assert info["mode"] == "readwrite"


async def test_legacy_protocol_carries_subscriptions_only(server: LiveServer) -> None:
    async with ws_session(server, protocol=LEGACY_WS) as ws:
        error = await ws.error("GRAPHQL_VALIDATION", "{ repos { uuid } }")
        assert "not allowed" in error["message"]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_subscription_sees_put_key(server: LiveServer, protocol: str) -> None:
    async with http_session(server) as api, ws_session(server, protocol=protocol) as ws:
        root = await new_repo(api)  # mutations 1 (newrepo) and 2 (newinstance)
        records: list[dict[str, Any]] = []
        put_id = None
        async with asyncio.timeout(30):
            async for result in ws.subscribe(MUTATIONS, r=root, s="0"):
                record = result["mutations"]
                records.append(record)
                if record["MutationID"] == 2:  # caught up with the log: now write
                    put_id = await put_text(api, root, "live", "value")
                if record["Action"] == "postkv":
                    break
        assert [r["Action"] for r in records] == ["newrepo", "newinstance", "postkv"]
        assert [r["MutationID"] for r in records] == [1, 2, 3]
        assert put_id == "3"
        assert records[2]["Key"] == "live" and records[2]["DataName"] == "kv"
        assert records[2]["UUID"] == root


async def test_subscription_and_mutation_on_one_connection(server: LiveServer) -> None:
    async with http_session(server) as api:
        root = await new_repo(api)
        await put_text(api, root, "old", "x")  # mutation 3: skipped with since=3
    async with ws_session(server) as ws:
        live = asyncio.Event()
        received: list[dict[str, Any]] = []

        async def listen() -> None:
            async for result in ws.subscribe(MUTATIONS, r=root[:12], s="3"):
                received.append(result["mutations"])
                live.set()
                if len(received) == 2:
                    return

        async with asyncio.timeout(30):
            listener = asyncio.create_task(listen())
            # written while the subscription may still be starting: the feed replays the
            # log after 'since', so the record arrives either way
            await put_text(ws, root, "new", "1")
            await live.wait()
            await ws.run("""mutation($v: String!) {
                deleteKey(version: $v, instance: "kv", key: "old") { key } }""", v=root)
            await listener
        assert [(r["MutationID"], r["Action"], r["Key"]) for r in received] == [
            (4, "postkv", "new"), (5, "deletekv", "old")]


async def test_subscription_errors(server: LiveServer) -> None:
    async with ws_session(server) as ws:
        with pytest.raises(TransportQueryError) as raised:
            async with asyncio.timeout(30):
                async for _ in ws.subscribe(MUTATIONS, r="f" * 32, s="0"):
                    pytest.fail("an unknown repo produced records")
        errors = raised.value.errors
        assert errors and errors[0]["extensions"]["code"] == "NOT_FOUND", errors
        assert errors[0]["extensions"]["status"] == 404
        # the connection survives the error
        assert isinstance((await ws.run("{ repos { uuid } }"))["repos"], list)
