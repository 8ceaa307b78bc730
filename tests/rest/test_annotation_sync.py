"""An annotation instance synced with a labelmap: each body's elements are right on the very
next request after every kind of segmentation edit, checked against a model of the volume."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest

from dvidql.codec.sparsevol import encode_rles, mask_runs
from tests.rest.conftest import child

SHAPE = (64, 64, 128)  # z, y, x: two 64^3 blocks along x
BLOCK = 64


def url(uuid: str, name: str, path: str) -> str:
    return f"/api/node/{uuid}/{name}/{path}"


def ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, response.text
    return response


class Model:
    """Supervoxels per voxel, the supervoxel → body mapping, and the elements' positions."""

    def __init__(self, svs: np.ndarray, points: list[list[int]]) -> None:
        self.svs = svs
        self.mapping: dict[int, int] = {}
        self.points = points

    def body_of(self, p: list[int]) -> int:
        return self.body_of_sv(int(self.svs[p[2], p[1], p[0]]))

    def body_of_sv(self, sv: int) -> int:
        return self.mapping.get(sv, sv)

    def bodies(self) -> dict[int, list[list[int]]]:
        found: dict[int, list[list[int]]] = {}
        for p in self.points:
            found.setdefault(self.body_of(p), []).append(p)
        return found


def check(client: httpx.Client, uuid: str, model: Model) -> None:
    expected = model.bodies()
    assert len(expected) > 2
    for body, points in expected.items():
        got = ok(client.get(url(uuid, "syn", f"label/{body}"))).json()
        assert sorted(e["Pos"] for e in got) == sorted(points), body
        assert all("Rels" not in e or e["Rels"] == [] for e in got)
    assert ok(client.get(url(uuid, "syn", "label/987654321"))).json() == []


@pytest.fixture
def synced(client: httpx.Client, root: str) -> tuple[str, Model]:
    svs = (1 + np.arange(SHAPE[2]) // 32)[None, None, :] + 4 * (np.arange(SHAPE[1]) // 32
                                                                )[None, :, None]
    svs = np.broadcast_to(svs, SHAPE).astype(np.uint64)
    for body in ({"typename": "labelmap", "dataname": "seg"},
                 {"typename": "annotation", "dataname": "syn"}):
        ok(client.post(f"/api/repo/{root}/instance", json=body))
    ok(client.post(url(root, "seg", "raw/0_1_2/128_64_64/0_0_0"),
                   content=svs.astype("<u8").tobytes()))
    rng = np.random.default_rng(4)
    points = sorted({(int(x), int(y), int(z)) for x, y, z in zip(
        rng.integers(0, SHAPE[2], 150), rng.integers(0, SHAPE[1], 150),
        rng.integers(0, SHAPE[0], 150), strict=True)})
    elements = [{"Pos": list(p), "Kind": "PostSyn" if i % 3 else "PreSyn",
                 "Rels": [{"Rel": "PreSynTo", "To": list(points[i - 1])}] if i else []}
                for i, p in enumerate(points)]
    ok(client.post(url(root, "syn", "elements"), json=elements))
    ok(client.post(url(root, "syn", "sync"), json={"sync": "seg"}))
    assert ok(client.get(url(root, "syn", "info"))).json()["Extended"]["Sync"] == "seg"
    return root, Model(svs.copy(), [list(p) for p in points])


class Log:
    """Reads the annotation instance's ``mod-elements`` records made since the last look and
    compares them with the model's bodies before and after."""

    def __init__(self, client: httpx.Client, uuid: str, model: Model) -> None:
        self.client, self.uuid, self.model = client, uuid, model
        self.seen = len(self._records())
        self.bodies = self._snapshot()

    def _records(self) -> list[dict]:
        return ok(self.client.get(url(self.uuid, "syn", "mutations"))).json()

    def _snapshot(self) -> dict[tuple[int, ...], tuple[int, str]]:
        return {tuple(p): (self.model.body_of(p), "PostSyn" if i % 3 else "PreSyn")
                for i, p in enumerate(self.model.points)}

    def check(self, cause: str) -> None:
        """The records since the last check: one ``mod-elements`` record caused by a
        ``cause`` mutation of "seg", listing exactly the elements whose body changed (none,
        and no record, if no element did)."""
        records = self._records()
        fresh, self.seen = records[self.seen:], len(records)
        now = self._snapshot()
        moved = {p: (self.bodies[p], now[p]) for p in now
                 if p in self.bodies and self.bodies[p][0] != now[p][0]}
        self.bodies = now
        if not moved:
            assert [r for r in fresh if r["Action"] == "mod-elements"] == []
            return
        (record,) = [r for r in fresh if r["Action"] == "mod-elements"]
        assert record["Cause"]["DataName"] == "seg" and record["Cause"]["Action"] == cause
        assert record["Cause"]["MutationID"] < record["MutationID"]
        assert record["User"] == "tester"
        want_del = sorted((old[0], old[1], p) for p, (old, _) in moved.items() if old[0])
        want_add = sorted((new[0], new[1], p) for p, (_, new) in moved.items() if new[0])
        for key, want in (("Del", want_del), ("Add", want_add)):
            got = sorted((e["Label"], e["Kind"], tuple(e["Pos"])) for e in record[key])
            assert got == want, key


