"""Bodies and proofreading edits of the Segmentation type through a real GraphQL client,
against real fly segmentation ingested over REST: body fields against numpy, many bodies in
one query, merge / cleave / renumber / split of a supervoxel through GraphQL read back over
REST, the mutation log, and bad edits refused without changing anything."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from dvidql.codec.sparsevol import encode_rles, mask_runs
from dvidql.config import Settings
from dvidql.datatypes.labelmap import bodies as body_ops
from dvidql.datatypes.labelmap import model as labelmap_model
from dvidql.datatypes.labelmap import ops as labelmap_ops
from dvidql.datatypes.voxels import parse_geometry
from dvidql.resolvers.bodies import MAX_RUNS
from dvidql.schema import schema
from dvidql.schema.context import Context
from dvidql.service import Service
from dvidql.storage.memory import MemoryBlobStore, memory_meta_store
from tests.conftest import LiveServer
from tests.fly_samples import SHAPE, two_samples
from tests.schema.conftest import Gql, commit, http_session, new_version, ws_session

BLOCK = 32

BODY_FIELDS = """id voxelCount supervoxels supervoxelSizes { id voxelCount } blockCount
  boundingBox { minPoint maxPoint } lastModified { mutationId user time app }"""


class Model:
    """Supervoxels and the supervoxel -> body mapping a client expects."""

    def __init__(self, supervoxels: np.ndarray) -> None:
        self.svs = supervoxels
        self.mapping: dict[int, int] = {}

    def bodies(self) -> np.ndarray:
        unique, inverse = np.unique(self.svs, return_inverse=True)
        mapped = np.array([self.mapping.get(v, v) for v in unique.tolist()], np.uint64)
        return mapped[inverse].reshape(self.svs.shape)

    def largest(self, n: int) -> list[int]:
        ids, counts = np.unique(self.svs[self.svs != 0], return_counts=True)
        return [int(v) for v in ids[np.argsort(counts, kind="stable")[::-1][:n]]]

    def expected(self, body: int) -> dict[str, Any] | None:
        """The Body fields numpy predicts (all but lastModified), None if no such body."""
        mask = self.bodies() == body
        if not body or not mask.any():
            return None
        svs, counts = np.unique(self.svs[mask], return_counts=True)
        blocks = np.unique(np.argwhere(mask)[:, ::-1] // BLOCK, axis=0)  # x, y, z
        return {
            "id": str(body), "voxelCount": str(int(mask.sum())),
            "supervoxels": [str(v) for v in svs.tolist()],
            "supervoxelSizes": [{"id": str(v), "voxelCount": str(n)}
                                for v, n in zip(svs.tolist(), counts.tolist(), strict=True)],
            "blockCount": len(blocks),
            "boundingBox": {"minPoint": (blocks.min(axis=0) * BLOCK).tolist(),
                            "maxPoint": (blocks.max(axis=0) * BLOCK + BLOCK - 1).tolist()},
        }


def _without_lastmod(found: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if found is None else {k: v for k, v in found.items() if k != "lastModified"}


def _url(uuid: str, path: str) -> str:
    return f"/api/node/{uuid}/seg/{path}"


async def _rest_bodies(http: httpx.AsyncClient, uuid: str, *, supervoxels: bool = False
                       ) -> np.ndarray:
    """The whole volume read over REST: bodies, or supervoxels as stored."""
    size = "_".join(map(str, SHAPE[::-1]))
    got = await http.get(_url(uuid, f"raw/0_1_2/{size}/0_0_0"),
                         params={"supervoxels": "true"} if supervoxels else None)
    assert got.status_code == 200, got.text
    return np.frombuffer(got.content, "<u8").reshape(SHAPE)


@pytest.fixture
async def rest(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


def _ingest(client: httpx.Client) -> tuple[str, Model]:
    """A repo with labelmap 'seg' (32^3 blocks) holding two real fly segmentation samples,
    ingested by user 'ingester' of app 'test', and a keyvalue 'kv'."""
    root = client.post("/api/repos", json={}).json()["root"]
    made = client.post(f"/api/repo/{root}/instance",
                       json={"typename": "labelmap", "dataname": "seg", "BlockSize": "32"})
    assert made.status_code == 200, made.text
    assert client.post(f"/api/repo/{root}/instance",
                       json={"typename": "keyvalue", "dataname": "kv"}).status_code == 200
    volume = two_samples()
    posted = client.post(_url(root, "raw/0_1_2/128_64_64/0_0_0"),
                         params={"u": "ingester", "app": "test"},
                         content=volume.astype("<u8").tobytes())
    assert posted.status_code == 200, posted.text
    return root, Model(volume)


@pytest.fixture
def seg(client: httpx.Client) -> tuple[str, Model]:
    return _ingest(client)


BODIES = """
query($v: String!, $ids: [UInt64!]!, $one: UInt64!, $missing: UInt64!) { version(ref: $v) {
  segmentation(instance: "seg") {
    maxLabel nextLabel
    one: body(id: $one) { ...B }
    missing: body(id: $missing) { id }
    background: body(id: 0) { id }
    bodies(ids: $ids) { ...B }
    supervoxel(id: $one) { id voxelCount blockCount boundingBox { minPoint maxPoint }
                           body { id voxelCount } }
    noSupervoxel: supervoxel(id: $missing) { id } } } }
