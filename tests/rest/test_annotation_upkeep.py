"""annotation upkeep over HTTP: verbose relationships, POST labels and POST reload (check and
rebuild of the tag and inbound-relationship indices after they are corrupted on purpose)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import orjson
import pytest

from dvidql.config import Settings
from dvidql.datatypes.annotation import upkeep
from dvidql.datatypes.annotation.keys import inbound_tkey, tag_tkey
from dvidql.datatypes.base import DataHandle, ModInfo
from dvidql.service import Service
from dvidql.storage.base import Txn
from tests.conftest import LiveServer
from tests.rest.conftest import InProcess, child
from tests.rest.test_annotation import Model, random_step

Element = dict[str, Any]


def url(uuid: str, path: str, name: str = "syn") -> str:
    return f"/api/node/{uuid}/{name}/{path}"


def ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, response.text
    return response


def new_annotation(http: httpx.Client, block: int = 8) -> str:
    root = http.post("/api/repos", json={"alias": "upkeep"}).json()["root"]
    ok(http.post(f"/api/repo/{root}/instance", json={
        "typename": "annotation", "dataname": "syn", "BlockSize": str(block)}))
    return root


@pytest.fixture
def root(client: httpx.Client) -> str:
    return new_annotation(client)


def synced_repo(http: httpx.Client) -> str:
    """A labelmap 'seg' of one 64^3 block, supervoxel (= body) 1 where x < 32 and 2 elsewhere,
    followed by an annotation instance 'syn' of the same block size."""
    root = http.post("/api/repos", json={"alias": "synced"}).json()["root"]
    for body in ({"typename": "labelmap", "dataname": "seg"},
                 {"typename": "annotation", "dataname": "syn"}):
        ok(http.post(f"/api/repo/{root}/instance", json=body))
    svs = np.where(np.arange(64) < 32, 1, 2).astype("<u8")
    volume = np.broadcast_to(svs[None, None, :], (64, 64, 64))
    ok(http.post(url(root, "raw/0_1_2/64_64_64/0_0_0", "seg"), content=volume.tobytes()))
    ok(http.post(url(root, "sync"), json={"sync": "seg"}))
    return root


def elements(http: httpx.Client, uuid: str) -> list[Element]:
    blocks = ok(http.get(url(uuid, "all-elements"))).json()
    return sorted((e for items in blocks.values() for e in items), key=lambda e: e["Pos"])


# ----- relationships=verbose ---------------------------------------------------------------

PRE = {"Pos": [1, 1, 1], "Kind": "PreSyn", "Tags": ["syn"], "Prop": {"conf": "0.9"},
       "Rels": [{"Rel": "PreSynTo", "To": [30, 1, 1]}, {"Rel": "PreSynTo", "To": [2, 2, 2]},
                {"Rel": "PreSynTo", "To": [50, 50, 50]}]}  # the last points at nothing
FAR = {"Pos": [30, 1, 1], "Kind": "PostSyn", "Tags": ["checked"], "Prop": {"conf": "0.5"},
       "Rels": [{"Rel": "PostSynTo", "To": [1, 1, 1]}]}
NEAR = {"Pos": [2, 2, 2], "Kind": "PostSyn", "Tags": [], "Prop": {}, "Rels": []}


def test_verbose_tag_inlines_partners(client: httpx.Client, root: str) -> None:
    ok(client.post(url(root, "elements"), json=[PRE, FAR, NEAR]))
    got = ok(client.get(url(root, "tag/syn"), params={"relationships": "verbose"})).json()
    assert got == [{**PRE, "Rels": [
        {"Rel": "PreSynTo", "To": [30, 1, 1], "Kind": "PostSyn", "Tags": ["checked"],
         "Prop": {"conf": "0.5"}},
        {"Rel": "PreSynTo", "To": [2, 2, 2], "Kind": "PostSyn", "Prop": {}},
        {"Rel": "PreSynTo", "To": [50, 50, 50]}]}]  # no element there: Rel and To only
    assert ok(client.get(url(root, "tag/syn?relationships=true"))).json() == [PRE]
    assert ok(client.get(url(root, "tag/checked?relationships=VERBOSE"))).json() == [
        {**FAR, "Rels": [{"Rel": "PostSynTo", "To": [1, 1, 1], "Kind": "PreSyn",
                          "Tags": ["syn"], "Prop": {"conf": "0.9"}}]}]
    # the partner moves and is deleted: verbose answers follow at once
    ok(client.post(url(root, "move/30_1_1/31_1_1")))
    ok(client.delete(url(root, "element/2_2_2")))
    (pre,) = ok(client.get(url(root, "tag/syn?relationships=verbose"))).json()
    assert [r.get("Kind") for r in pre["Rels"]] == ["PostSyn", None]
    assert pre["Rels"][0]["To"] == [31, 1, 1]
    assert client.get(url(root, "tag/syn?relationships=some")).status_code == 400


def test_verbose_label_inlines_partners(client: httpx.Client) -> None:
    uuid = synced_repo(client)
    pre = {"Pos": [10, 10, 10], "Kind": "PreSyn", "Tags": [], "Prop": {"conf": "0.9"},
           "Rels": [{"Rel": "PreSynTo", "To": [40, 10, 10]},
                    {"Rel": "PreSynTo", "To": [100, 10, 10]}]}
    post = {"Pos": [40, 10, 10], "Kind": "PostSyn", "Tags": ["checked"],
            "Prop": {"conf": "0.5"}, "Rels": [{"Rel": "PostSynTo", "To": [10, 10, 10]}]}
    ok(client.post(url(uuid, "elements"), json=[pre, post]))
    assert ok(client.get(url(uuid, "label/1?relationships=verbose"))).json() == [
        {**pre, "Rels": [{"Rel": "PreSynTo", "To": [40, 10, 10], "Kind": "PostSyn",
                          "Tags": ["checked"], "Prop": {"conf": "0.5"}},
                         {"Rel": "PreSynTo", "To": [100, 10, 10]}]}]
    assert ok(client.get(url(uuid, "label/2?relationships=verbose"))).json() == [
        {**post, "Rels": [{"Rel": "PostSynTo", "To": [10, 10, 10], "Kind": "PreSyn",
                           "Prop": {"conf": "0.9"}}]}]
    assert ok(client.get(url(uuid, "label/2?relationships=true"))).json() == [post]
    assert ok(client.get(url(uuid, "label/3?relationships=verbose"))).json() == []


# ----- POST labels -------------------------------------------------------------------------

def test_labels_add_what_is_missing(client: httpx.Client, root: str) -> None:
    stored = {"Pos": [1, 1, 1], "Kind": "PreSyn", "Tags": ["old"], "Prop": {},
              "Rels": [{"Rel": "PreSynTo", "To": [20, 1, 1]}]}
    first = ok(client.post(url(root, "elements"), json=[stored]))
    new = {"Pos": [20, 1, 1], "Kind": "PostSyn", "Tags": ["new"], "Prop": {"by": "x"},
           "Rels": [{"Rel": "PostSynTo", "To": [1, 1, 1]}]}
    ignored = {"Pos": [5, 5, 5], "Kind": "Note", "Tags": [], "Prop": {}, "Rels": []}
    body = {"7": orjson.dumps([{"Pos": [1, 1, 1], "Kind": "Note", "Tags": ["lost"]},
                               {**new, "Kind": "Unknown"}, new]).decode(),
            "8": orjson.dumps([new]).decode(),
            "0": orjson.dumps([ignored]).decode()}  # label 0 is ignored, as in DVID
    got = ok(client.post(url(root, "labels"), json=body))
    assert got.json() == {"Added": 1, "Present": 1}  # distinct positions; not synced
    assert int(got.headers["X-Mutation-Id"]) > int(first.headers["X-Mutation-Id"])
    assert elements(client, root) == [stored, new]  # the stored one keeps its Rels and Tags
    assert ok(client.get(url(root, "tag/new"))).json() == [
        {k: v for k, v in new.items() if k != "Rels"}]
    assert ok(client.get(url(root, "tag/lost"))).json() == []
    again = ok(client.post(url(root, "labels"), json=body))
    assert again.json() == {"Added": 0, "Present": 2}
    assert elements(client, root) == [stored, new]
    assert ok(client.post(url(root, "labels"), json={})).json() == {"Added": 0, "Present": 0}


def test_labels_report_other_bodies_when_synced(client: httpx.Client) -> None:
    uuid = synced_repo(client)
    in_1 = [{"Pos": [3, 3, 3], "Kind": "PreSyn"}, {"Pos": [4, 3, 3], "Kind": "PreSyn"}]
    in_2 = [{"Pos": [40, 3, 3], "Kind": "PostSyn"}]
    got = ok(client.post(url(uuid, "labels"), json={
        "1": orjson.dumps([*in_1, *in_2]).decode(),  # in_2 lies in body 2 now
        "2": orjson.dumps(in_2).decode()}))
    assert got.json() == {"Added": 3, "Present": 0, "OtherBody": 1}
    assert [e["Pos"] for e in ok(client.get(url(uuid, "label/1"))).json()] == [
        [3, 3, 3], [4, 3, 3]]
    ok(client.post(url(uuid, "merge", "seg"), json=[1, 2]))  # the view follows segmentation
    assert len(ok(client.get(url(uuid, "label/1"))).json()) == 3
    again = ok(client.post(url(uuid, "labels"), json={"2": orjson.dumps(in_2).decode()}))
    assert again.json() == {"Added": 0, "Present": 1, "OtherBody": 1}
    assert "OtherBody" in client.get(url(uuid, "help")).text


BAD_LABELS: list[tuple[bytes, str]] = [
    (b'{"1": "[]"', "not valid JSON"),
    (b'["[]"]', "JSON object"),
    (b'{"abc": "[]"}', "label 'abc' must be an integer"),
    (b'{"-3": "[]"}', "integer"),
    (b'{"18446744073709551616": "[]"}', "2^64-1"),
    (b'{"5": [{"Pos": [1, 1, 1], "Kind": "Note"}]}', "must be a string"),
    (b'{"5": "[{"}', "label 5: the string is not valid JSON"),
    (b'{"5": "{}"}', "JSON array"),
    (b'{"5": "[{\\"Pos\\": [1, 1, 1]}]"}', "label 5: element 0 lacks Kind"),
    (b'{"5": "[{\\"Pos\\": [1, 1], \\"Kind\\": \\"Note\\"}]"}', "Pos"),
]


def test_bad_labels_change_nothing(client: httpx.Client, root: str) -> None:
    ok(client.post(url(root, "elements"), json=[PRE]))
    before = elements(client, root)
    valid = b'"9": "[{\\"Pos\\": [6, 6, 6], \\"Kind\\": \\"Note\\"}]", '
    for body, words in BAD_LABELS:
        # a valid label first: the post is refused as a whole
        text = b"{" + valid + body[1:] if body.startswith(b'{"') else body
        got = client.post(url(root, "labels"), content=text)
        assert got.status_code == 400, (body, got.text)
        assert words in got.json()["error"], (words, got.json()["error"])
        assert "X-Mutation-Id" not in got.headers
    assert elements(client, root) == before
    assert client.get(url(root, "labels")).status_code == 405


# ----- POST reload -------------------------------------------------------------------------

CLEAN = {"Tags": {"Wrong": 0, "Missing": 0, "Extra": 0},
         "Relationships": {"Wrong": 0, "Missing": 0, "Extra": 0}}


def faults(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    return {index: {k: v for k, v in report[index].items() if k != "Entries"}
            for index in ("Tags", "Relationships")}


def test_edits_keep_indices_exact(client: httpx.Client, root: str) -> None:
    """After many random edits of every kind the indices are what a reload computes."""
    rng = random.Random(11)
    model = Model()
    for _ in range(25):
        random_step(client, root, model, rng)
    report = ok(client.post(url(root, "reload?check=true"))).json()
    assert faults(report) == CLEAN and report["Fixed"] is False
    assert report["Elements"] == len(model.elements) and report["MisplacedElements"] == 0
    assert report["Tags"]["Entries"] > 0 and report["Relationships"]["Entries"] > 0
    fixed = ok(client.post(url(root, "reload")))
    assert fixed.json()["Fixed"] is False and "X-Mutation-Id" not in fixed.headers


def _settings(live: LiveServer) -> Settings:
    """The settings of ``live``'s store, from the command line and environment it got."""
    assert live.store is not None
    options = {"--data": "data", "--meta": "meta", "--blobs": "blobs",
               "--s3-endpoint": "s3_endpoint"}
    args = live.store.args
    given: dict[str, Any] = {options[k]: v for k, v in zip(args[::2], args[1::2], strict=True)}
    given.update({k.removeprefix("DVIDQL_").lower(): v for k, v in live.store.env.items()})
    return Settings(**given)


