"""annotation over HTTP against a live server, checked step by step against a plain-Python
model: a dict from position to element."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from dvidql.datatypes.annotation import ops
from dvidql.datatypes.base import ModInfo
from tests.rest.conftest import InProcess, child

BLOCK = 8  # small blocks, so random points spread over many and moves cross them
LO, HI = -12, 20  # the cube random points come from: four blocks along each axis
TAGS = ["pre", "post", "needs review", "a/b"]
KINDS = ["PreSyn", "PostSyn", "Gap", "Note", "Unknown"]
RELS = ["PreSynTo", "PostSynTo", "ConvergentTo", "GroupedWith", "UnknownRelationship"]

Pos = tuple[int, int, int]
Element = dict[str, Any]


def url(uuid: str, path: str) -> str:
    return f"/api/node/{uuid}/syn/{path}"


def xyz(p: Pos) -> str:
    return "_".join(map(str, p))


def new_annotation(http: httpx.Client) -> str:
    root = http.post("/api/repos", json={"alias": "annotations"}).json()["root"]
    created = http.post(f"/api/repo/{root}/instance", json={
        "typename": "annotation", "dataname": "syn", "BlockSize": str(BLOCK)})
    assert created.status_code == 200, created.text
    return root


@pytest.fixture
def root(client: httpx.Client) -> str:
    return new_annotation(client)


def block_of(p: Pos) -> Pos:
    return p[0] // BLOCK, p[1] // BLOCK, p[2] // BLOCK


class Model:
    """What the instance should hold, edited as the server is asked to edit it."""

    def __init__(self) -> None:
        self.elements: dict[Pos, Element] = {}

    def copy(self) -> Model:
        other = Model()
        other.elements = dict(self.elements)
        return other

    def post(self, elements: list[Element]) -> None:
        for e in elements:
            self.elements[tuple(e["Pos"])] = e

    def post_blocks(self, blocks: dict[Pos, list[Element]]) -> None:
        for coord, items in blocks.items():
            for p in [p for p in self.elements if block_of(p) == coord]:
                del self.elements[p]
            self.post(items)

    def _retarget(self, old: Pos, new: Pos | None) -> None:
        for p, e in self.elements.items():
            if any(tuple(r["To"]) == old for r in e["Rels"]):
                rels = ([r for r in e["Rels"] if tuple(r["To"]) != old] if new is None else
                        [{**r, "To": list(new)} if tuple(r["To"]) == old else r
                         for r in e["Rels"]])
                self.elements[p] = {**e, "Rels": rels}

    def delete(self, p: Pos) -> None:
        del self.elements[p]
        self._retarget(p, None)

    def move(self, src: Pos, dst: Pos) -> None:
        element = self.elements.pop(src)
        self.elements[dst] = {**element, "Pos": list(dst)}
        self._retarget(src, dst)

    def where(self, keep: Any) -> list[Element]:
        return sorted((e for p, e in self.elements.items() if keep(p)), key=_order)


def _order(e: Element) -> list[int]:
    return e["Pos"]


def _sorted(elements: list[Element]) -> list[Element]:
    return sorted(elements, key=_order)


def _no_rels(elements: list[Element]) -> list[Element]:
    return [{k: v for k, v in e.items() if k != "Rels"} for e in elements]


def random_point(rng: random.Random) -> Pos:
    return rng.randrange(LO, HI), rng.randrange(LO, HI), rng.randrange(LO, HI)


def random_element(rng: random.Random, p: Pos) -> Element:
    return {"Pos": list(p), "Kind": rng.choice(KINDS),
            "Tags": rng.sample(TAGS, rng.randrange(3)),
            "Prop": {f"k{i}": rng.choice(["x", "", "é y"]) for i in range(rng.randrange(3))},
            "Rels": [{"Rel": rng.choice(RELS), "To": list(random_point(rng))}
                     for _ in range(rng.randrange(4))]}


def check(http: httpx.Client, uuid: str, model: Model, rng: random.Random) -> None:
    """Every read agrees with the model."""
    stream = http.get(url(uuid, "all-elements")).json()
    for key, items in stream.items():
        coord = tuple(int(v) for v in key.split(","))
        assert items and all(block_of(tuple(e["Pos"])) == coord for e in items)
    everything = model.where(lambda p: True)
    assert _sorted([e for items in stream.values() for e in items]) == everything
    huge = "400000_400000_400000/-200000_-200000_-200000"  # read by a range scan
    assert _sorted(http.get(url(uuid, f"elements/{huge}")).json()) == everything
    assert http.get(url(uuid, f"blocks/{huge}")).json() == stream
    for _ in range(3):
        lo = random_point(rng)
        size = tuple(rng.randrange(1, 20) for _ in range(3))
        geometry = f"{xyz(size)}/{xyz(lo)}"
        inside = model.where(lambda p, lo=lo, size=size: all(
            lo[i] <= p[i] < lo[i] + size[i] for i in range(3)))
        assert _sorted(http.get(url(uuid, f"elements/{geometry}")).json()) == inside
        first = block_of(lo)
        last = block_of(tuple(lo[i] + size[i] - 1 for i in range(3)))  # type: ignore[arg-type]
        touched = model.where(lambda p, a=first, b=last: all(
            a[i] <= block_of(p)[i] <= b[i] for i in range(3)))
        blocks = http.get(url(uuid, f"blocks/{geometry}")).json()
        assert _sorted([e for items in blocks.values() for e in items]) == touched
    for tag in TAGS:
        having = model.where(lambda p, tag=tag: tag in model.elements[p]["Tags"])
        path = url(uuid, f"tag/{tag}")
        assert _sorted(http.get(path).json()) == _no_rels(having)
        assert _sorted(http.get(path, params={"relationships": "true"}).json()) == having
    stats = http.get(url(uuid, "scan")).json()
    dangling = [{"From": e["Pos"], "Rel": r["Rel"], "To": r["To"]}
                for e in model.where(lambda p: True) for r in e["Rels"]
                if tuple(r["To"]) not in model.elements]
    assert stats["Elements"] == len(model.elements)
    assert stats["Blocks"] == len({block_of(p) for p in model.elements})
    assert stats["Kinds"] == {k: sum(e["Kind"] == k for e in model.elements.values())
                              for k in KINDS}
    assert stats["DanglingRelationships"] == len(dangling)
    key = lambda d: (d["From"], d["To"], d["Rel"])  # noqa: E731
    assert sorted(stats["Dangling"], key=key) == sorted(dangling, key=key)


def ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, response.text
    return response


def random_step(http: httpx.Client, uuid: str, model: Model, rng: random.Random) -> None:
    """One random edit, on the server and in the model."""
    present = sorted(model.elements)
    action = rng.choice(["post", "post", "delete", "move", "blocks"] if present else ["post"])
    if action == "post":
        # new points, replacements, and partners that point at existing elements
        points = [random_point(rng) for _ in range(rng.randrange(1, 30))]
        points += rng.sample(present, min(len(present), rng.randrange(5)))
        elements = [random_element(rng, p) for p in points]
        for e in elements[:5]:
            if present:
                e["Rels"].append({"Rel": "PreSynTo", "To": list(rng.choice(present))})
        ok(http.post(url(uuid, "elements"), json=elements))
        model.post(elements)
    elif action == "delete":
        p = rng.choice(present)
        ok(http.delete(url(uuid, f"element/{xyz(p)}")))
        model.delete(p)
    elif action == "move":
        src = rng.choice(present)
        dst = rng.choice(present) if rng.random() < 0.2 else random_point(rng)
        ok(http.post(url(uuid, f"move/{xyz(src)}/{xyz(dst)}")))
        model.move(src, dst)
    else:
        coord = block_of(rng.choice(present))
        first = [c * BLOCK for c in coord]
        points = {tuple(f + rng.randrange(BLOCK) for f in first) for _ in range(3)}
        blocks = {coord: [random_element(rng, p) for p in sorted(points)],  # type: ignore[arg-type]
                  block_of(random_point(rng)): []}
        ok(http.post(url(uuid, "blocks"), json={
            ",".join(map(str, c)): items for c, items in blocks.items()}))
        model.post_blocks(blocks)


def test_random_edits_match_the_model(client: httpx.Client, root: str) -> None:
    rng = random.Random(7)
    model = Model()
    check(client, root, model, rng)
    for _ in range(40):
        random_step(client, root, model, rng)
        check(client, root, model, rng)


def test_partners_are_cleaned_and_rewritten(client: httpx.Client, root: str) -> None:
    """A one-way relationship (no reciprocal) from another block is still found."""
    pre = {"Pos": [1, 1, 1], "Kind": "PreSyn", "Tags": ["t"],
           "Rels": [{"Rel": "PreSynTo", "To": [30, 1, 1]}, {"Rel": "PreSynTo", "To": [2, 2, 2]}]}
    post = {"Pos": [30, 1, 1], "Kind": "PostSyn"}
    other = {"Pos": [2, 2, 2], "Kind": "PostSyn", "Rels": [{"Rel": "PostSynTo", "To": [1, 1, 1]}]}
    ok(client.post(url(root, "elements"), json=[pre, post, other]))
    ok(client.post(url(root, "move/30_1_1/-40_5_5")))
    got = client.get(url(root, "elements/10_10_10/0_0_0")).json()
    assert got[0]["Rels"] == [{"Rel": "PreSynTo", "To": [-40, 5, 5]},
                              {"Rel": "PreSynTo", "To": [2, 2, 2]}]
    ok(client.delete(url(root, "element/-40_5_5")))
    ok(client.delete(url(root, "element/2_2_2")))
    (only,) = client.get(url(root, "elements/10_10_10/0_0_0")).json()
    assert only == {"Pos": [1, 1, 1], "Kind": "PreSyn", "Tags": ["t"], "Prop": {}, "Rels": []}
    assert client.get(url(root, "tag/t")).json() == [
        {"Pos": [1, 1, 1], "Kind": "PreSyn", "Tags": ["t"], "Prop": {}}]
    assert client.get(url(root, "elements/1_1_1/100_100_100")).json() == []
    assert client.get(url(root, "blocks/1_1_1/100_100_100")).json() == {}


def test_versions_keep_their_own_elements(client: httpx.Client, root: str) -> None:
    rng = random.Random(3)
    parent = Model()
    for _ in range(4):
        random_step(client, root, parent, rng)
    kid = child(client, root)
    model = parent.copy()
    for _ in range(10):
        random_step(client, kid, model, rng)
        check(client, kid, model, rng)
    check(client, root, parent, rng)
    assert client.post(url(root, "elements"), json=[]).status_code == 409  # committed


BAD_POSTS = [
    (b"[{", "not valid JSON"),
    (b'{"Pos": [1, 2, 3]}', "JSON array"),
    (b'[{"Pos": [1, 2, 3], "Kind": "Presyn"}]', "Kind"),
    (b'[{"Pos": [1, 2], "Kind": "Note"}]', "Pos"),
    (b'[{"Pos": [1, 2, 2147483648], "Kind": "Note"}]', "32-bit"),
    (b'[{"Pos": [1, 2, 3.5], "Kind": "Note"}]', "integers"),
    (b'[{"Kind": "Note"}]', "lacks Pos"),
    (b'[{"Pos": [1, 2, 3], "Kind": "Note", "Tags": [1]}]', "Tags"),
    (b'[{"Pos": [1, 2, 3], "Kind": "Note", "Tags": "t"}]', "Tags"),
    (b'[{"Pos": [1, 2, 3], "Kind": "Note", "Prop": {"a": 1}}]', "Prop"),
    (b'[{"Pos": [1, 2, 3], "Kind": "Note", "Rels": [{"Rel": "Near", "To": [1, 1, 1]}]}]',
     "Rel"),
    (b'[{"Pos": [1, 2, 3], "Kind": "Note", "Rels": [{"Rel": "PreSynTo"}]}]', "To"),
]


def test_bad_input_changes_nothing(client: httpx.Client, root: str) -> None:
    good = [{"Pos": [1, 2, 3], "Kind": "PreSyn", "Tags": ["x"],
             "Rels": [{"Rel": "PreSynTo", "To": [9, 9, 9]}]}]
    ok(client.post(url(root, "elements"), json=good))
    before = client.get(url(root, "all-elements")).json()
    for body, words in BAD_POSTS:
        # a valid element first: the post is refused as a whole
        text = body if not body.startswith(b"[{\"") else b'[{"Pos": [5, 5, 5], "Kind": "Note"},' \
            + body[1:]
        got = client.post(url(root, "elements"), content=text)
        assert got.status_code == 400, (body, got.text)
        assert words in got.json()["error"], (words, got.json()["error"])
    misplaced = client.post(url(root, "blocks"), json={"0,0,0": [
        {"Pos": [5, 5, 5], "Kind": "Note"}, {"Pos": [8, 0, 0], "Kind": "Note"}]})
    assert misplaced.status_code == 400 and "lies in block 1,0,0" in misplaced.json()["error"]
    assert client.post(url(root, "blocks"), json={"0,0": []}).status_code == 400
    missing = client.delete(url(root, "element/4_4_4"))
    assert missing.status_code == 404 and "no element at 4_4_4" in missing.json()["error"]
    assert client.post(url(root, "move/4_4_4/1_1_1")).status_code == 404
    assert client.delete(url(root, "element/1_2")).status_code == 400
    assert client.get(url(root, "elements/0_1_1/0_0_0")).status_code == 400
    assert client.get(url(root, "tag/x?relationships=maybe")).status_code == 400
    assert client.get(url(root, "all-elements")).json() == before


def test_mutation_ids_and_info(client: httpx.Client, root: str) -> None:
    first = ok(client.post(url(root, "elements?u=ann"), json=[{"Pos": [0, 0, 0],
                                                               "Kind": "Note"}]))
    second = ok(client.post(url(root, "move/0_0_0/1_1_1")))
    assert int(second.headers["X-Mutation-Id"]) > int(first.headers["X-Mutation-Id"])
    info = client.get(url(root, "info")).json()
    assert info["Base"]["TypeName"] == "annotation"
    assert info["Extended"]["BlockSize"] == [BLOCK] * 3
    assert "element-move" in client.get(url(root, "help")).text


def test_concurrent_posts_lose_nothing(server: Any) -> None:
    """Posts into the same blocks at once: each is planned outside the transaction and
    planned again inside it when another changed its blocks meanwhile."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        uuid = new_annotation(http)
        ok(http.post(url(uuid, "elements"), json=[{"Pos": [0, 0, 0], "Kind": "PreSyn"}]))

    def work(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for step in range(5):
                ok(http.post(url(uuid, "elements"), json=[
                    {"Pos": [i % 16, worker + 1, step], "Kind": "PostSyn", "Tags": ["c"],
                     "Rels": [{"Rel": "PostSynTo", "To": [0, 0, 0]}]} for i in range(20)]))

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(work, range(6)))
    with httpx.Client(base_url=server.url, timeout=60) as http:
        stats = http.get(url(uuid, "scan")).json()
        assert stats["Elements"] == 1 + 6 * 5 * 16
        assert len(http.get(url(uuid, "tag/c")).json()) == 6 * 5 * 16
        ok(http.delete(url(uuid, "element/0_0_0")))  # every partner block is found
        assert http.get(url(uuid, "scan")).json()["Relationships"] == 0