""".replace("...B", BODY_FIELDS)


async def test_body_fields_match_numpy(api: Gql, server: LiveServer, rest: httpx.AsyncClient,
                                       seg: tuple[str, Model]) -> None:
    root, model = seg
    labels = model.largest(6)
    missing = int(model.svs.max()) + 10
    ids = [*labels, missing, labels[0], 2**64 - 1]
    found = (await api.run(BODIES, v=root, ids=[str(i) for i in ids], one=str(labels[0]),
                           missing=str(missing)))["version"]["segmentation"]
    top = int(model.svs.max())
    assert found["maxLabel"] == str(top) and found["nextLabel"] == str(top + 1)
    assert found["missing"] is None and found["background"] is None
    assert found["noSupervoxel"] is None
    assert [_without_lastmod(b) for b in found["bodies"]] == [model.expected(i) for i in ids]
    assert found["bodies"][0] == found["bodies"][-2] == found["one"]
    lastmod = (await rest.get(_url(root, f"lastmod/{labels[0]}"))).json()
    for body in found["bodies"]:
        if body is not None:
            assert body["lastModified"] == {
                "mutationId": str(lastmod["mutation id"]), "user": "ingester",
                "time": lastmod["last mod time"], "app": "test"}
    # the REST sizes of the same version agree
    info = (await rest.get(_url(root, f"sparsevol-size/{labels[0]}"))).json()
    assert found["one"]["blockCount"] == info["numblocks"]
    assert found["one"]["boundingBox"] == {"minPoint": info["minvoxel"],
                                           "maxPoint": info["maxvoxel"]}
    sv = found["supervoxel"]  # unmerged: the supervoxel is its own body
    assert sv["body"] == {"id": sv["id"], "voxelCount": sv["voxelCount"]}
    shared = ("id", "voxelCount", "blockCount", "boundingBox")
    assert {k: sv[k] for k in shared} == {k: found["one"][k] for k in shared}


async def test_many_bodies_in_one_query(api: Gql, server: LiveServer,
                                        seg: tuple[str, Model]) -> None:
    """20 aliased body fields and a list of 60 ids (some missing, some repeated) in one
    query, over HTTP and WebSocket."""
    root, model = seg
    labels = model.largest(40)
    singles = labels[:20]
    listed = [*labels, *range(10**9, 10**9 + 10), *labels[:10]]
    aliased = "\n".join(f"b{i}: body(id: \"{label}\") {{ {BODY_FIELDS} }}"
                        for i, label in enumerate(singles))
    query = f"""query($v: String!, $ids: [UInt64!]!) {{ version(ref: $v) {{
        segmentation(instance: "seg") {{ {aliased}
          bodies(ids: $ids) {{ {BODY_FIELDS} }} }} }} }}"""
    for session in ("http", "ws"):
        if session == "http":
            found = (await api.run(query, v=root, ids=[str(i) for i in listed]))
        else:
            async with ws_session(server) as ws:
                found = await ws.run(query, v=root, ids=[str(i) for i in listed])
        seg_found = found["version"]["segmentation"]
        for i, label in enumerate(singles):
            assert _without_lastmod(seg_found[f"b{i}"]) == model.expected(label)
            assert seg_found[f"b{i}"]["lastModified"]["user"] == "ingester"
        assert [_without_lastmod(b) for b in seg_found["bodies"]] == \
            [model.expected(i) for i in listed]


MERGE = """
mutation($v: String!, $t: UInt64!, $m: [UInt64!]!) {
  mergeBodies(version: $v, instance: "seg", target: $t, merged: $m, user: "alice",
              app: "neu3") {
    mutationId target merged body { ...B } } }
