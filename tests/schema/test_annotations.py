"""The Annotations type and the element mutations through a real GraphQL client (HTTP and
WebSocket), checked against what REST answers for the same instance."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import LiveServer
from tests.schema.conftest import Gql, ws_session

ELEMENT = "pos kind tags prop rels { rel to }"
READ = f"""
query($v: String!, $o: [Int!]!, $s: [Int!]!) {{ version(ref: $v) {{
  annotations(instance: "syn") {{
    name version blockSize
    elements(offset: $o, size: $s) {{ {ELEMENT} }}
    tagged(tag: "t1") {{ {ELEMENT} }}
    withRels: tagged(tag: "t1", relationships: true) {{ {ELEMENT} }}
    inRoi(roi: "region") {{ pos }} }} }} }}
"""
POST = """
mutation($v: String!, $e: [ElementInput!]!) {
  postElements(version: $v, instance: "syn", elements: $e, user: "ann") {
    mutationId instance } }
"""
MOVE = """
mutation($v: String!, $f: [Int!]!, $t: [Int!]!) {
  moveElement(version: $v, instance: "syn", from: $f, to: $t) { mutationId } }
"""
DELETE = """
mutation($v: String!, $p: [Int!]!) {
  deleteElement(version: $v, instance: "syn", pos: $p) { mutationId } }
"""
EVERYWHERE = {"o": [-1000, -1000, -1000], "s": [3000, 3000, 3000]}


def _setup(server: LiveServer) -> str:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        root = http.post("/api/repos", json={}).json()["root"]
        for body in ({"typename": "annotation", "dataname": "syn"},
                     {"typename": "roi", "dataname": "region"},
                     {"typename": "keyvalue", "dataname": "kv"}):
            assert http.post(f"/api/repo/{root}/instance", json=body).status_code == 200
        http.post(f"/api/node/{root}/region/roi", json=[[0, 0, 0, 3]])  # x 0..127, 32^3
    return root


def _rest(server: LiveServer, path: str) -> Any:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        response = http.get(path)
        assert response.status_code == 200, response.text
        return response.json()


def _as_rest(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({"Pos": e["pos"], "Kind": e["kind"], "Tags": e["tags"], "Prop": e["prop"],
                    "Rels": [{"Rel": r["rel"], "To": r["to"]} for r in e["rels"]]}
                   for e in elements), key=lambda e: e["Pos"])


async def test_post_read_move_delete(api: Gql, server: LiveServer) -> None:
    root = _setup(server)
    posted = await api.run(POST, v=root, e=[
        {"pos": [10, 20, 30], "kind": "PreSyn", "tags": ["t1"], "prop": {"conf": "0.9"},
         "rels": [{"rel": "PreSynTo", "to": [12, 20, 30]}, {"rel": "PreSynTo",
                                                            "to": [200, 20, 30]}]},
        {"pos": [12, 20, 30], "kind": "PostSyn",
         "rels": [{"rel": "PostSynTo", "to": [10, 20, 30]}]},
        {"pos": [200, 20, 30], "kind": "PostSyn", "tags": ["t1"],
         "rels": [{"rel": "PostSynTo", "to": [10, 20, 30]}]},
    ])
    assert int(posted["postElements"]["mutationId"]) > 0
    found = (await api.run(READ, v=root, **EVERYWHERE))["version"]["annotations"]
    assert found["name"] == "syn" and found["version"] == root
    assert found["blockSize"] == [64, 64, 64]
    rest = _rest(server, f"/api/node/{root}/syn/elements/3000_3000_3000/-1000_-1000_-1000")
    assert _as_rest(found["elements"]) == sorted(rest, key=lambda e: e["Pos"])
    assert sorted(e["pos"] for e in found["tagged"]) == [[10, 20, 30], [200, 20, 30]]
    assert all(e["rels"] == [] for e in found["tagged"])
    assert _as_rest(found["withRels"]) == sorted(
        _rest(server, f"/api/node/{root}/syn/tag/t1?relationships=true"),
        key=lambda e: e["Pos"])
    assert sorted(e["pos"] for e in found["inRoi"]) == [[10, 20, 30], [12, 20, 30]]

    await api.run(MOVE, v=root, f=[12, 20, 30], t=[14, 21, 30])
    await api.run(DELETE, v=root, p=[200, 20, 30])
    async with ws_session(server) as ws:  # the same reads over WebSocket
        after = (await ws.run(READ, v=root, **EVERYWHERE))["version"]["annotations"]
    rest = _rest(server, f"/api/node/{root}/syn/elements/3000_3000_3000/-1000_-1000_-1000")
    assert _as_rest(after["elements"]) == sorted(rest, key=lambda e: e["Pos"])
    tbar = next(e for e in after["elements"] if e["kind"] == "PreSyn")
    assert tbar["rels"] == [{"rel": "PreSynTo", "to": [14, 21, 30]}]  # moved, deleted


async def test_bad_input_changes_nothing(api: Gql, server: LiveServer) -> None:
    root = _setup(server)
    good = {"pos": [1, 2, 3], "kind": "Note"}
    await api.run(POST, v=root, e=[good])
    before = _rest(server, f"/api/node/{root}/syn/all-elements")
    for element in ({"pos": [5, 5, 5], "kind": "Synapse"},
                    {"pos": [5, 5], "kind": "Note"},
                    {"pos": [5, 5, 5], "kind": "Note", "prop": {"a": 1}},
                    {"pos": [5, 5, 5], "kind": "Note", "rels": [{"rel": "Likes",
                                                                "to": [1, 2, 3]}]}):
        error = await api.error("BAD_REQUEST", POST, v=root, e=[good, element])
        assert "element 1" in error["message"] or "item 1" in error["message"], error
    await api.error("NOT_FOUND", DELETE, v=root, p=[9, 9, 9])
    await api.error("NOT_FOUND", MOVE, v=root, f=[9, 9, 9], t=[1, 1, 1])
    await api.error("BAD_REQUEST", DELETE, v=root, p=[9, 9])
    await api.error("BAD_REQUEST", READ.replace('"syn"', '"kv"'), v=root, **EVERYWHERE)
    await api.error("BAD_REQUEST", READ.replace('"region"', '"syn"'), v=root, **EVERYWHERE)
    assert _rest(server, f"/api/node/{root}/syn/all-elements") == before


BODY = """
query($v: String!, $b: UInt64!) { version(ref: $v) { annotations(instance: "syn") {
  body(id: $b) { pos rels { to } } withRels: body(id: $b, relationships: true) { rels { to } }
} } }
"""
MERGE = """
mutation($v: String!) { mergeBodies(version: $v, instance: "seg", target: "1", merged: ["2"]) {
  mutationId } }