async def test_log_records_carry_dvids_fields(in_process: InProcess) -> None:
    service, repo, node, h = in_process.service, in_process.repo, in_process.node, in_process.syn
    who = ModInfo("ann", "tracer")
    await ops.post_elements(h, [{"Pos": [1, 2, 3], "Kind": "Note", "Tags": [], "Prop": {},
                                 "Rels": []}], who)
    await ops.move_element(h, (1, 2, 3), (4, 5, 6), who)
    await ops.delete_element(h, (4, 5, 6), who)
    records = [r for r in await service.repos.mutations(repo) if r.get("DataName") == "syn"]
    assert [{k: r.get(k) for k in ("Action", "Point", "From", "To", "User", "App", "UUID")}
            for r in records] == [
        {"Action": "element-post", "Point": None, "From": None, "To": None, "User": "ann",
         "App": "tracer", "UUID": node.uuid},
        {"Action": "element-move", "Point": None, "From": [1, 2, 3], "To": [4, 5, 6],
         "User": "ann", "App": "tracer", "UUID": node.uuid},
        {"Action": "element-delete", "Point": [4, 5, 6], "From": None, "To": None,
         "User": "ann", "App": "tracer", "UUID": node.uuid}]
    assert records[0]["Elements"] == 1 and records[0]["Blocks"] == 1