""".replace("...B", BODY_FIELDS)
CLEAVE = """
mutation($v: String!, $b: UInt64!, $s: [UInt64!]!) {
  cleaveBody(version: $v, instance: "seg", body: $b, supervoxels: $s, user: "bob") {
    mutationId original cleavedLabel cleavedBody { ...B } remainingBody { ...B }
  } }
""".replace("...B", BODY_FIELDS)
RENUMBER = """
mutation($v: String!, $p: [RenumberPair!]!) {
  renumberBodies(version: $v, instance: "seg", pairs: $p) {
    mutationId newLabels bodies { ...B } } }
""".replace("...B", BODY_FIELDS)
LOG = """
query($v: String!, $since: UInt64!, $limit: Int!) { version(ref: $v) {
  segmentation(instance: "seg") {
    mutations(since: $since, limit: $limit) {
      mutationId action user app timestamp version record } } } }
"""
STATE = """
query($v: String!, $ids: [UInt64!]!) { version(ref: $v) {
  segmentation(instance: "seg") { maxLabel nextLabel bodies(ids: $ids) { ...B }
    mutations { mutationId } } }
  repo(uuid: $v) { mutationId } }
""".replace("...B", BODY_FIELDS)


async def _log(api: Gql, uuid: str, since: int | str = 0, limit: int = 1000
               ) -> list[dict[str, Any]]:
    found = await api.run(LOG, v=uuid, since=str(since), limit=limit)
    return found["version"]["segmentation"]["mutations"]  # type: ignore[no-any-return]


async def test_merge_cleave_renumber(api: Gql, rest: httpx.AsyncClient,
                                     seg: tuple[str, Model]) -> None:
    root, model = seg
    a, b, c, d = model.largest(4)
    ingest = (await _log(api, root))[-1]
    assert ingest["action"] == "post-blocks" and ingest["user"] == "ingester"

    merged = (await api.run(MERGE, v=root, t=str(a), m=[str(b), str(c), str(b)])
              )["mergeBodies"]
    model.mapping.update({b: a, c: a})
    assert merged["target"] == str(a) and merged["merged"] == [str(b), str(c)]
    assert _without_lastmod(merged["body"]) == model.expected(a)
    assert merged["body"]["lastModified"]["mutationId"] == merged["mutationId"]
    assert merged["body"]["lastModified"]["user"] == "alice"
    assert merged["body"]["lastModified"]["app"] == "neu3"
    assert np.array_equal(await _rest_bodies(rest, root), model.bodies())  # REST sees the merge
    mapped = await rest.request("GET", _url(root, "mapping"), json=[b, c, d])
    assert mapped.json() == [a, a, d]
    after = (await api.run(STATE, v=root, ids=[str(a), str(b), str(c)]))
    assert [_without_lastmod(x) for x in after["version"]["segmentation"]["bodies"]] == \
        [model.expected(a), None, None]

    cleaved = (await api.run(CLEAVE, v=root, b=str(a), s=[str(c), str(b)]))["cleaveBody"]
    new = int(cleaved["cleavedLabel"])
    assert new > int(model.svs.max()) and cleaved["original"] == str(a)
    model.mapping.update({b: new, c: new})
    assert _without_lastmod(cleaved["cleavedBody"]) == model.expected(new)
    assert _without_lastmod(cleaved["remainingBody"]) == model.expected(a)
    assert cleaved["cleavedBody"]["lastModified"]["user"] == "bob"
    assert cleaved["remainingBody"]["lastModified"]["mutationId"] == cleaved["mutationId"]
    assert np.array_equal(await _rest_bodies(rest, root), model.bodies())
    assert (await rest.get(_url(root, f"supervoxels/{new}"))).json() == sorted([b, c])

    renumbered = (await api.run(RENUMBER, v=root, p=[
        {"newLabel": "555", "oldLabel": str(d)}, {"newLabel": str(2**40), "oldLabel": str(new)}]
    ))["renumberBodies"]
    model.mapping.update({d: 555, b: 2**40, c: 2**40})
    assert renumbered["newLabels"] == ["555", str(2**40)]
    assert [_without_lastmod(x) for x in renumbered["bodies"]] == \
        [model.expected(555), model.expected(2**40)]
    assert np.array_equal(await _rest_bodies(rest, root), model.bodies())
    state = (await api.run(STATE, v=root, ids=[str(d), str(new), "555"]))
    seg_state = state["version"]["segmentation"]
    assert [_without_lastmod(x) for x in seg_state["bodies"]] == \
        [None, None, model.expected(555)]
    assert seg_state["maxLabel"] == str(2**40)

    # the log since the ingest: the three edits, typed and whole
    log = await _log(api, root, ingest["mutationId"])
    assert [r["action"] for r in log] == ["merge", "cleave", "renumber"]
    assert [r["mutationId"] for r in log] == [merged["mutationId"], cleaved["mutationId"],
                                              renumbered["mutationId"]]
    merge_record, cleave_record, renumber_record = log
    assert merge_record["user"] == "alice" and merge_record["app"] == "neu3"
    assert merge_record["version"] == root and merge_record["timestamp"]
    assert merge_record["record"]["Target"] == a
    assert merge_record["record"]["Labels"] == [b, c]
    assert cleave_record["user"] == "bob" and cleave_record["app"] == ""
    assert cleave_record["record"]["OrigLabel"] == a
    assert cleave_record["record"]["CleavedLabel"] == new
    assert cleave_record["record"]["CleavedSupervoxels"] == sorted([b, c])
    assert renumber_record["record"]["Labels"] == [
        {"NewLabel": 555, "OrigLabel": d}, {"NewLabel": 2**40, "OrigLabel": new}]
    # the same as REST's mutations endpoint, and paging with since and limit
    rest_log = (await rest.get(_url(root, "mutations"))).json()
    assert [r["record"] for r in await _log(api, root)] == rest_log
    first = await _log(api, root, ingest["mutationId"], limit=1)
    assert first == log[:1]
    assert await _log(api, root, first[0]["mutationId"], limit=2) == log[1:]
    assert await _log(api, root, renumbered["mutationId"]) == []


async def test_edits_on_a_child_version(api: Gql, rest: httpx.AsyncClient,
                                        seg: tuple[str, Model]) -> None:
    """Edits land at the version named and stay off its parent, whose log shows none of
    them; the committed parent refuses edits."""
    root, model = seg
    a, b = model.largest(2)
    await commit(api, root)
    child = await new_version(api, root)
    merged = (await api.run(MERGE, v=child, t=str(a), m=[str(b)]))["mergeBodies"]
    edited = Model(model.svs)
    edited.mapping[b] = a
    assert _without_lastmod(merged["body"]) == edited.expected(a)
    assert np.array_equal(await _rest_bodies(rest, child), edited.bodies())
    assert np.array_equal(await _rest_bodies(rest, root), model.bodies())
    parent = (await api.run(STATE, v=root, ids=[str(a), str(b)]))["version"]["segmentation"]
    assert [_without_lastmod(x) for x in parent["bodies"]] == \
        [model.expected(a), model.expected(b)]
    assert [r["action"] for r in await _log(api, child)] == ["post-blocks", "merge"]
    assert [r["action"] for r in await _log(api, root)] == ["post-blocks"]
    error = await api.error("VERSION_LOCKED", MERGE, v=root, t=str(a), m=[str(b)])
    assert "committed" in error["message"]


async def test_bad_edits_change_nothing(api: Gql, rest: httpx.AsyncClient,
                                        seg: tuple[str, Model]) -> None:
    root, model = seg
    a, b, c = model.largest(3)
    missing = int(model.svs.max()) + 10
    ids = [str(v) for v in (a, b, c, missing)]
    before = await api.run(STATE, v=root, ids=ids)
    voxels = await _rest_bodies(rest, root)

    cases: list[tuple[str, str, str, dict[str, Any]]] = [
        ("NOT_FOUND", "no body", MERGE, {"t": str(a), "m": [str(missing)]}),
        ("NOT_FOUND", "no body", MERGE, {"t": str(missing), "m": [str(a)]}),
        ("BAD_REQUEST", "itself", MERGE, {"t": str(a), "m": [str(a)]}),
        ("BAD_REQUEST", "at least one body", MERGE, {"t": str(a), "m": []}),
        ("BAD_REQUEST", "background", MERGE, {"t": str(a), "m": ["0"]}),
        ("BAD_REQUEST", "UInt64", MERGE, {"t": str(a), "m": ["-1"]}),
        ("BAD_REQUEST", "every supervoxel", CLEAVE, {"b": str(a), "s": [str(a)]}),
        ("BAD_REQUEST", "not in body", CLEAVE, {"b": str(a), "s": [str(b)]}),
        ("NOT_FOUND", "no body", CLEAVE, {"b": str(missing), "s": [str(a)]}),
        ("BAD_REQUEST", "at least one supervoxel", CLEAVE, {"b": str(a), "s": []}),
        ("BAD_REQUEST", "already a body", RENUMBER,
         {"p": [{"newLabel": str(b), "oldLabel": str(a)}]}),
        ("NOT_FOUND", "no body", RENUMBER,
         {"p": [{"newLabel": "777", "oldLabel": str(missing)}]}),
        ("BAD_REQUEST", "once", RENUMBER, {"p": [{"newLabel": "777", "oldLabel": str(a)},
                                                 {"newLabel": "777", "oldLabel": str(b)}]}),
        ("BAD_REQUEST", "at least one", RENUMBER, {"p": []}),
    ]
    for code, words, query, variables in cases:
        error = await api.error(code, query, v=root, **variables)
        assert words in error["message"], (words, error)
    other = MERGE.replace('instance: "seg"', 'instance: "kv"')
    error = await api.error("BAD_REQUEST", other, v=root, t=str(a), m=[str(b)])
    assert "not labelmap" in error["message"]
    error = await api.error("NOT_FOUND", LOG.replace('"seg"', '"nope"'), v=root, since="0",
                            limit=10)
    assert "no data instance" in error["message"]
    error = await api.error("BAD_REQUEST", LOG, v=root, since="0", limit=0)
    assert "limit" in error["message"]
    assert await api.run(STATE, v=root, ids=ids) == before
    assert np.array_equal(await _rest_bodies(rest, root), voxels)


async def test_one_websocket_sees_its_own_edits(server: LiveServer,
                                                seg: tuple[str, Model]) -> None:
    """A WebSocket connection keeps one context for all its operations: bodies read after
    an edit on it are read again, not remembered."""
    root, model = seg
    a, b = model.largest(2)
    query = """query($v: String!, $ids: [UInt64!]!) { version(ref: $v) {
        segmentation(instance: "seg") { bodies(ids: $ids) { ...B } } } }""".replace(
        "...B", BODY_FIELDS)
    async with ws_session(server) as ws:
        before = (await ws.run(query, v=root, ids=[str(a), str(b)]))
        assert [_without_lastmod(x) for x in before["version"]["segmentation"]["bodies"]] == \
            [model.expected(a), model.expected(b)]
        await ws.run(MERGE, v=root, t=str(a), m=[str(b)])
        model.mapping[b] = a
        after = (await ws.run(query, v=root, ids=[str(a), str(b)]))
        assert [_without_lastmod(x) for x in after["version"]["segmentation"]["bodies"]] == \
            [model.expected(a), None]


async def test_read_only_server_refuses_edits(make_server: Any) -> None:
    first: LiveServer = make_server()
    with httpx.Client(base_url=first.url, timeout=30) as http:
        root, model = _ingest(http)
    first.stop()
    live: LiveServer = make_server("--read-only", like=first)
    a, b = model.largest(2)
    async with http_session(live) as api:
        for query, variables in ((MERGE, {"t": str(a), "m": [str(b)]}),
                                 (CLEAVE, {"b": str(a), "s": [str(a)]}),
                                 (RENUMBER, {"p": [{"newLabel": "9", "oldLabel": str(a)}]}),
                                 (SPLIT, {"s": str(a), "runs": _runs(model.svs == a)[:1]})):
            await api.error("READ_ONLY", query, v=root, **variables)
        found = await api.run(STATE, v=root, ids=[str(a), str(b)])
        assert [_without_lastmod(x) for x in found["version"]["segmentation"]["bodies"]] == \
            [model.expected(a), model.expected(b)]


# ----- splits of supervoxels ------------------------------------------------------------------

SPLIT = """
mutation($v: String!, $s: UInt64!, $runs: [SplitRun!], $rles: Base64, $split: UInt64,
         $remain: UInt64) {
  splitSupervoxel(version: $v, instance: "seg", supervoxel: $s, runs: $runs, rles: $rles,
                  splitSupervoxel: $split, remainSupervoxel: $remain, user: "dana",
                  app: "neu3") {
    mutationId supervoxel splitSupervoxel remainSupervoxel body { ...B } } }