def test_bodies_follow_every_edit(client: httpx.Client, synced: tuple[str, Model]) -> None:
    root, model = synced
    check(client, root, model)
    with_rels = ok(client.get(url(root, "syn", "label/1?relationships=true"))).json()
    assert any(e["Rels"] for e in with_rels)
    log = Log(client, root, model)
    user = {"u": "tester"}

    ok(client.post(url(root, "seg", "merge"), json=[1, 2, 6], params=user))
    model.mapping.update({2: 1, 6: 1})
    check(client, root, model)
    log.check("merge")

    cleaved = ok(client.post(url(root, "seg", "cleave/1"), json=[6],
                             params=user)).json()["CleavedLabel"]
    model.mapping[6] = cleaved
    check(client, root, model)
    log.check("cleave")

    region = np.zeros(SHAPE, bool)  # part of supervoxel 3 (x 64..95, y 0..31)
    region[:, :20, 64:80] = True
    new = ok(client.post(url(root, "seg", "split/3"), params=user,
                         content=encode_rles(mask_runs(region)))).json()["label"]
    fresh = int(model.svs.max()) + 1000  # a supervoxel id the model alone uses
    model.svs[region] = fresh
    model.mapping[fresh] = new
    check(client, root, model)
    log.check("split")

    region = np.zeros(SHAPE, bool)  # part of supervoxel 5: its body stays the same
    region[:, 32:40, :10] = True
    ok(client.post(url(root, "seg", "split-supervoxel/5"), params=user,
                   content=encode_rles(mask_runs(region))))
    check(client, root, model)
    log.check("split-supervoxel")

    ok(client.post(url(root, "seg", "renumber"), json=[500, 4], params=user))
    model.mapping[4] = 500
    check(client, root, model)
    log.check("renumber")

    block = np.full((BLOCK, BLOCK, BLOCK), 77, np.uint64)  # overwrite the first block
    ok(client.post(url(root, "seg", "raw/0_1_2/64_64_64/0_0_0"), content=block.tobytes(),
                   params=user))
    model.svs[:, :, :BLOCK] = 77
    check(client, root, model)
    log.check("post-blocks")

    ok(client.post(url(root, "syn", "move/" + "_".join(map(str, model.points[0])) + "/120_60_60")))
    model.points[0] = [120, 60, 60]
    check(client, root, model)


def test_a_child_versions_edits_stay_in_it(client: httpx.Client,
                                           synced: tuple[str, Model]) -> None:
    root, model = synced
    version = child(client, root)
    ok(client.post(url(version, "seg", "merge"), json=[1, 2]))
    before = model.bodies()
    model.mapping[2] = 1
    check(client, version, model)
    model.mapping.clear()
    check(client, root, model)
    assert model.bodies() == before


def test_sync_refusals(client: httpx.Client, root: str) -> None:
    for body in ({"typename": "labelmap", "dataname": "seg"},
                 {"typename": "labelmap", "dataname": "small", "BlockSize": "32,32,32"},
                 {"typename": "labelmap", "dataname": "other"},
                 {"typename": "annotation", "dataname": "syn"}):  # the root has kv
        ok(client.post(f"/api/repo/{root}/instance", json=body))
    unsynced = client.get(url(root, "syn", "label/1"))
    assert unsynced.status_code == 400 and "POST sync" in unsynced.json()["error"]
    for payload, status, words in (({"sync": "kv"}, 400, "labelmap"),
                                   ({"sync": "small"}, 400, "block size"),
                                   ({"sync": "seg,other"}, 400, "follows one"),
                                   ({"sync": "nosuch"}, 404, "nosuch"),
                                   ({"other": "seg"}, 400, "sync"),
                                   ({}, 400, "sync")):
        response = client.post(url(root, "syn", "sync"), json=payload)
        assert response.status_code == status and words in response.json()["error"], payload
    assert ok(client.get(url(root, "syn", "info"))).json()["Extended"]["Sync"] == ""
    ok(client.post(url(root, "syn", "sync"), json={"sync": "seg"}))
    refused = client.post(url(root, "syn", "sync"), json={"sync": "other"})
    assert refused.status_code == 400 and "replace=true" in refused.json()["error"]
    ok(client.post(url(root, "syn", "sync"), params={"replace": "true"}, json={"sync": "other"}))
    assert ok(client.get(url(root, "syn", "info"))).json()["Extended"]["Sync"] == "other"
    assert client.get(url(root, "syn", "label/x")).status_code == 400


