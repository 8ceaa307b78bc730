"""Queries over HTTP against a live server."""

from __future__ import annotations

import re

import httpx

from tests.conftest import LiveServer
from tests.schema.conftest import (
    Gql,
    branch,
    commit,
    http_session,
    new_repo,
    new_version,
    put_text,
    read_text,
)


async def test_server_info(api: Gql, backend: str) -> None:
    info = (await api.run(
        """{ serverInfo { version server mode storageBackend uptime serverTime host note
             cores datatypes { name url } } }"""))["serverInfo"]
    assert info["version"].endswith("-dvidql")
    assert info["mode"] == "readwrite"
    if backend == "embedded":
        assert info["storageBackend"].startswith("embedded LMDB at ")
    else:  # where the data lives, without credentials
        assert re.fullmatch(r"PostgreSQL at 127\.0\.0\.1:\d+/dvidql_test_\w+, blocks in "
                            r"s3://dvidql-test-\w+/blocks", info["storageBackend"])
    assert info["cores"] >= 1
    assert {"name": "keyvalue",
            "url": "github.com/janelia-flyem/dvid/datatype/keyvalue"} in info["datatypes"]


async def test_repos_and_lookup_by_prefix(api: Gql) -> None:
    root = await new_repo(api, "lookup")
    repos = (await api.run("{ repos { uuid alias } }"))["repos"]
    assert {"uuid": root, "alias": "lookup"} in repos
    for ref in (root, root[:8], root.upper()[:10], f"{root[:8]}:master"):
        found = (await api.run("query($r: String!) { repo(uuid: $r) { uuid alias } }", r=ref))
        assert found["repo"] == {"uuid": root, "alias": "lookup"}


async def test_mutation_id_is_a_decimal_string(api: Gql) -> None:
    root = await new_repo(api)  # newrepo + newinstance
    state = (await api.run("query($r: String!) { repo(uuid: $r) { mutationId } }", r=root))
    assert state["repo"]["mutationId"] == "2"
    assert await put_text(api, root, "k", "v") == "3"
    state = (await api.run("query($r: String!) { repo(uuid: $r) { mutationId } }", r=root))
    assert state["repo"]["mutationId"] == "3"


async def test_version_navigation(api: Gql) -> None:
    root = await new_repo(api)
    await commit(api, root)
    child = await new_version(api, root)
    side = await branch(api, root, "side")
    data = await api.run(
        """query($v: String!) { version(ref: $v) {
             uuid versionId branch committed
             parents { uuid children { uuid } }
             children { uuid }
             repo { uuid versions { uuid } instance(name: "kv") { name typeName dataUuid } }
           } }""", v=child)
    version = data["version"]
    assert version["uuid"] == child and version["branch"] == "master"
    assert isinstance(version["versionId"], int) and version["committed"] is False
    assert version["parents"] == [{"uuid": root, "children": [{"uuid": child},
                                                               {"uuid": side}]}]
    assert version["children"] == []
    assert version["repo"]["uuid"] == root
    assert [v["uuid"] for v in version["repo"]["versions"]] == [root, child, side]
    assert version["repo"]["instance"]["typeName"] == "keyvalue"
    assert len(version["repo"]["instance"]["dataUuid"]) == 32

    branches = (await api.run(
        """query($r: String!) { repo(uuid: $r) { branches {
             name head { uuid } versions { uuid } } } }""", r=root))["repo"]["branches"]
    assert branches == [
        {"name": "master", "head": {"uuid": child}, "versions": [{"uuid": child},
                                                                 {"uuid": root}]},
        {"name": "side", "head": {"uuid": side}, "versions": [{"uuid": side},
                                                              {"uuid": root}]},
    ]


async def test_branch_refs_without_uuid_on_a_one_repo_server(make_server) -> None:
    live: LiveServer = make_server()
    async with http_session(live) as gql:
        root = await new_repo(gql)
        await put_text(gql, root, "k", "root")
        await commit(gql, root)
        dev = await branch(gql, root, "dev")
        await put_text(gql, dev, "k", "dev")
        assert await read_text(gql, ":master", "k") == "root"
        assert await read_text(gql, ":dev", "k") == "dev"
        assert (await gql.run('{ version(ref: ":dev~1") { uuid } }'))["version"]["uuid"] == root
        assert (await gql.run('{ repo(uuid: ":master") { uuid } }'))["repo"]["uuid"] == root

        await new_repo(gql, instance=None)  # a second repo makes ':branch' ambiguous
        error = await gql.error("INVALID_REF", '{ version(ref: ":master") { uuid } }')
        assert "exactly one repo" in error["message"]
        assert (await gql.run("query($r: String!) { repo(uuid: $r) { version(ref: \":dev\") {"
                              " uuid } } }", r=root))["repo"]["version"]["uuid"] == dev


def test_graphiql_is_served(server: LiveServer) -> None:
    page = httpx.get(f"{server.url}/graphql", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "graphiql" in page.text.lower()


def test_plain_http_post(server: LiveServer) -> None:
    """No client library needed: a JSON POST is enough."""
    response = httpx.post(f"{server.url}/graphql", json={"query": "{ repos { uuid } }"},
                          timeout=30)
    assert response.status_code == 200
    assert isinstance(response.json()["data"]["repos"], list)