""".replace("...B", BODY_FIELDS)


def _runs(mask: np.ndarray) -> list[dict[str, int]]:
    """The mask's voxels as the mutation's list of x runs."""
    return [dict(zip(("x", "y", "z", "length"), run, strict=True))
            for run in mask_runs(mask).tolist()]


def _rles(mask: np.ndarray) -> str:
    """The mask's voxels as DVID's binary rles sparse volume, base64."""
    return base64.b64encode(encode_rles(mask_runs(mask))).decode()


async def _check_supervoxels(rest: httpx.AsyncClient, uuid: str, model: Model,
                             body: int) -> None:
    """REST reads at ``uuid`` agree with the model: supervoxels and bodies voxel for voxel,
    the body's supervoxels, their sizes, and the supervoxel at a voxel of each."""
    assert np.array_equal(await _rest_bodies(rest, uuid, supervoxels=True), model.svs)
    assert np.array_equal(await _rest_bodies(rest, uuid), model.bodies())
    members, counts = np.unique(model.svs[model.bodies() == body], return_counts=True)
    assert (await rest.get(_url(uuid, f"supervoxels/{body}"))).json() == members.tolist()
    sizes = await rest.request("GET", _url(uuid, "sizes"), params={"supervoxels": "true"},
                               json=members.tolist())
    assert sizes.json() == counts.tolist()
    points = [np.argwhere(model.svs == sv)[0][::-1].tolist() for sv in members.tolist()]
    labels = await rest.request("GET", _url(uuid, "labels"), params={"supervoxels": "true"},
                                json=points)
    assert labels.json() == members.tolist()


