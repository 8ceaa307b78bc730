"""Bad input: each error carries extensions.code / extensions.status, and changes nothing."""

from __future__ import annotations

import uuid as uuidlib

import pytest
from gql.transport.exceptions import TransportQueryError

from tests.conftest import LiveServer
from tests.schema.conftest import (
    Gql,
    branch,
    commit,
    http_session,
    new_repo,
    put_text,
    read_text,
    repo_state,
    ws_session,
)

REPOS = "{ repos { uuid mutationId versions { uuid } } }"
SINCE = "subscription($r: String!, $s: UInt64!) { mutations(repo: $r, since: $s) }"


async def test_unknown_repo_is_not_found(api: Gql) -> None:
    before = await api.run(REPOS)
    missing = uuidlib.uuid4().hex
    error = await api.error("NOT_FOUND", "query($r: String!) { repo(uuid: $r) { uuid } }",
                            r=missing)
    assert error["extensions"]["status"] == 404 and missing in error["message"]
    assert error["path"] == ["repo"]
    await api.error("NOT_FOUND", """mutation($v: String!) {
        putKey(version: $v, instance: "kv", key: "k", text: "t") { key } }""", v=missing)
    await api.error("NOT_FOUND", """mutation($v: String!) {
        createInstance(repo: $v, typeName: "keyvalue", name: "x") { name } }""", v=missing)
    assert await api.run(REPOS) == before

    # a repo only finds its own versions and instances
    one, other = await new_repo(api), await new_repo(api)
    error = await api.error("NOT_FOUND", """query($r: String!, $v: String!) {
        repo(uuid: $r) { version(ref: $v) { uuid } } }""", r=one, v=other)
    assert error["path"] == ["repo", "version"]
    await api.error("NOT_FOUND", """query($r: String!) {
        repo(uuid: $r) { instance(name: "nope") { name } } }""", r=one)
    await api.error("NOT_FOUND", """query($r: String!) {
        repo(uuid: $r) { version(ref: ":nobranch") { uuid } } }""", r=one)


async def test_ambiguous_and_malformed_refs(api: Gql) -> None:
    prefix = uuidlib.uuid4().hex[:12]
    roots = [prefix + "0" * 19 + str(i) for i in (1, 2)]
    for root in roots:
        await api.run("mutation($u: String!) { createRepo(root: $u) { uuid } }", u=root)
    before = await api.run(REPOS)

    error = await api.error("INVALID_REF", "query($r: String!) { repo(uuid: $r) { uuid } }",
                            r=prefix)
    assert error["extensions"]["status"] == 400 and "ambiguous" in error["message"]
    for bad in ("ab/cd", "a b", f"{roots[0]}:dev/x", "", f"{roots[0]}~1"):
        await api.error("INVALID_REF", "query($r: String!) { version(ref: $r) { uuid } }",
                        r=bad)
    await api.error("INVALID_REF", """mutation($v: String!) {
        putKey(version: $v, instance: "kv", key: "k", text: "t") { key } }""", v=prefix)
    # a UUID of the wrong shape, and one already in use
    await api.error("BAD_REQUEST", 'mutation { createRepo(root: "not-a-uuid") { uuid } }')
    await api.error("CONFLICT", "mutation($u: String!) { createRepo(root: $u) { uuid } }",
                    u=roots[0])
    assert await api.run(REPOS) == before