def ranking(model: Model, kinds: tuple[str, ...]) -> list[tuple[int, int]]:
    """(body, count) of the model's elements of ``kinds`` (PreSyn is every third element, as
    the fixture posts them), most first, ties by increasing body."""
    found: dict[int, int] = {}
    for i, p in enumerate(model.points):
        if ("PostSyn" if i % 3 else "PreSyn") in kinds:
            body = model.body_of(p)
            found[body] = found.get(body, 0) + 1
    return sorted(found.items(), key=lambda item: (-item[1], item[0]))


def test_labelsz_ranks_bodies(client: httpx.Client, synced: tuple[str, Model]) -> None:
    root, model = synced
    ok(client.post(f"/api/repo/{root}/instance", json={"typename": "labelsz",
                                                       "dataname": "ranks"}))
    unsynced = client.get(url(root, "ranks", "top/3/PreSyn"))
    assert unsynced.status_code == 400 and "POST sync" in unsynced.json()["error"]
    refused = client.post(url(root, "ranks", "sync"), json={"sync": "seg"})
    assert refused.status_code == 400 and "annotation" in refused.json()["error"]
    ok(client.post(url(root, "ranks", "sync"), json={"sync": "syn"}))
    for _ in range(2):  # before and after a merge
        for kind, kinds in (("PreSyn", ("PreSyn",)), ("PostSyn", ("PostSyn",)),
                            ("AllSyn", ("PreSyn", "PostSyn"))):
            want = ranking(model, kinds)
            assert [(r["Label"], r[kind]) for r in ok(client.get(
                url(root, "ranks", f"top/3/{kind}"))).json()] == want[:3]
            threshold = want[2][1]
            got = ok(client.get(url(root, "ranks", f"threshold/{threshold}/{kind}"),
                                params={"offset": 1, "n": 2})).json()
            assert [(r["Label"], r[kind]) for r in got] == [
                r for r in want if r[1] >= threshold][1:3]
            body, n = want[0]
            assert ok(client.get(url(root, "ranks", f"count/{body}/{kind}"))).json() == {
                "Label": body, kind: n}
            labels = [body, want[-1][0], 987654321]
            assert [r[kind] for r in ok(client.post(
                url(root, "ranks", f"counts/{kind}"), json=labels)).json()] == [
                n, want[-1][1], 0]
        ok(client.post(url(root, "seg", "merge"), json=[want[-1][0], want[0][0]]))
        model.mapping.update({sv: want[-1][0] for sv in range(1, 9)
                              if model.body_of_sv(sv) == want[0][0]})
    bad = client.get(url(root, "ranks", "top/3/Voxels"))
    assert bad.status_code == 400 and "index type" in bad.json()["error"]
    assert client.get(url(root, "ranks", "top/x/PreSyn")).status_code == 400
    assert client.get(url(root, "ranks", "threshold/1/PreSyn"),
                      params={"n": 10_001}).status_code == 400


def replay(records: list[dict]) -> dict[int, set[tuple[int, ...]]]:
    """Each body's element positions from the log alone: Del entries must name an element
    where the log last put it, Add entries put one in a body."""
    where: dict[tuple[int, ...], int] = {}
    for record in records:
        for entry in record.get("Del", []):
            assert where.pop(tuple(entry["Pos"])) == entry["Label"], record["MutationID"]
        for entry in record.get("Add", []):
            assert tuple(entry["Pos"]) not in where, record["MutationID"]
            where[tuple(entry["Pos"])] = entry["Label"]
    bodies: dict[int, set[tuple[int, ...]]] = {}
    for pos, body in where.items():
        bodies.setdefault(body, set()).add(pos)
    return bodies