async def test_split_supervoxel(api: Gql, server: LiveServer, rest: httpx.AsyncClient,
                                seg: tuple[str, Model]) -> None:
    """A split given as runs over HTTP, then the rest of it given as DVID's rles at a chosen
    id over WebSocket: both parts stay in the body, voxels and sizes follow, the old ids
    map to no body, and the log has each split whole."""
    root, model = seg
    a, b = model.largest(2)
    await api.run(MERGE, v=root, t=str(a), m=[str(b)])
    model.mapping[b] = a
    part = (model.svs == b) & (np.arange(SHAPE[2]) < 70)[None, None, :]
    assert part.any() and ((model.svs == b) & ~part).any()
    top = int(model.svs.max())

    found = (await api.run(SPLIT, v=root, s=str(b), runs=_runs(part)))["splitSupervoxel"]
    split, remain = int(found["splitSupervoxel"]), int(found["remainSupervoxel"])
    assert found["supervoxel"] == str(b)
    assert split > top and remain > top and split != remain
    model.svs[part] = split
    model.svs[model.svs == b] = remain
    model.mapping.update({split: a, remain: a})
    assert _without_lastmod(found["body"]) == model.expected(a)
    lastmod = found["body"]["lastModified"]
    assert (lastmod["mutationId"], lastmod["user"], lastmod["app"]) == \
        (found["mutationId"], "dana", "neu3")
    await _check_supervoxels(rest, root, model, a)
    mapped = await rest.request("GET", _url(root, "mapping"), json=[b, split, remain])
    assert mapped.json() == [0, a, a]
    (record,) = [r for r in await _log(api, root) if r["action"] == "split-supervoxel"]
    assert record["mutationId"] == found["mutationId"]
    assert (record["user"], record["app"]) == ("dana", "neu3")
    assert {k: record["record"][k] for k in ("Supervoxel", "Body", "SplitSupervoxel",
                                             "RemainSupervoxel", "SplitSize", "RemainSize")} \
        == {"Supervoxel": b, "Body": a, "SplitSupervoxel": split, "RemainSupervoxel": remain,
            "SplitSize": int(part.sum()), "RemainSize": int((model.svs == remain).sum())}
    assert record["record"] in (await rest.get(_url(root, "mutations"))).json()
    error = await api.error("NOT_FOUND", SPLIT, v=root, s=str(b), runs=_runs(part))
    assert "was split" in error["message"]  # its id is retired

    chosen = top + 1000
    left = model.svs == remain
    async with ws_session(server) as ws:
        found = (await ws.run(SPLIT, v=root, s=str(remain), rles=_rles(left),
                              split=str(chosen)))["splitSupervoxel"]
    assert found["splitSupervoxel"] == str(chosen) and found["remainSupervoxel"] is None
    model.svs[left] = chosen
    model.mapping[chosen] = a
    assert _without_lastmod(found["body"]) == model.expected(a)
    await _check_supervoxels(rest, root, model, a)
    state = (await api.run(STATE, v=root, ids=[str(a)]))["version"]["segmentation"]
    assert state["maxLabel"] == str(chosen)  # a chosen id is never handed out again
    assert state["mutations"][-1]["mutationId"] == found["mutationId"]