def corrupt(live: LiveServer, uuid: str, damage: Callable[[DataHandle, Txn], Any]) -> None:
    """Change the stored entries directly, with the server stopped (the embedded store
    serves one process), then serve again."""
    live.stop()

    async def run() -> None:
        service = await Service.open(_settings(live))
        try:
            repo, node = service.repos.resolve(uuid)
            h = service.handle_at(repo, node, service.repos.instance(repo, "syn"),
                                  service.caller(None), write=True)
            async with h.kv.meta.transaction() as txn:
                await damage(h, txn)
        finally:
            await service.close()

    asyncio.run(run())
    live.start()


def test_reload_finds_and_fixes_corruption(make_server: Callable[..., LiveServer]) -> None:
    live = make_server()
    with httpx.Client(base_url=live.url, timeout=30) as http:
        uuid = new_annotation(http)
        ok(http.post(url(uuid, "elements"), json=[
            {"Pos": [1, 1, 1], "Kind": "PreSyn", "Tags": ["t"],
             "Rels": [{"Rel": "PreSynTo", "To": [20, 1, 1]}]},
            {"Pos": [2, 1, 1], "Kind": "Note", "Tags": ["t"]},
            {"Pos": [20, 1, 1], "Kind": "PostSyn", "Tags": ["t"]}]))
        tagged = ok(http.get(url(uuid, "tag/t"))).json()
        assert len(tagged) == 3

    async def damage(h: DataHandle, txn: Txn) -> None:
        one = orjson.dumps([{"Pos": [1, 1, 1], "Kind": "Note", "Tags": ["t"], "Prop": {}}])
        await h.kv.put(txn, h.instance_id, tag_tkey("t", (0, 0, 0)), h.version, one)
        await h.kv.put(txn, h.instance_id, tag_tkey("ghost", (5, 5, 5)), h.version, one)
        h.kv.delete(txn, h.instance_id, inbound_tkey((2, 0, 0)), h.version)

    corrupt(live, uuid, damage)
    with httpx.Client(base_url=live.url, timeout=30) as http:
        assert ok(http.get(url(uuid, "tag/t"))).json() != tagged  # the damage shows
        assert len(ok(http.get(url(uuid, "tag/ghost"))).json()) == 1
        wrong = {"Tags": {"Wrong": 1, "Missing": 0, "Extra": 1},
                 "Relationships": {"Wrong": 0, "Missing": 1, "Extra": 0}}
        checked = ok(http.post(url(uuid, "reload?check=true")))
        assert faults(checked.json()) == wrong and checked.json()["Fixed"] is False
        assert "X-Mutation-Id" not in checked.headers
        assert ok(http.get(url(uuid, "tag/t"))).json() != tagged  # check wrote nothing
        fixed = ok(http.post(url(uuid, "reload?u=keeper")))
        assert faults(fixed.json()) == wrong and fixed.json()["Fixed"] is True
        assert int(fixed.headers["X-Mutation-Id"]) > 0
        assert fixed.json()["Tags"]["Entries"] == 2  # "t" in blocks 0,0,0 and 2,0,0
        assert ok(http.get(url(uuid, "tag/t"))).json() == tagged
        assert ok(http.get(url(uuid, "tag/ghost"))).json() == []
        assert faults(ok(http.post(url(uuid, "reload?check=true"))).json()) == CLEAN
        # the inbound entry is back: deleting the target cleans the relationship to it
        ok(http.delete(url(uuid, "element/20_1_1")))
        assert ok(http.get(url(uuid, "scan"))).json()["Relationships"] == 0


