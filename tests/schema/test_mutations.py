"""Mutations over HTTP against a live server: the repo / version / keyvalue walkthrough."""

from __future__ import annotations

import base64
import uuid as uuidlib

from tests.schema.conftest import (
    Gql,
    branch,
    commit,
    new_repo,
    new_version,
    put_text,
    read_keys,
    read_text,
)

MERGE = """
mutation($p: [String!]!, $note: String, $res: MergeResolution!) {
  mergeVersions(parents: $p, note: $note, resolution: $res) {
    merged
    conflicts { instance key }
    child { uuid branch note committed parents { uuid } }
  }
}
"""


async def version_uuids(gql: Gql, ref: str) -> list[str]:
    data = await gql.run("query($r: String!) { repo(uuid: $r) { versions { uuid } } }", r=ref)
    return [v["uuid"] for v in data["repo"]["versions"]]


async def test_walkthrough(api: Gql) -> None:
    created = await api.run(
        """mutation { createRepo(alias: "walk", description: "a walkthrough") {
             uuid alias description mutationId
             root { uuid branch committed parents { uuid } } versions { uuid } } }""")
    repo = created["createRepo"]
    root = repo["uuid"]
    assert repo["alias"] == "walk" and repo["description"] == "a walkthrough"
    assert repo["mutationId"] == "1"  # UInt64: a decimal string
    assert repo["root"] == {"uuid": root, "branch": "master", "committed": False, "parents": []}
    assert repo["versions"] == [{"uuid": root}]

    made = await api.run(
        """mutation($r: String!) {
             createInstance(repo: $r, typeName: "keyvalue", name: "kv") {
               name typeName versioned compression tags { key value } info } }""", r=root)
    instance = made["createInstance"]
    assert instance["name"] == "kv" and instance["typeName"] == "keyvalue"
    assert instance["versioned"] is True and instance["tags"] == []
    assert instance["info"]["Base"]["TypeName"] == "keyvalue"
    assert instance["info"]["Base"]["RepoUUID"] == root

    first = await put_text(api, root, "a", "A0")
    second = await put_text(api, root, "b", "B0")
    assert int(second) == int(first) + 1
    assert await read_text(api, root, "a") == "A0"

    committed = await api.run(
        """mutation($v: String!) { commit(version: $v, note: "first", log: ["l1", "l2"]) {
             uuid committed locked note log } }""", v=root)
    assert committed["commit"]["committed"] is True and committed["commit"]["locked"] is True
    assert committed["commit"]["note"] == "first"
    assert [entry.split("  ", 1)[1] for entry in committed["commit"]["log"]] == ["l1", "l2"]

    master1 = await new_version(api, root)
    dev1 = await branch(api, root, "dev")

    # writes are isolated per branch
    await put_text(api, master1, "a", "A-master")
    await put_text(api, master1, "m", "M")
    await put_text(api, dev1, "d", "D")
    assert await read_text(api, master1, "a") == "A-master"
    assert await read_text(api, dev1, "a") == "A0"
    assert await read_text(api, root, "a") == "A0"
    assert await read_text(api, dev1, "m") is None
    assert await read_keys(api, master1) == ["a", "b", "m"]
    assert await read_keys(api, dev1) == ["a", "b", "d"]

    # references by branch
    assert await read_text(api, f"{root[:8]}:master", "a") == "A-master"
    assert await read_text(api, f"{root[:8]}:dev", "d") == "D"
    assert await read_text(api, f"{root}:master~1", "a") == "A0"

    # a merge without conflicts
    await commit(api, master1)
    await commit(api, dev1)
    clean = (await api.run(MERGE, p=[master1, dev1], note="clean", res="REFUSE"))["mergeVersions"]
    assert clean["merged"] is True and clean["conflicts"] == []
    merged = clean["child"]
    assert merged["branch"] == "master" and merged["note"] == "clean"
    assert [p["uuid"] for p in merged["parents"]] == [master1, dev1]
    for key, expected in {"a": "A-master", "b": "B0", "m": "M", "d": "D"}.items():
        assert await read_text(api, merged["uuid"], key) == expected

    # a merge with conflicts is refused, and nothing is created
    await commit(api, merged["uuid"])
    master2 = await new_version(api, merged["uuid"])
    fix1 = await branch(api, merged["uuid"], "fix")
    await put_text(api, master2, "a", "A2")
    await put_text(api, fix1, "a", "A-fix")
    await put_text(api, fix1, "f", "F")
    await commit(api, master2)
    await commit(api, fix1)
    before = await version_uuids(api, root)
    mutation_before = (await api.run("query($r: String!) { repo(uuid: $r) { mutationId } }",
                                     r=root))["repo"]["mutationId"]
    refused = (await api.run(MERGE, p=[master2, fix1], res="REFUSE"))["mergeVersions"]
    assert refused == {"merged": False, "child": None,
                       "conflicts": [{"instance": "kv", "key": "a"}]}
    assert await version_uuids(api, root) == before
    assert (await api.run("query($r: String!) { repo(uuid: $r) { mutationId } }",
                          r=root))["repo"]["mutationId"] == mutation_before

    # PARENT_PRIORITY takes the first parent's value
    resolved = (await api.run(MERGE, p=[master2, fix1], res="PARENT_PRIORITY"))["mergeVersions"]
    assert resolved["merged"] is True
    assert resolved["conflicts"] == [{"instance": "kv", "key": "a"}]
    child = resolved["child"]["uuid"]
    assert await read_text(api, child, "a") == "A2"
    assert await read_text(api, child, "f") == "F"
    assert await version_uuids(api, root) == [*before, child]

    # a tag is a committed child named by the tag
    await commit(api, child)
    tag = f"release-{root[:8]}"
    tagged = (await api.run(
        """mutation($v: String!, $t: String!) { tag(version: $v, tag: $t) {
             uuid branch committed parents { uuid } } }""", v=child, t=tag))["tag"]
    assert tagged == {"uuid": tag, "branch": f"tag-{tag}", "committed": True,
                      "parents": [{"uuid": child}]}
    assert await read_text(api, tag, "a") == "A2"

    # the DAG as the repo reports it
    dag = (await api.run(
        """query($r: String!) { repo(uuid: $r) {
             branches { name head { uuid } }
             root { children { uuid } }
             version(ref: ":fix") { uuid } } }""", r=root))["repo"]
    heads = {b["name"]: b["head"]["uuid"] for b in dag["branches"]}
    assert heads == {"master": child, "dev": dev1, "fix": fix1, f"tag-{tag}": tag}
    assert dag["branches"][0]["name"] == "master"
    assert dag["root"]["children"] == [{"uuid": master1}, {"uuid": dev1}]
    assert dag["version"] == {"uuid": fix1}