async def test_bad_splits_change_nothing(api: Gql, rest: httpx.AsyncClient,
                                         seg: tuple[str, Model]) -> None:
    root, model = seg
    a, b = model.largest(2)
    missing = int(model.svs.max()) + 10
    ids = [str(v) for v in (a, b, missing)]
    of_a, of_b = _runs(model.svs == a), _runs(model.svs == b)
    too_many = np.tile(np.array([[0, 0, 0, 1]], np.int32), (MAX_RUNS + 1, 1))
    before = await api.run(STATE, v=root, ids=ids)

    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("NOT_FOUND", "nothing was split", {"s": str(missing), "runs": of_a}),
        ("BAD_REQUEST", "outside", {"s": str(a), "runs": of_b}),
        ("BAD_REQUEST", "outside", {"s": str(a), "runs": [
            {"x": 120, "y": 60, "z": 60, "length": 20}]}),  # past the volume's end
        ("BAD_REQUEST", "length 0", {"s": str(a), "runs": [{**of_a[0], "length": 0}]}),
        ("BAD_REQUEST", "no runs", {"s": str(a), "runs": []}),
        ("BAD_REQUEST", "exactly one", {"s": str(a)}),
        ("BAD_REQUEST", "exactly one", {"s": str(a), "runs": of_a,
                                        "rles": _rles(model.svs == a)}),
        ("BAD_REQUEST", "rles", {"s": str(a), "rles": base64.b64encode(b"\0\3").decode()}),
        ("BAD_REQUEST", "base64", {"s": str(a), "rles": "not base64!"}),
        ("BAD_REQUEST", "REST", {"s": str(a), "rles": base64.b64encode(
            encode_rles(too_many)).decode()}),
        ("GRAPHQL_VALIDATION", "length", {"s": str(a), "runs": [{"x": 1, "y": 2, "z": 3}]}),
        ("BAD_REQUEST", "UInt64", {"s": "-1", "runs": of_a}),
        ("BAD_REQUEST", "in use", {"s": str(a), "runs": of_a[:1], "split": str(b)}),
        ("BAD_REQUEST", "in use", {"s": str(a), "runs": of_a[:1], "remain": str(b)}),
        ("BAD_REQUEST", "differ", {"s": str(a), "runs": of_a[:1], "split": "900001",
                                   "remain": "900001"}),
    ]
    for code, words, variables in cases:
        error = await api.error(code, SPLIT, v=root, **variables)
        assert words in error["message"], (words, error)
    other = SPLIT.replace('instance: "seg"', 'instance: "kv"')
    error = await api.error("BAD_REQUEST", other, v=root, s=str(a), runs=of_a)
    assert "not labelmap" in error["message"]
    assert await api.run(STATE, v=root, ids=ids) == before
    assert np.array_equal(await _rest_bodies(rest, root, supervoxels=True), model.svs)

    await commit(api, root)
    committed = await api.run(STATE, v=root, ids=ids)
    error = await api.error("VERSION_LOCKED", SPLIT, v=root, s=str(a), runs=of_a[:1])
    assert "committed" in error["message"]
    assert await api.run(STATE, v=root, ids=ids) == committed
    assert np.array_equal(await _rest_bodies(rest, root, supervoxels=True), model.svs)