async def test_unknown_type_and_duplicate_instance(api: Gql) -> None:
    root = await new_repo(api)
    before = await repo_state(api, root)
    create = """mutation($r: String!, $t: String!, $n: String!) {
                  createInstance(repo: $r, typeName: $t, name: $n) { name } }"""
    error = await api.error("NOT_FOUND", create, r=root, t="nosuchtype", n="other")
    assert "nosuchtype" in error["message"] and error["extensions"]["status"] == 404
    error = await api.error("CONFLICT", create, r=root, t="keyvalue", n="kv")
    assert error["extensions"]["status"] == 409
    await api.error("BAD_REQUEST", create, r=root, t="keyvalue", n="-bad name")
    await api.error("BAD_REQUEST", create, r=root, t="keyvalue", n="log")  # reserved
    await api.error("BAD_REQUEST", """mutation($r: String!) { createInstance(repo: $r,
        typeName: "keyvalue", name: "x", settings: {Unknown: "1"}) { name } }""", r=root)
    await api.error("BAD_REQUEST", """mutation($r: String!) { createInstance(repo: $r,
        typeName: "keyvalue", name: "x", settings: [1, 2]) { name } }""", r=root)
    assert await repo_state(api, root) == before


async def test_writes_to_committed_versions_are_refused(api: Gql) -> None:
    root = await new_repo(api)
    await put_text(api, root, "k", "original")
    await commit(api, root)
    before = await repo_state(api, root)
    error = await api.error("VERSION_LOCKED", """mutation($v: String!) {
        putKey(version: $v, instance: "kv", key: "k", text: "changed") { key } }""", v=root)
    assert error["extensions"]["status"] == 409
    await api.error("VERSION_LOCKED", """mutation($v: String!) {
        deleteKey(version: $v, instance: "kv", key: "k") { key } }""", v=root)
    await api.error("VERSION_LOCKED", """mutation($v: String!) {
        setNote(version: $v, note: "n") { note } }""", v=root)
    await api.error("VERSION_LOCKED", """mutation($v: String!) {
        appendLog(version: $v, messages: ["m"]) { log } }""", v=root)
    await api.error("VERSION_LOCKED", """mutation($v: String!) {
        createInstance(repo: $v, typeName: "keyvalue", name: "late") { name } }""", v=root)
    await api.error("CONFLICT", "mutation($v: String!) { commit(version: $v) { uuid } }",
                    v=root)
    assert await read_text(api, root, "k") == "original"
    assert await repo_state(api, root) == before


async def test_dag_rules(api: Gql) -> None:
    root = await new_repo(api)
    before = await repo_state(api, root)
    # children and merges need committed parents
    await api.error("VERSION_LOCKED", "mutation($p: String!) { newVersion(parent: $p) { uuid } }",
                    p=root)
    await api.error("VERSION_LOCKED", """mutation($p: String!) {
        branch(parent: $p, name: "b") { uuid } }""", p=root)
    await api.error("VERSION_LOCKED", """mutation($v: String!) {
        tag(version: $v, tag: "never") { uuid } }""", v=root)
    assert await repo_state(api, root) == before

    await commit(api, root)
    first = await branch(api, root, "one")
    second = await branch(api, root, "two")
    before = await repo_state(api, root)
    error = await api.error("CONFLICT", """mutation($p: String!) {
        branch(parent: $p, name: "one") { uuid } }""", p=root)
    assert "already used" in error["message"]
    await api.error("BAD_REQUEST", """mutation($p: String!) {
        branch(parent: $p, name: "master") { uuid } }""", p=root)
    merge = """mutation($p: [String!]!) { mergeVersions(parents: $p) { merged } }"""
    error = await api.error("VERSION_LOCKED", merge, p=[first, second])
    assert error["extensions"]["status"] == 409
    await api.error("BAD_REQUEST", merge, p=[root])
    await api.error("BAD_REQUEST", merge, p=[])
    await api.error("BAD_REQUEST", """mutation($v: String!) {
        tag(version: $v, tag: "bad tag") { uuid } }""", v=root)
    assert await repo_state(api, root) == before

    other = await new_repo(api, instance=None)
    await commit(api, other)
    error = await api.error("BAD_REQUEST", merge, p=[root, other])
    assert "not in repo" in error["message"]
    assert await repo_state(api, root) == before