async def test_binary_values_and_entries(api: Gql) -> None:
    root = await new_repo(api)
    raw = bytes(range(256))
    data = await api.run(
        """mutation($v: String!, $b: Base64!) {
             putKey(version: $v, instance: "kv", key: "bin", value: $b) { mutationId } }""",
        v=root, b=base64.b64encode(raw).decode())
    assert data["putKey"]["mutationId"].isdigit()
    await put_text(api, root, "txt", "héllo")
    got = (await api.run(
        """query($v: String!) { version(ref: $v) { keyvalue(instance: "kv") {
             name version
             bin: value(key: "bin") txt: value(key: "txt") text(key: "txt")
             missing: value(key: "nope") missingText: text(key: "nope")
             entries(keys: ["txt", "nope", "bin"]) { key value } } } }""", v=root))
    kv = got["version"]["keyvalue"]
    assert kv["name"] == "kv" and kv["version"] == root
    assert base64.b64decode(kv["bin"]) == raw
    assert base64.b64decode(kv["txt"]) == "héllo".encode()
    assert kv["text"] == "héllo"
    assert kv["missing"] is None and kv["missingText"] is None
    assert [(e["key"], e["value"] and base64.b64decode(e["value"])) for e in kv["entries"]] == [
        ("txt", "héllo".encode()), ("nope", None), ("bin", raw)]


