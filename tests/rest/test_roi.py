"""roi over HTTP against a live server, checked against references built here from sets of
blocks, and against the partitions DVID's own tests expect."""

from __future__ import annotations

import itertools

import httpx
import numpy as np
import pytest

from tests.conftest import LiveServer
from tests.rest.conftest import child, new_repo

Block = tuple[int, int, int]  # (z, y, x)

# DVID's roi test data (datatype/roi/roi_test.go) and what its ptquery and partitions answer.
DVID_SPANS = [
    [100, 101, 200, 210], [100, 102, 200, 210], [100, 103, 201, 212],
    [101, 101, 201, 213], [101, 102, 202, 215], [101, 103, 202, 216],
    [102, 101, 200, 210], [102, 103, 201, 216], [102, 104, 203, 217],
    [103, 101, 200, 210], [103, 103, 200, 210], [103, 105, 201, 212],
]
DVID_POINTS = [[6400, 3232, 3167], [6400, 3232, 3200], [6719, 3232, 3200],
               [6720, 3232, 3200], [6720, 4100, 3263], [6720, 3233, 3201], [6720, 3234, 3200]]
DVID_INCLUSIONS = [False, True, True, True, False, True, True]
# (MinChunk x, y, z, MaxChunk x, y, z, TotalBlocks, ActiveBlocks) of each subvolume
DVID_SIMPLE = [
    (199, 99, 98, 203, 103, 102, 125, 25), (204, 99, 98, 208, 103, 102, 125, 40),
    (209, 99, 98, 213, 103, 102, 125, 30), (214, 99, 98, 218, 103, 102, 125, 8),
    (203, 104, 98, 207, 108, 102, 125, 5), (208, 104, 98, 212, 108, 102, 125, 5),
    (213, 104, 98, 217, 108, 102, 125, 5), (199, 101, 103, 203, 105, 107, 125, 11),
    (204, 101, 103, 208, 105, 107, 125, 15), (209, 101, 103, 213, 105, 107, 125, 8),
]
DVID_OPTIMIZED = [
    (200, 101, 100, 205, 105, 104, 150, 61), (206, 101, 100, 211, 105, 104, 150, 67),
    (212, 101, 100, 217, 105, 104, 150, 24),
]


def url(uuid: str, path: str, name: str = "roi") -> str:
    return f"/api/node/{uuid}/{name}/{path}"


def add_roi(http: httpx.Client, uuid: str, name: str = "roi", **settings: str) -> None:
    body = {"typename": "roi", "dataname": name, **settings}
    response = http.post(f"/api/repo/{uuid}/instance", json=body)
    assert response.status_code == 200, response.text


@pytest.fixture
def roi_root(client: httpx.Client, root: str) -> str:
    add_roi(client, root)
    return root


def blocks_of(spans: list[list[int]]) -> set[Block]:
    return {(z, y, x) for z, y, x0, x1 in spans for x in range(x0, x1 + 1)}


def spans_of(blocks: set[Block]) -> list[list[int]]:
    """The merged spans of a set of blocks, sorted by z, y, x0."""
    out: list[list[int]] = []
    for z, y, x in sorted(blocks):
        if out and out[-1][:2] == [z, y] and out[-1][3] == x - 1:
            out[-1][3] = x
        else:
            out.append([z, y, x, x])
    return out


def random_spans(rng: np.random.Generator, n: int, low: int = -6, high: int = 6) -> list[list[int]]:
    """Spans in a small region, so that many overlap or touch."""
    spans = []
    for _ in range(n):
        z, y, x0 = (int(v) for v in rng.integers(low, high, 3))
        spans.append([z, y, x0, x0 + int(rng.integers(0, 5))])
    return spans


def test_round_trip_and_union(client: httpx.Client, roi_root: str) -> None:
    rng = np.random.default_rng(7)
    assert client.get(url(roi_root, "roi")).json() == []
    first, second = random_spans(rng, 60), random_spans(rng, 60)
    posted = client.post(url(roi_root, "roi"), json=first)
    assert posted.status_code == 200 and int(posted.headers["X-Mutation-Id"]) > 0
    got = client.get(url(roi_root, "roi"))
    assert got.headers["content-type"] == "application/json"
    assert got.json() == spans_of(blocks_of(first))
    assert client.post(url(roi_root, "roi"), json=second).status_code == 200
    assert client.get(url(roi_root, "roi")).json() == spans_of(blocks_of(first + second))
    # DVID's spans are disjoint and come back as they were sent
    assert client.post(url(roi_root, "roi"), json=[]).status_code == 200
    deleted = client.delete(url(roi_root, "roi"))
    assert int(deleted.headers["X-Mutation-Id"]) == int(posted.headers["X-Mutation-Id"]) + 3
    assert client.post(url(roi_root, "roi"), json=DVID_SPANS).status_code == 200
    assert client.get(url(roi_root, "roi")).json() == DVID_SPANS
    client.post(url(roi_root, "roi"), json=[[103, 105, 213, 214]])  # touches the last run only
    assert client.get(url(roi_root, "roi")).json() == [*DVID_SPANS[:-1], [103, 105, 201, 214]]