async def test_bad_keyvalue_input(api: Gql) -> None:
    root = await new_repo(api)
    await api.run("""mutation($v: String!) {
        putKey(version: $v, instance: "kv", key: "bin", value: "/w==") { key } }""", v=root)
    before = await repo_state(api, root)
    put = """mutation($v: String!, $value: Base64, $text: String) {
               putKey(version: $v, instance: "kv", key: "k", value: $value, text: $text) {
                 key } }"""
    error = await api.error("BAD_REQUEST", put, v=root, value="AA==", text="both")
    assert "exactly one" in error["message"]
    await api.error("BAD_REQUEST", put, v=root)
    error = await api.error("BAD_REQUEST", put, v=root, value="not base64!")
    assert "base64" in error["message"] and "path" not in error
    error = await api.error("NOT_FOUND", """mutation($v: String!) {
        putKey(version: $v, instance: "nope", key: "k", text: "t") { key } }""", v=root)
    error = await api.error("BAD_REQUEST", """mutation($v: String!) {
        putKey(version: $v, instance: "kv", key: "", text: "t") { key } }""", v=root)
    error = await api.error("BAD_REQUEST", """query($v: String!) {
        version(ref: $v) { keyvalue(instance: "kv") { text(key: "bin") } } }""", v=root)
    assert "UTF-8" in error["message"]
    assert error["path"] == ["version", "keyvalue", "text"]
    error = await api.error("BAD_REQUEST", """query($v: String!) {
        version(ref: $v) { keyvalue(instance: "kv") { keys(first: "z", last: "a") } } }""",
                            v=root)
    assert await repo_state(api, root) == before


async def test_partial_results_keep_the_other_fields(api: Gql) -> None:
    root = await new_repo(api)
    await put_text(api, root, "k", "v")
    with pytest.raises(TransportQueryError) as raised:  # gql raises, but keeps the data
        await api.run("""query($v: String!) { good: version(ref: $v) { uuid }
                           bad: version(ref: "0000zzzz") { uuid } }""", v=root)
    assert raised.value.data == {"good": {"uuid": root}, "bad": None}
    assert raised.value.errors is not None and raised.value.errors[0]["path"] == ["bad"]


async def test_graphql_validation_errors(api: Gql) -> None:
    error = await api.error("GRAPHQL_VALIDATION", "{ repos { nonsense } }")
    assert "nonsense" in error["message"] and error["extensions"]["status"] == 400
    await api.error("GRAPHQL_VALIDATION", "{ repo { uuid } }")
    await api.error("GRAPHQL_VALIDATION",
                    "query($r: String!) { repo(uuid: $r) { uuid } }")  # variable missing


async def test_uint64_input_is_checked(server: LiveServer) -> None:
    """UInt64 inputs (the subscription's ``since``) reject negatives and values past 2^64-1
    with BAD_REQUEST before anything runs."""
    async with http_session(server) as api:
        root = await new_repo(api, instance=None)
    async with ws_session(server) as ws:
        for bad in ("-1", str(2**64), "12a", "", -5, 1.5, True):
            with pytest.raises(TransportQueryError) as raised:
                async for _ in ws.subscribe(SINCE, r=root, s=bad):
                    pytest.fail(f"since={bad!r} was accepted")
            errors = raised.value.errors
            assert errors and errors[0]["extensions"]["code"] == "BAD_REQUEST", errors
            assert "UInt64" in errors[0]["message"]