async def test_key_ranges_and_delete(api: Gql) -> None:
    root = await new_repo(api)
    for key in ["a", "b", "c", "d"]:
        await put_text(api, root, key, key.upper())
    ranges = (await api.run(
        """query($v: String!) { version(ref: $v) { keyvalue(instance: "kv") {
             all: keys  mid: keys(first: "b", last: "c")  from: keys(first: "c")
             upTo: keys(last: "b") } } }""", v=root))["version"]["keyvalue"]
    assert ranges == {"all": ["a", "b", "c", "d"], "mid": ["b", "c"], "from": ["c", "d"],
                      "upTo": ["a", "b"]}

    await commit(api, root)
    child = await new_version(api, root)
    deleted = await api.run(
        """mutation($v: String!) { deleteKey(version: $v, instance: "kv", key: "b") {
             mutationId instance key } }""", v=child)
    assert deleted["deleteKey"]["key"] == "b" and deleted["deleteKey"]["instance"] == "kv"
    assert deleted["deleteKey"]["mutationId"].isdigit()
    assert await read_keys(api, child) == ["a", "c", "d"]
    assert await read_keys(api, root) == ["a", "b", "c", "d"]  # the ancestor keeps it


async def test_note_and_log(api: Gql) -> None:
    root = await new_repo(api)
    noted = await api.run(
        """mutation($v: String!) { setNote(version: $v, note: "hello") { note } }""", v=root)
    assert noted["setNote"]["note"] == "hello"
    logged = await api.run(
        """mutation($v: String!) { appendLog(version: $v, messages: ["one", "two"]) {
             log } }""", v=root)
    assert [e.split("  ", 1)[1] for e in logged["appendLog"]["log"]] == ["one", "two"]
    again = await api.run(
        """query($v: String!) { version(ref: $v) { note log updated created } }""", v=root)
    assert again["version"]["note"] == "hello" and len(again["version"]["log"]) == 2


async def test_create_instance_settings_and_chosen_uuids(api: Gql) -> None:
    chosen = uuidlib.uuid4().hex
    repo = (await api.run("mutation($u: String!) { createRepo(root: $u) { uuid } }",
                          u=chosen.upper()))["createRepo"]
    assert repo["uuid"] == chosen
    made = await api.run(
        """mutation($r: String!, $s: JSON) { createInstance(repo: $r, typeName: "keyvalue",
             name: "shared", versioned: false, settings: $s) {
               versioned tags { key value } info } }""",
        r=chosen, s={"Tags": "owner=lab,kind=notes", "Compression": "none"})
    instance = made["createInstance"]
    assert instance["versioned"] is False
    assert instance["tags"] == [{"key": "kind", "value": "notes"},
                                {"key": "owner", "value": "lab"}]
    assert instance["info"]["Base"]["Versioned"] is False

    # unversioned data is shared by every version, and stays writable after a commit
    await put_text(api, chosen, "k", "v1", instance="shared")
    await commit(api, chosen)
    child_uuid = uuidlib.uuid4().hex
    child = (await api.run(
        """mutation($p: String!, $u: String!) { newVersion(parent: $p, uuid: $u, note: "n") {
             uuid note parents { uuid } } }""", p=chosen, u=child_uuid))["newVersion"]
    assert child == {"uuid": child_uuid, "note": "n", "parents": [{"uuid": chosen}]}
    await put_text(api, chosen, "k", "v2", instance="shared")
    assert await read_text(api, child_uuid, "k", instance="shared") == "v2"