"""


def _synced_segmentation(server: LiveServer, root: str) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.post(f"/api/repo/{root}/instance", json={
            "typename": "labelmap", "dataname": "seg"}).status_code == 200
        halves = b"".join(  # supervoxel 1 at x < 32, 2 beyond, in one 64^3 block
            (b"\x01" + b"\x00" * 7) * 32 + (b"\x02" + b"\x00" * 7) * 32 for _ in range(64 * 64))
        assert http.post(f"/api/node/{root}/seg/raw/0_1_2/64_64_64/0_0_0",
                         content=halves).status_code == 200
        assert http.post(f"/api/node/{root}/syn/sync",
                         json={"sync": "seg"}).status_code == 200


async def test_body_follows_a_merge(api: Gql, server: LiveServer) -> None:
    root = _setup(server)
    _synced_segmentation(server, root)
    await api.run(POST, v=root, e=[
        {"pos": [1, 1, 1], "kind": "PreSyn", "rels": [{"rel": "PreSynTo", "to": [40, 1, 1]}]},
        {"pos": [40, 1, 1], "kind": "PostSyn"}])
    one = (await api.run(BODY, v=root, b="1"))["version"]["annotations"]
    assert one["body"] == [{"pos": [1, 1, 1], "rels": []}]
    assert one["withRels"] == [{"rels": [{"to": [40, 1, 1]}]}]
    await api.run(MERGE, v=root)
    merged = (await api.run(BODY, v=root, b="1"))["version"]["annotations"]["body"]
    assert sorted(e["pos"] for e in merged) == [[1, 1, 1], [40, 1, 1]]
    assert (await api.run(BODY, v=root, b="2"))["version"]["annotations"]["body"] == []


PARTNERS = """
query($v: String!, $b: UInt64!) { version(ref: $v) { segmentation(instance: "seg") {
  body(id: $b) { partners(annotations: "syn") { body outgoing incoming }
                 tbars: synapses(annotations: "syn", kind: "PreSyn") { pos }
                 all: synapses(annotations: "syn", relationships: true) { pos rels { to } } }
} } }
"""


TOP = """
query($v: String!) { version(ref: $v) { annotations(instance: "syn") {
  all: topBodies { body count } tbars: topBodies(kind: "PreSyn", n: 1) { body count } } } }
"""


async def test_partners_and_synapses_of_a_body(api: Gql, server: LiveServer) -> None:
    root = _setup(server)
    _synced_segmentation(server, root)
    await api.run(POST, v=root, e=[
        {"pos": [1, 1, 1], "kind": "PreSyn", "rels": [{"rel": "PreSynTo", "to": [40, 1, 1]},
                                                      {"rel": "PreSynTo", "to": [41, 1, 1]}]},
        {"pos": [40, 1, 1], "kind": "PostSyn", "rels": [{"rel": "PostSynTo", "to": [1, 1, 1]}]},
        {"pos": [41, 1, 1], "kind": "PostSyn", "rels": [{"rel": "PostSynTo", "to": [1, 1, 1]}]},
        {"pos": [45, 2, 2], "kind": "PreSyn", "rels": [{"rel": "PreSynTo", "to": [3, 2, 2]}]},
        {"pos": [3, 2, 2], "kind": "PostSyn", "rels": [{"rel": "PostSynTo", "to": [45, 2, 2]}]},
    ])
    one = (await api.run(PARTNERS, v=root, b="1"))["version"]["segmentation"]["body"]
    assert one["partners"] == [{"body": "2", "outgoing": 2, "incoming": 1}]
    assert one["tbars"] == [{"pos": [1, 1, 1]}]
    assert sorted(e["pos"] for e in one["all"]) == [[1, 1, 1], [3, 2, 2]]
    two = (await api.run(PARTNERS, v=root, b="2"))["version"]["segmentation"]["body"]
    assert two["partners"] == [{"body": "1", "outgoing": 1, "incoming": 2}]
    top = (await api.run(TOP, v=root))["version"]["annotations"]
    assert top["all"] == [{"body": "2", "count": 3}, {"body": "1", "count": 2}]
    assert top["tbars"] == [{"body": "1", "count": 1}]  # ties by increasing id
    await api.run(MERGE, v=root)
    merged = (await api.run(PARTNERS, v=root, b="1"))["version"]["segmentation"]["body"]
    assert merged["partners"] == [{"body": "1", "outgoing": 3, "incoming": 3}]  # autapses
    top = (await api.run(TOP, v=root))["version"]["annotations"]
    assert top["all"] == [{"body": "1", "count": 5}]
    await api.error("BAD_REQUEST", PARTNERS.replace('annotations: "syn") { body',
                                                    'annotations: "kv") { body'),
                    v=root, b="1")