def test_versions_and_delete(client: httpx.Client, roi_root: str) -> None:
    base = [[0, 0, 0, 9], [1, 2, -3, 3]]
    client.post(url(roi_root, "roi"), json=base)
    kid = child(client, roi_root)
    more = [[0, 0, 10, 12], [5, 5, 5, 5]]
    assert client.post(url(kid, "roi"), json=more).status_code == 200
    assert client.get(url(kid, "roi")).json() == spans_of(blocks_of(base + more))
    assert client.get(url(roi_root, "roi")).json() == base
    locked = client.post(url(roi_root, "roi"), json=more)
    assert locked.status_code == 409 and locked.json()["code"] == "VERSION_LOCKED"
    assert client.delete(url(roi_root, "roi")).status_code == 409

    assert client.delete(url(kid, "roi")).status_code == 200
    assert client.get(url(kid, "roi")).json() == []
    assert client.get(url(roi_root, "roi")).json() == base
    grandchild = child(client, kid)
    assert client.get(url(grandchild, "roi")).json() == []
    client.post(url(grandchild, "roi"), json=[[2, 2, 2, 3]])
    assert client.get(url(grandchild, "roi")).json() == [[2, 2, 2, 3]]
    assert client.get(url(kid, "roi")).json() == []


def test_branches_merge_into_the_union(client: httpx.Client, roi_root: str) -> None:
    base = [[0, 0, 0, 3], [1, 1, 1, 1]]
    client.post(url(roi_root, "roi"), json=base)
    left = child(client, roi_root)
    right = child(client, roi_root, "branch", branch="right")
    client.post(url(left, "roi"), json=[[0, 0, 4, 5], [2, 2, 2, 2]])  # grows a stored run
    client.post(url(right, "roi"), json=[[0, 0, 2, 7], [1, 1, 9, 9]])  # grows it otherwise
    for uuid in (left, right):
        client.post(f"/api/node/{uuid}/commit")
    merged = client.post(f"/api/repo/{roi_root}/merge",
                         json={"mergeType": "conflict-free", "parents": [left, right]})
    assert merged.status_code == 200, merged.text
    assert client.get(url(merged.json()["child"], "roi")).json() == [
        [0, 0, 0, 7], [1, 1, 1, 1], [1, 1, 9, 9], [2, 2, 2, 2]]