def test_reload_refused_on_committed_versions(client: httpx.Client, root: str) -> None:
    ok(client.post(url(root, "elements"), json=[PRE, FAR, NEAR]))
    kid = child(client, root)  # commits root
    refused = client.post(url(root, "reload"))
    assert refused.status_code == 409 and "committed" in refused.json()["error"]
    report = ok(client.post(url(root, "reload?check=true"))).json()  # a check only reads
    assert faults(report) == CLEAN and report["Elements"] == 3
    assert client.post(url(root, "labels"), json={
        "1": orjson.dumps([{"Pos": [9, 9, 9], "Kind": "Note"}]).decode()}).status_code == 409
    assert ok(client.post(url(kid, "reload"))).json()["Fixed"] is False
    assert client.post(url(root, "reload?check=maybe")).status_code == 400
    assert client.post(url(kid, "reload?inmemory=no")).status_code == 400


async def test_labels_log_one_element_post(in_process: InProcess) -> None:
    service, repo, h = in_process.service, in_process.repo, in_process.syn
    note = {"Tags": [], "Prop": {}, "Rels": [], "Kind": "Note"}
    counts, mutation = await upkeep.post_labels(
        h, [(3, [{**note, "Pos": [1, 2, 3]}, {**note, "Pos": [100, 2, 3]}])],
        ModInfo("ann", "tracer"))
    assert counts == {"Added": 2, "Present": 0}
    records = [r for r in await service.repos.mutations(repo) if r.get("DataName") == "syn"]
    assert len(records) == 1
    assert {k: records[0].get(k) for k in ("Action", "Elements", "Blocks", "User",
                                           "MutationID")} == {
        "Action": "element-post", "Elements": 2, "Blocks": 2, "User": "ann",
        "MutationID": mutation}
