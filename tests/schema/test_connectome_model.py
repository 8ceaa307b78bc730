"""Synapses on a segmentation under random proofreading, against a plain-Python model.

Random element posts, deletes and moves are interleaved with random merges, cleaves and
splits of the synced segmentation. After every step each body's elements (REST), the tag, box
and ROI queries, labelsz rankings and counts, GraphQL partners and the annotation's
``mod-elements`` log records must equal what the model says (labelsz with and without an
ROI setting); after a restart, again.
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from typing import Any

import httpx
import numpy as np

from dvidql.codec.sparsevol import encode_rles, mask_runs
from tests.conftest import LiveServer
from tests.schema.conftest import http_session

SHAPE = (64, 64, 128)  # z, y, x: two 64^3 blocks along x
TAGS = ["a", "b"]
ROI_SPANS = [[0, 0, 0, 1], [1, 1, 2, 3]]  # 32^3 blocks (z, y, x0, x1)
PARTNERS = """
query($v: String!, $b: UInt64!) { version(ref: $v) { segmentation(instance: "seg") {
  body(id: $b) { partners(annotations: "syn") { body outgoing incoming } } } } }
"""

Pos = tuple[int, int, int]


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json() if response.content else None


class Model:
    """The body of every voxel and the elements by position."""

    def __init__(self, bodies: np.ndarray) -> None:
        self.bodies = bodies
        self.elements: dict[Pos, dict[str, Any]] = {}

    def body_at(self, p: Pos | list[int]) -> int:
        x, y, z = p
        inside = 0 <= z < SHAPE[0] and 0 <= y < SHAPE[1] and 0 <= x < SHAPE[2]
        return int(self.bodies[z, y, x]) if inside else 0

    def in_body(self, body: int) -> list[Pos]:
        return sorted(p for p in self.elements if self.body_at(p) == body)

    def ranking(self, kinds: set[str], where: Any = None) -> list[tuple[int, int]]:
        counts = Counter(self.body_at(p) for p, e in self.elements.items()
                         if e["Kind"] in kinds and (where is None or where(p)))
        counts.pop(0, None)
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def partners(self, body: int) -> list[dict[str, Any]]:
        out: Counter[int] = Counter()
        into: Counter[int] = Counter()
        for p in self.in_body(body):
            e = self.elements[p]
            for r in e["Rels"]:
                if e["Kind"] == "PreSyn" and r["Rel"] == "PreSynTo":
                    out[self.body_at(r["To"])] += 1
                elif e["Kind"] == "PostSyn" and r["Rel"] == "PostSynTo":
                    into[self.body_at(r["To"])] += 1
        rows = [{"body": str(b), "outgoing": out[b], "incoming": into[b]}
                for b in sorted((out.keys() | into.keys()) - {0})]
        return sorted(rows, key=lambda r: (-(r["outgoing"] + r["incoming"]), int(r["body"])))

    def labelled(self) -> dict[Pos, tuple[int, str]]:
        return {p: (self.body_at(p), e["Kind"]) for p, e in self.elements.items()}


def in_roi(p: Pos) -> bool:
    x, y, z = (v // 32 for v in p)
    return any(z == s[0] and y == s[1] and s[2] <= x <= s[3] for s in ROI_SPANS)


class Scenario:
    def __init__(self, server: LiveServer, http: httpx.Client, root: str, model: Model,
                 rng: random.Random) -> None:
        self.server, self.http, self.root, self.model, self.rng = server, http, root, model, rng
        self.seen = len(self.log())
        self.done: Counter[str] = Counter()

    def url(self, name: str, path: str) -> str:
        return f"/api/node/{self.root}/{name}/{path}"

    def log(self) -> list[dict[str, Any]]:
        return ok(self.http.get(self.url("syn", "mutations")))

    def point(self) -> Pos:
        return (self.rng.randrange(-4, SHAPE[2] + 4), self.rng.randrange(SHAPE[1]),
                self.rng.randrange(SHAPE[0]))

    # ----- element edits ------------------------------------------------------------------

    def post(self) -> None:
        present = sorted(self.model.elements)
        posted = []
        for _ in range(self.rng.randrange(1, 12)):
            kind = self.rng.choice(["PreSyn", "PostSyn", "PostSyn"])
            targets = self.rng.sample(present, min(len(present), self.rng.randrange(3)))
            rel = "PreSynTo" if kind == "PreSyn" else "PostSynTo"
            posted.append({"Pos": list(self.point()), "Kind": kind,
                           "Tags": self.rng.sample(TAGS, self.rng.randrange(3)), "Prop": {},
                           "Rels": [{"Rel": rel, "To": list(t)} for t in targets]})
        ok(self.http.post(self.url("syn", "elements"), json=posted))
        for e in posted:
            self.model.elements[tuple(e["Pos"])] = e  # type: ignore[index]

    def delete(self) -> None:
        p = self.rng.choice(sorted(self.model.elements))
        ok(self.http.delete(self.url("syn", "element/" + "_".join(map(str, p)))))
        del self.model.elements[p]
        for e in self.model.elements.values():
            e["Rels"] = [r for r in e["Rels"] if tuple(r["To"]) != p]

    def move(self) -> None:
        src = self.rng.choice(sorted(self.model.elements))
        dst = self.point()
        while dst in self.model.elements:
            dst = self.point()
        ok(self.http.post(self.url("syn", "move/" + "/".join(
            "_".join(map(str, p)) for p in (src, dst)))))
        element = self.model.elements.pop(src)
        element["Pos"] = list(dst)
        self.model.elements[dst] = element
        for e in self.model.elements.values():
            for r in e["Rels"]:
                if tuple(r["To"]) == src:
                    r["To"] = list(dst)

    # ----- segmentation edits -------------------------------------------------------------

    def some_bodies(self, n: int) -> list[int]:
        bodies = np.unique(self.model.bodies)
        return [int(b) for b in self.rng.sample(bodies[bodies != 0].tolist(), n)]

    def merge(self) -> str:
        target, other = self.some_bodies(2)
        ok(self.http.post(self.url("seg", "merge"), json=[target, other]))
        self.model.bodies[self.model.bodies == other] = target
        return "merge"

    def cleave(self) -> str | None:
        svs = np.frombuffer(self.http.get(self.url(
            "seg", "raw/0_1_2/128_64_64/0_0_0?supervoxels=true")).content, "<u8").reshape(SHAPE)
        for body in self.some_bodies(len(np.unique(self.model.bodies))):
            owned = np.unique(svs[self.model.bodies == body]).tolist()
            if len(owned) > 1:
                chosen = self.rng.sample(owned, self.rng.randrange(1, len(owned)))
                cleaved = ok(self.http.post(self.url("seg", f"cleave/{body}"),
                                            json=chosen))["CleavedLabel"]
                self.model.bodies[np.isin(svs, chosen)] = cleaved
                return "cleave"
        return None

    def split(self) -> str | None:
        (body,) = self.some_bodies(1)
        voxels = np.flatnonzero(self.model.bodies == body)
        lo = np.unravel_index(voxels[self.rng.randrange(len(voxels))], SHAPE)
        box = np.zeros(SHAPE, bool)
        box[tuple(slice(a, a + self.rng.randrange(4, 40)) for a in lo)] = True
        region = box & (self.model.bodies == body)
        if not region.any() or region.sum() == (self.model.bodies == body).sum():
            return None
        new = ok(self.http.post(self.url("seg", f"split/{body}"),
                                content=encode_rles(mask_runs(region))))["label"]
        self.model.bodies[region] = new
        return "split"

    def step(self) -> None:
        before = self.model.labelled()
        choices = ["post", "post", "merge", "cleave", "split", "split"]
        if self.model.elements:
            choices += ["delete", "move"]
        action = self.rng.choice(choices)
        cause = getattr(self, action)()
        if action in ("post", "delete", "move") or cause is not None:
            self.check_log(before, cause)
            self.done[action] += 1

    def check_log(self, before: dict[Pos, tuple[int, str]], cause: str | None) -> None:
        """The log records since the last step: an element edit's own record, or for a
        segmentation edit (``cause``) one ``mod-elements`` record (none if no element changed
        body), listing exactly the elements that left a body (Del) and joined one (Add)."""
        records = self.log()
        fresh, self.seen = records[self.seen:], len(records)
        now = self.model.labelled()
        gone, came = set(before.items()) - set(now.items()), set(now.items()) - set(before.items())
        if cause is None:
            (record,) = fresh
            assert record["Action"].startswith("element-")
        else:
            mods = [r for r in fresh if r["Action"] == "mod-elements"]
            if not gone and not came:
                assert mods == []
                return
            (record,) = mods
            assert record["Cause"]["Action"] == cause
        for key, changed in (("Del", gone), ("Add", came)):
            want = sorted((body, kind, p) for p, (body, kind) in changed if body)
            assert sorted((e["Label"], e["Kind"], tuple(e["Pos"])) for e in record[key]) == want

    # ----- checks -------------------------------------------------------------------------

    def elements(self, positions: list[Pos], rels: bool = True) -> list[dict[str, Any]]:
        chosen = [self.model.elements[p] for p in sorted(positions)]
        return chosen if rels else [{k: v for k, v in e.items() if k != "Rels"}
                                    for e in chosen]

    def got(self, name: str, path: str, **params: str) -> list[dict[str, Any]]:
        return sorted(ok(self.http.get(self.url(name, path), params=params)),
                      key=lambda e: tuple(e["Pos"]))

    async def check(self) -> None:
        model = self.model
        bodies = {model.body_at(p) for p in model.elements} - {0}
        for body in bodies:
            assert [e["Pos"] for e in self.got("syn", f"label/{body}")] == [
                list(p) for p in model.in_body(body)], body
        for tag in TAGS:
            assert self.got("syn", f"tag/{tag}") == self.elements(
                [p for p, e in model.elements.items() if tag in e["Tags"]], rels=False)
        lo, size = self.point(), [self.rng.randrange(1, 64) for _ in range(3)]
        box = [p for p in model.elements if all(lo[i] <= p[i] < lo[i] + size[i]
                                                for i in range(3))]
        geometry = "_".join(map(str, size)) + "/" + "_".join(map(str, lo))
        assert self.got("syn", f"elements/{geometry}") == self.elements(box)
        assert self.got("syn", "roi/region") == self.elements(
            [p for p in model.elements if in_roi(p)])
        for (kind, kinds), (name, where) in itertools.product(
                (("PreSyn", {"PreSyn"}), ("AllSyn", {"PreSyn", "PostSyn"})),
                (("ranks", None), ("ranks-in-roi", in_roi))):
            want = model.ranking(kinds, where)
            got = ok(self.http.get(self.url(name, f"top/5/{kind}")))
            assert [(r["Label"], r[kind]) for r in got] == want[:5], name
            for body, count in want[-2:]:
                assert ok(self.http.get(self.url(name, f"count/{body}/{kind}"))) == {
                    "Label": body, kind: count}, name
        async with http_session(self.server) as api:
            for body in sorted(bodies)[:3]:
                data = await api.run(PARTNERS, v=self.root, b=str(body))
                assert data["version"]["segmentation"]["body"]["partners"] == \
                    model.partners(body), body


def start(http: httpx.Client) -> tuple[str, Model]:
    root = ok(http.post("/api/repos", json={}))["root"]
    for body in ({"typename": "labelmap", "dataname": "seg"},
                 {"typename": "annotation", "dataname": "syn"},
                 {"typename": "labelsz", "dataname": "ranks"},
                 {"typename": "labelsz", "dataname": "ranks-in-roi", "ROI": "region"},
                 {"typename": "roi", "dataname": "region"}):
        ok(http.post(f"/api/repo/{root}/instance", json=body))
    svs = (1 + np.arange(SHAPE[2]) // 32)[None, None, :] + 4 * (np.arange(SHAPE[1]) // 32
                                                                )[None, :, None]
    svs = np.broadcast_to(svs + 8 * (np.arange(SHAPE[0]) // 32)[:, None, None],
                          SHAPE).astype(np.uint64)  # 16 supervoxels of 32^3
    ok(http.post(f"/api/node/{root}/seg/raw/0_1_2/128_64_64/0_0_0",
                 content=svs.astype("<u8").tobytes()))
    ok(http.post(f"/api/node/{root}/syn/sync", json={"sync": "seg"}))
    for name in ("ranks", "ranks-in-roi"):
        ok(http.post(f"/api/node/{root}/{name}/sync", json={"sync": "syn"}))
    ok(http.post(f"/api/node/{root}/region/roi", json=ROI_SPANS))
    bodies = svs.copy()
    for merged in ([1, 2, 5], [3, 4], [9, 10, 13, 14]):  # bodies that cleaves can take apart
        ok(http.post(f"/api/node/{root}/seg/merge", json=merged))
        bodies[np.isin(bodies, merged)] = merged[0]
    return root, Model(bodies)


async def test_random_proofreading_matches_the_model(make_server: Any) -> None:
    server: LiveServer = make_server()
    with httpx.Client(base_url=server.url, timeout=30) as http:
        root, model = start(http)
        scenario = Scenario(server, http, root, model, random.Random(11))
        for _ in range(40):
            scenario.step()
            await scenario.check()
        assert min(scenario.done[a] for a in (
            "post", "delete", "move", "merge", "cleave", "split")) >= 2, scenario.done
        assert len(model.elements) > 20 and len(np.unique(model.bodies)) > 4
        assert len(model.ranking({"PreSyn", "PostSyn"}, in_roi)) > 2
        server.restart()
        await scenario.check()