def test_mask_matches_reference(client: httpx.Client, root: str) -> None:
    add_roi(client, root, "cells", BlockSize="16,8,4")
    assert client.get(url(root, "info", "cells")).json()["Extended"]["BlockSize"] == [16, 8, 4]
    spans = random_spans(np.random.default_rng(3), 80, -4, 4)
    client.post(url(root, "roi", "cells"), json=spans)
    offset, size = (-37, -21, -9), (75, 46, 27)  # not aligned to the 16x8x4 blocks
    got = client.get(url(root, "mask/0_1_2/" + "_".join(map(str, size)) + "/"
                         + "_".join(map(str, offset)), "cells"))
    assert got.status_code == 200 and got.headers["content-type"] == "application/octet-stream"
    volume = np.frombuffer(got.content, np.uint8).reshape(size[2], size[1], size[0])
    inside = blocks_of(spans)
    zs, ys, xs = np.meshgrid(*(np.arange(o, o + n) for o, n in zip(offset[::-1], size[::-1],
                                                                      strict=True)),
                             indexing="ij")
    blocks = np.stack([zs // 4, ys // 8, xs // 16], axis=-1).reshape(-1, 3)
    expected = np.array([tuple(b) in inside for b in blocks.tolist()], np.uint8)
    assert 0 < volume.sum() < volume.size
    assert np.array_equal(volume.reshape(-1), expected)
    empty = client.get(url(root, "mask/0_1_2/10_10_10/100000_0_0", "cells"))
    assert empty.content == bytes(1000)


def test_ptquery_is_a_read(client: httpx.Client, roi_root: str) -> None:
    spans = [*DVID_SPANS, [-1, -1, -2, -1]]  # and a run at negative coordinates
    client.post(url(roi_root, "roi"), json=spans)
    assert client.post(f"/api/node/{roi_root}/commit").status_code == 200
    answer = client.post(url(roi_root, "ptquery"), json=DVID_POINTS)
    assert answer.status_code == 200 and answer.json() == DVID_INCLUSIONS
    rng = np.random.default_rng(11)
    points = [*rng.integers(-80, 80, (300, 3)).tolist(), [-64, -1, -32], [-65, -32, -33]]
    inside = blocks_of(spans)
    expected = [(z // 32, y // 32, x // 32) in inside for x, y, z in points]
    assert any(expected)
    assert client.post(url(roi_root, "ptquery"), json=points).json() == expected
    assert client.post(url(roi_root, "ptquery"), json=[]).json() == []


def test_ptquery_on_a_read_only_server(make_server) -> None:  # type: ignore[no-untyped-def]
    writable: LiveServer = make_server()
    with httpx.Client(base_url=writable.url) as http:
        root = new_repo(http)
        add_roi(http, root)
        http.post(url(root, "roi"), json=[[0, 0, 0, 0]])
    writable.stop()
    read_only: LiveServer = make_server("--read-only", like=writable)
    with httpx.Client(base_url=read_only.url) as http:
        assert http.post(url(root, "ptquery"), json=[[1, 1, 1], [40, 1, 1]]).json() == [
            True, False]
        refused = http.post(url(root, "roi"), json=[[1, 1, 1, 1]])
        assert refused.status_code == 403 and refused.json()["code"] == "READ_ONLY"


def _boxes(answer: dict) -> list[tuple[int, ...]]:  # type: ignore[type-arg]
    return [(*s["MinChunk"], *s["MaxChunk"], s["TotalBlocks"], s["ActiveBlocks"])
            for s in answer["Subvolumes"]]


def test_partition_as_dvid(client: httpx.Client, roi_root: str) -> None:
    client.post(url(roi_root, "roi"), json=DVID_SPANS)
    simple = client.get(url(roi_root, "partition?batchsize=5")).json()
    assert (simple["NumTotalBlocks"], simple["NumActiveBlocks"], simple["NumSubvolumes"]) == (
        1375, 152, 10)
    assert simple["ROI"] == {"MinChunk": [0, 0, 100], "MaxChunk": [217, 105, 103]}
    assert _boxes(simple) == DVID_SIMPLE
    assert simple["Subvolumes"][0]["MinPoint"] == [6368, 3168, 3136]
    assert simple["Subvolumes"][0]["MaxPoint"] == [6527, 3327, 3295]
    optimized = client.get(url(roi_root, "partition?batchsize=5&optimized=true")).json()
    assert (optimized["NumTotalBlocks"], optimized["NumActiveBlocks"],
            optimized["NumSubvolumes"]) == (450, 152, 3)
    assert _boxes(optimized) == DVID_OPTIMIZED
    assert list(optimized["Subvolumes"][0]) == ["MinPoint", "MaxPoint", "MinChunk", "MaxChunk",
                                                "TotalBlocks", "ActiveBlocks"]


def test_partition_covers_the_roi(client: httpx.Client, root: str) -> None:
    add_roi(client, root, "region", BlockSize="8,8,8")
    spans = random_spans(np.random.default_rng(5), 150, -12, 12)
    spans += [[40, 3, 50, 70], [40, 3, 90, 91]]  # far away, with a long empty stretch
    client.post(url(root, "roi", "region"), json=spans)
    inside = blocks_of(spans)
    for query in ("batchsize=4", "batchsize=3&optimized=true", "optimized=on"):
        answer = client.get(url(root, "partition?" + query, "region")).json()
        assert answer["NumSubvolumes"] == len(answer["Subvolumes"])
        assert answer["NumActiveBlocks"] == len(inside)
        assert sum(s["ActiveBlocks"] for s in answer["Subvolumes"]) == len(inside)
        covered: list[Block] = []
        for s in answer["Subvolumes"]:
            (x0, y0, z0), (x1, y1, z1) = s["MinChunk"], s["MaxChunk"]
            box = set(itertools.product(range(z0, z1 + 1), range(y0, y1 + 1),
                                        range(x0, x1 + 1)))
            assert s["TotalBlocks"] == len(box)
            assert s["ActiveBlocks"] == len(box & inside) > 0
            assert s["MinPoint"] == [8 * c for c in s["MinChunk"]]
            assert s["MaxPoint"] == [8 * c + 7 for c in s["MaxChunk"]]
            covered += box & inside
        assert sorted(covered) == sorted(inside)  # every block in exactly one subvolume
    add_roi(client, root, "nothing")
    empty = client.get(url(root, "partition?batchsize=8", "nothing")).json()
    assert empty["NumSubvolumes"] == 0 and empty["Subvolumes"] == []


BAD_SPANS = [
    (b"[[1, 2, 3, 4]", "not valid JSON"),
    (b'{"spans": []}', "JSON list"),
    (b"[1, 2, 3, 4]", "item 0"),
    (b"[[1, 2, 3]]", "item 0"),
    (b'[[0, 0, 0, 1], [1, 2, 3, "4"]]', "item 1"),
    (b"[[1, 2, 3.5, 4]]", "item 0"),
    (b"[[1, 2, true, 4]]", "item 0"),
    (b"[[0, 0, 0, 1], [0, 0, 5, 4]]", "before it starts"),
    (b"[[0, 0, 0, 2147483648]]", "32-bit"),
    (b"[[-2147483649, 0, 0, 1]]", "32-bit"),
]


def test_bad_input_is_refused_and_changes_nothing(client: httpx.Client, roi_root: str) -> None:
    first = client.post(url(roi_root, "roi"), json=[[0, 0, 0, 1]])
    for body, message in BAD_SPANS:
        response = client.post(url(roi_root, "roi"), content=body)
        assert response.status_code == 400, body
        assert message in response.json()["error"], (body, response.json())
    assert client.get(url(roi_root, "roi")).json() == [[0, 0, 0, 1]]
    for body in (b"[[1, 2]]", b"[[1, 2, 3, 4]]", b'[["1", 2, 3]]', b"[[0, 0, 4294967296]]",
                 b"nope"):
        assert client.post(url(roi_root, "ptquery"), content=body).status_code == 400, body
    for query in ("batchsize=0", "batchsize=-1", "batchsize=abc", "batchsize=",
                  "batchsize=99999999999", "batchsize=1025"):
        refused = client.get(url(roi_root, "partition?" + query))
        assert refused.status_code == 400 and "batchsize" in refused.json()["error"]
    assert client.get(url(roi_root, "mask/0_1/10_10/0_0_0")).status_code == 400
    assert client.get(url(roi_root, "mask/0_1_2/10_0_10/0_0_0")).status_code == 400
    assert client.get(url(roi_root, "ptquery")).status_code == 405
    bad_setting = client.post(f"/api/repo/{roi_root}/instance",
                              json={"typename": "roi", "dataname": "x", "BlockSize": "0,1,2"})
    assert bad_setting.status_code == 400
    assert client.get(url(roi_root, "roi")).json() == [[0, 0, 0, 1]]
    # no refused request logged a mutation: the next write takes the next id
    again = client.post(url(roi_root, "roi"), json=[[0, 0, 2, 2]])
    assert int(again.headers["X-Mutation-Id"]) == int(first.headers["X-Mutation-Id"]) + 1
    assert client.get(url(roi_root, "roi")).json() == [[0, 0, 0, 2]]


def test_help_and_types(client: httpx.Client, roi_root: str) -> None:
    assert "ptquery" in client.get(url(roi_root, "help")).text
    assert "partition" in client.get("/api/help/roi").text
    assert client.get("/api/server/types").json()["roi"] == (
        "github.com/janelia-flyem/dvid/datatype/roi")


def _raw(http: httpx.Client, uuid: str, name: str, size: tuple[int, int, int],
         query: str = "") -> str:
    return url(uuid, f"raw/0_1_2/{size[0]}_{size[1]}_{size[2]}/0_0_0{query}", name)


def test_roi_option_of_voxel_requests(client: httpx.Client, roi_root: str) -> None:
    """roi= zeroes (or attenuates) voxels outside on reads and limits writes to the blocks
    it touches, for grayscale (blocks as the roi's) and labels (larger blocks)."""
    spans = [[0, 0, 0, 0], [0, 1, 1, 1], [1, 1, 0, 1]]  # 32^3 blocks, [z, y, x0, x1]
    client.post(url(roi_root, "roi"), json=spans)
    size = (128, 64, 64)  # x, y, z
    inside = np.zeros(size[::-1], bool)
    for z, y, x0, x1 in spans:
        inside[z * 32:(z + 1) * 32, y * 32:(y + 1) * 32, x0 * 32:(x1 + 1) * 32] = True
    rng = np.random.default_rng(5)
    assert client.post(f"/api/repo/{roi_root}/instance",
                       json={"typename": "uint8blk", "dataname": "gray"}).status_code == 200
    first = rng.integers(1, 256, size[::-1], np.uint8)
    client.post(_raw(client, roi_root, "gray", size), content=first.tobytes())
    got = client.get(_raw(client, roi_root, "gray", size, "?roi=roi")).content
    assert np.array_equal(np.frombuffer(got, np.uint8).reshape(first.shape),
                          np.where(inside, first, 0))
    got = client.get(_raw(client, roi_root, "gray", size, "?roi=roi&attenuation=2")).content
    assert np.array_equal(np.frombuffer(got, np.uint8).reshape(first.shape),
                          np.where(inside, first, first >> 2))
    second = rng.integers(1, 256, size[::-1], np.uint8)
    assert client.post(_raw(client, roi_root, "gray", size, "?roi=roi"),
                       content=second.tobytes()).status_code == 200
    got = client.get(_raw(client, roi_root, "gray", size)).content
    assert np.array_equal(np.frombuffer(got, np.uint8).reshape(first.shape),
                          np.where(inside, second, first))

    assert client.post(f"/api/repo/{roi_root}/instance",
                       json={"typename": "labelmap", "dataname": "seg"}).status_code == 200
    labels = rng.integers(1, 5, size[::-1], np.uint64)
    client.post(_raw(client, roi_root, "seg", size), content=labels.tobytes())
    got = client.get(_raw(client, roi_root, "seg", size, "?roi=roi&supervoxels=true")).content
    assert np.array_equal(np.frombuffer(got, "<u8").reshape(labels.shape),
                          np.where(inside, labels, 0))
    again = labels + np.uint64(10)
    assert client.post(_raw(client, roi_root, "seg", size, "?roi=roi"),
                       content=again.tobytes()).status_code == 200
    touched = np.zeros(inside.shape, bool)  # the 64^3 label blocks holding an inside voxel
    touched[:, :, :64] = True
    got = client.get(_raw(client, roi_root, "seg", size, "?supervoxels=true")).content
    assert np.array_equal(np.frombuffer(got, "<u8").reshape(labels.shape),
                          np.where(touched, again, labels))

    for query, status in (("?roi=seg", 400), ("?roi=nosuch", 404),
                          ("?roi=roi&attenuation=9", 400)):
        response = client.get(_raw(client, roi_root, "gray", size, query))
        assert response.status_code == status and response.json()["error"], query


def test_annotation_elements_in_a_roi(client: httpx.Client, roi_root: str) -> None:
    """annotation roi/<name>[,<uuid>]: the elements inside the region, of another block size,
    at the annotation's version or at the region's own."""
    assert client.post(f"/api/repo/{roi_root}/instance",
                       json={"typename": "annotation", "dataname": "syn"}).status_code == 200
    rng = np.random.default_rng(11)
    points = {tuple(int(v) for v in p) for p in rng.integers(-100, 100, (300, 3))}
    elements = [{"Pos": list(p), "Kind": "PostSyn", "Tags": [], "Prop": {}, "Rels": []}
                for p in sorted(points)]
    assert client.post(url(roi_root, "elements", "syn"), json=elements).status_code == 200
    spans = random_spans(rng, 20, -4, 3)
    client.post(url(roi_root, "roi"), json=spans)

    def inside(region: list[list[int]]) -> list[list[int]]:
        blocks = blocks_of(region)
        return sorted(list(p) for p in points
                      if (p[2] // 32, p[1] // 32, p[0] // 32) in blocks)

    def got(path: str) -> list[list[int]]:
        response = client.get(url(roi_root, path, "syn"))
        assert response.status_code == 200, response.text
        return sorted(e["Pos"] for e in response.json())

    assert 0 < len(inside(spans)) < len(points)
    assert got("roi/roi") == inside(spans)
    version = child(client, roi_root)
    more = [[-4, -4, -4, 3], [2, 2, -4, 3]]
    client.post(url(version, "roi"), json=more)
    assert got(f"roi/roi,{version}") == inside(spans + more)
    assert got("roi/roi") == inside(spans)
    assert client.get(url(roi_root, "roi/syn", "syn")).status_code == 400
    assert client.get(url(roi_root, "roi/nosuch", "syn")).status_code == 404