def test_the_log_keeps_up_under_concurrent_edits(server: Any) -> None:
    """Element posts racing merges and cleaves of the bodies they land in: replaying the
    instance's log gives every body's elements exactly as label/<body> answers them, so no
    record missed a change made while its mutation was being planned."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        root = ok(http.post("/api/repos", json={})).json()["root"]
        for body in ({"typename": "labelmap", "dataname": "seg"},
                     {"typename": "annotation", "dataname": "syn"}):
            ok(http.post(f"/api/repo/{root}/instance", json=body))
        svs = np.broadcast_to((1 + np.arange(SHAPE[2]) // 32)[None, None, :], SHAPE)
        ok(http.post(url(root, "seg", "raw/0_1_2/128_64_64/0_0_0"),
                     content=svs.astype("<u8").tobytes()))  # supervoxels 1-4 along x
        ok(http.post(url(root, "syn", "sync"), json={"sync": "seg"}))
        ok(http.post(url(root, "syn", "elements"), json=[  # one in each supervoxel
            {"Pos": [x, 63, 63], "Kind": "PreSyn"} for x in (0, 32, 64, 96)]))

    def post(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for step in range(8):
                ok(http.post(url(root, "syn", "elements"), json=[
                    {"Pos": [(7 * i + step) % SHAPE[2], worker, step], "Kind": "PostSyn"}
                    for i in range(16)]))

    def proofread(_: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            holder = 2  # the body holding supervoxel 2
            for _ in range(6):
                ok(http.post(url(root, "seg", "merge"), json=[1, holder]))
                holder = ok(http.post(url(root, "seg", "cleave/1"),
                                      json=[2])).json()["CleavedLabel"]

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda f: f[0](f[1]), [(post, 0), (post, 1), (post, 2),
                                              (proofread, 0)]))
    with httpx.Client(base_url=server.url, timeout=60) as http:
        records = ok(http.get(url(root, "syn", "mutations"))).json()
        assert sum(r["Action"] == "mod-elements" for r in records) == 12
        replayed = replay(records)
        assert sum(map(len, replayed.values())) == 4 + 3 * 8 * 16
        for body, positions in replayed.items():
            got = ok(http.get(url(root, "syn", f"label/{body}"))).json()
            assert {tuple(e["Pos"]) for e in got} == positions, body


def test_labelsz_counts_inside_its_roi(client: httpx.Client, synced: tuple[str, Model]) -> None:
    """The ROI setting counts only the elements inside the region, read at the request's
    version or at the one the setting names."""
    root, model = synced
    ok(client.post(f"/api/repo/{root}/instance", json={"typename": "roi", "dataname": "left"}))
    ok(client.post(url(root, "left", "roi"), json=[[z, y, 0, 1] for z in range(2)
                                                     for y in range(2)]))  # x < 64
    ok(client.post(f"/api/repo/{root}/instance", json={
        "typename": "labelsz", "dataname": "left-ranks", "ROI": "left"}))
    ok(client.post(f"/api/repo/{root}/instance", json={
        "typename": "labelsz", "dataname": "pinned", "ROI": f"left,{root}"}))
    for name in ("left-ranks", "pinned"):
        ok(client.post(url(root, name, "sync"), json={"sync": "syn"}))
    assert ok(client.get(url(root, "left-ranks", "info"))).json()["Extended"]["ROI"] == "left"

    def want(xmax: int) -> list[tuple[int, int]]:
        found: dict[int, int] = {}
        for p in model.points:
            if p[0] < xmax:
                found[model.body_of(p)] = found.get(model.body_of(p), 0) + 1
        return sorted(found.items(), key=lambda item: (-item[1], item[0]))

    def got(uuid: str, name: str) -> list[tuple[int, int]]:
        return [(r["Label"], r["AllSyn"]) for r in ok(client.get(url(
            uuid, name, "top/100/AllSyn"))).json()]

    assert got(root, "left-ranks") == got(root, "pinned") == want(64)
    body, count = want(64)[0]
    assert ok(client.get(url(root, "left-ranks", f"count/{body}/AllSyn"))).json() == {
        "Label": body, "AllSyn": count}
    version = child(client, root)  # the region grows in a child version
    ok(client.post(url(version, "left", "roi"), json=[[z, y, 2, 2] for z in range(2)
                                                        for y in range(2)]))  # x < 96
    assert got(version, "left-ranks") == want(96)
    assert got(version, "pinned") == got(root, "left-ranks") == want(64)

    for settings, status, words in (({"ROI": ",abc"}, 400, "ROI must be"),
                                    ({"ROI": "a,b,c"}, 400, "ROI must be"),
                                    ({"Region": "left"}, 400, "unknown setting")):
        refused = client.post(f"/api/repo/{version}/instance", json={
            "typename": "labelsz", "dataname": "bad", **settings})
        assert refused.status_code == status and words in refused.json()["error"], settings
    for name, roi, status in (("nowhere", "nosuch", 404), ("wrongtype", "syn", 400)):
        ok(client.post(f"/api/repo/{version}/instance", json={
            "typename": "labelsz", "dataname": name, "ROI": roi}))
        ok(client.post(url(version, name, "sync"), json={"sync": "syn"}))
        assert client.get(url(version, name, "top/3/AllSyn")).status_code == status, name