async def test_split_can_be_disabled(make_server: Any) -> None:
    live: LiveServer = make_server(env={"DVIDQL_ALLOW_LABELMAP_SPLIT": "false"})
    with httpx.Client(base_url=live.url, timeout=30) as http:
        root, model = _ingest(http)
    a = model.largest(1)[0]
    async with http_session(live) as api:
        before = await api.run(STATE, v=root, ids=[str(a)])
        error = await api.error("FORBIDDEN", SPLIT, v=root, s=str(a),
                                runs=_runs(model.svs == a)[:1])
        assert "disabled" in error["message"]
        assert await api.run(STATE, v=root, ids=[str(a)]) == before


# ----- in process: the loaders batch ---------------------------------------------------------

@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[Service]:
    svc = Service(Settings(data=tmp_path), memory_meta_store(), MemoryBlobStore())
    yield svc
    await svc.close()


async def test_body_fields_load_in_one_batch(service: Service,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """20 aliased body fields, a list of 30 more (repeats and missing ids among them) and
    the lastModified of each: one index read and one lastmod read in all."""
    caller = service.caller(None)
    repo = await service.repos.create_repo(alias="batch")
    node = repo.nodes[repo.root_version]
    await service.create_instance(caller, repo, node, {"typename": "labelmap",
                                                       "dataname": "seg", "BlockSize": "32"})
    volume = two_samples()
    handle = service.handle(repo.root, "seg", caller, write=True)
    box = parse_geometry("0_1_2", "128_64_64", "0_0_0").box
    await labelmap_ops.write_label_box(handle, box, volume,
                                       labelmap_model.ModInfo("ingester", "test"))
    model = Model(volume)

    calls: dict[str, list[list[int]]] = {"indices": [], "lastmod": []}
    indices_of, read_lastmod = body_ops.indices_of, labelmap_model.read_lastmod

    async def counted_indices(h: Any, labels: Any, **kwargs: Any) -> Any:
        calls["indices"].append(list(labels))
        return await indices_of(h, labels, **kwargs)

    async def counted_lastmod(h: Any, labels: Any) -> Any:
        calls["lastmod"].append(list(labels))
        return await read_lastmod(h, labels)

    monkeypatch.setattr(body_ops, "indices_of", counted_indices)
    monkeypatch.setattr(labelmap_model, "read_lastmod", counted_lastmod)
    labels = model.largest(45)
    singles, listed = labels[:20], [*labels[20:], 10**9, labels[20], labels[0]]
    aliased = "\n".join(f"b{i}: body(id: \"{label}\") {{ {BODY_FIELDS} }}"
                        for i, label in enumerate(singles))
    query = f"""query($v: String!, $ids: [UInt64!]!) {{ version(ref: $v) {{
        segmentation(instance: "seg") {{ {aliased}
          bodies(ids: $ids) {{ {BODY_FIELDS} }} }} }} }}"""
    context = Context(service=service, caller=caller)
    result = await schema.execute(query, variable_values={"v": repo.root,
                                                          "ids": [str(v) for v in listed]},
                                  context_value=context)
    assert result.errors is None, result.errors
    found = result.data["version"]["segmentation"]  # type: ignore[index]
    assert [_without_lastmod(found[f"b{i}"]) for i in range(20)] == \
        [model.expected(v) for v in singles]
    assert [_without_lastmod(b) for b in found["bodies"]] == [model.expected(v) for v in listed]
    assert all(b["lastModified"]["user"] == "ingester" for b in found["bodies"] if b)
    distinct = sorted(set(labels) | {10**9})
    assert [sorted(c) for c in calls["indices"]] == [distinct]  # one read, each id once
    assert [sorted(c) for c in calls["lastmod"]] == [sorted(labels)]