async def test_read_only_server_refuses_mutations(make_server) -> None:
    first: LiveServer = make_server()
    async with http_session(first) as api:
        root = await new_repo(api)
        await put_text(api, root, "k", "v")
        await commit(api, root)
        dev = await branch(api, root, "dev")
    first.stop()

    live: LiveServer = make_server("--read-only", like=first)
    async with http_session(live) as api:
        info = (await api.run("{ serverInfo { mode } }"))["serverInfo"]
        assert info["mode"] == "readonly"
        before = await repo_state(api, root)
        assert await read_text(api, root, "k") == "v"  # reads still work
        refused = [
            ('mutation { createRepo(alias: "x") { uuid } }', {}),
            ("""mutation($r: String!) { createInstance(repo: $r, typeName: "keyvalue",
                 name: "x") { name } }""", {"r": dev}),
            ("""mutation($v: String!) { putKey(version: $v, instance: "kv", key: "k",
                 text: "t") { key } }""", {"v": dev}),
            ("""mutation($v: String!) { deleteKey(version: $v, instance: "kv", key: "k") {
                 key } }""", {"v": dev}),
            ("mutation($v: String!) { commit(version: $v) { uuid } }", {"v": dev}),
            ("mutation($v: String!) { setNote(version: $v, note: \"n\") { uuid } }",
             {"v": dev}),
            ("mutation($v: String!) { appendLog(version: $v, messages: [\"m\"]) { uuid } }",
             {"v": dev}),
            ("mutation($v: String!) { newVersion(parent: $v) { uuid } }", {"v": root}),
            ("mutation($v: String!) { branch(parent: $v, name: \"b\") { uuid } }",
             {"v": root}),
            ("mutation($v: String!) { tag(version: $v, tag: \"ro-tag\") { uuid } }",
             {"v": root}),
            ("""mutation($p: [String!]!) { mergeVersions(parents: $p) { merged } }""",
             {"p": [root, dev]}),
        ]
        for query, variables in refused:
            error = await api.error("READ_ONLY", query, **variables)
            assert error["extensions"]["status"] == 403
        assert await repo_state(api, root) == before
        assert len((await api.run("{ repos { uuid } }"))["repos"]) == 1


async def test_admin_token(make_server) -> None:
    live: LiveServer = make_server("--admin-token", "s3cret")
    create = 'mutation { createRepo(alias: "guarded") { uuid } }'
    async with http_session(live) as anonymous:
        error = await anonymous.error("FORBIDDEN", create)
        assert error["extensions"]["status"] == 403 and "admin token" in error["message"]
        assert (await anonymous.run("{ repos { uuid } }"))["repos"] == []
    async with http_session(live, {"Authorization": "Bearer wrong"}) as wrong:
        await wrong.error("FORBIDDEN", create)
        assert (await wrong.run("{ repos { uuid } }"))["repos"] == []

    async with http_session(live, {"Authorization": "Bearer s3cret"}) as admin:
        assert (await admin.run(create))["createRepo"]["uuid"]
    async with http_session(live, {"X-Admin-Token": "s3cret"}) as admin:
        assert (await admin.run(create))["createRepo"]["uuid"]
    async with http_session(live, query="?admintoken=s3cret") as admin:
        assert (await admin.run(create))["createRepo"]["uuid"]
    async with ws_session(live, init_payload={"adminToken": "s3cret"}) as admin:
        assert (await admin.run(create))["createRepo"]["uuid"]
    async with ws_session(live, headers={"Authorization": "Bearer s3cret"}) as admin:
        assert (await admin.run(create))["createRepo"]["uuid"]
    async with ws_session(live) as anonymous:
        await anonymous.error("FORBIDDEN", create)

    async with http_session(live) as anonymous:
        repos = (await anonymous.run("{ repos { uuid alias } }"))["repos"]
        assert [r["alias"] for r in repos] == ["guarded"] * 5
        # only creating repos is privileged: data and version writes need no token
        root = repos[0]["uuid"]
        await anonymous.run("""mutation($r: String!) { createInstance(repo: $r,
            typeName: "keyvalue", name: "kv") { name } }""", r=root)
        await put_text(anonymous, root, "k", "v")
        await commit(anonymous, root)


async def test_admin_may_write_to_a_read_only_server(make_server) -> None:
    live: LiveServer = make_server("--read-only", "--admin-token", "tok")
    async with http_session(live) as anonymous:
        await anonymous.error("READ_ONLY", 'mutation { createRepo { uuid } }')
    async with http_session(live, {"Authorization": "Bearer tok"}) as admin:
        root = await new_repo(admin)
        await put_text(admin, root, "k", "v")
        assert await read_text(admin, root, "k") == "v"
