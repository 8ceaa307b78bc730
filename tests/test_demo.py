"""The demo store: created once, served; its grayscale looks like tissue at every scale and its
segmentation's bodies are the grayscale's cells."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from dvidql.demo import SPLIT_EVERY, demo_bodies, demo_synapses
from dvidql.synthetic import em_volume, split_cells
from tests.conftest import LiveServer
from tests.test_ingest import halve_labels

BOX = (256, 256, 32)  # x, y, z of the slab compared voxel by voxel
CORNER = (0, 0, 112)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """``dvidql demo`` twice (the second finds the repo), then a server on the store."""
    data = tmp_path_factory.mktemp("demo") / "store"
    for expected in ("created demo repo", "already present"):
        run = subprocess.run([sys.executable, "-m", "dvidql", "demo", "--data", str(data)],
                             capture_output=True, text=True, check=True)
        assert expected in run.stdout
    live = LiveServer(data)
    live.start()
    try:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            yield http
    finally:
        live.stop()


@pytest.fixture(scope="module")
def cells() -> np.ndarray:
    """The cell labels the demo's grayscale was drawn from."""
    return em_volume(256)[1]


def _slab(cells: np.ndarray) -> np.ndarray:
    return cells[CORNER[2]:CORNER[2] + BOX[2], CORNER[1]:CORNER[1] + BOX[1],
                 CORNER[0]:CORNER[0] + BOX[0]]


def _labels(http: httpx.Client, size: tuple[int, int, int], offset: tuple[int, int, int],
            **params: str) -> np.ndarray:
    url = (f"/api/node/:master/segmentation/raw/0_1_2/{'_'.join(map(str, size))}/"
           f"{'_'.join(map(str, offset))}")
    response = http.get(url, params=params)
    assert response.status_code == 200, response.text
    return np.frombuffer(response.content, "<u8").reshape(size[::-1])


def test_demo_grayscale(demo: httpx.Client) -> None:
    http = demo
    (repo,) = http.get("/api/repos/info").json().values()
    instances = repo["DataInstances"]
    assert {"grayscale", "grayscale_1", "grayscale_2"} <= set(instances)
    ext = instances["grayscale"]["Extended"]
    assert ext["MinPoint"] == [0, 0, 0] and ext["MaxPoint"] == [255, 255, 255]
    assert ext["BlockSize"] == [64, 64, 64]
    assert "jpeg" in instances["grayscale"]["Base"]["Compression"]
    assert instances["grayscale_2"]["Extended"]["MaxPoint"] == [63, 63, 63]
    for name, size in (("grayscale", 256), ("grayscale_1", 128), ("grayscale_2", 64)):
        png = http.get(f"/api/node/:master/{name}/raw/xy/{size}_{size}/0_0_{size // 2}")
        pixels = np.asarray(Image.open(io.BytesIO(png.content))).astype(int)
        # bright cell interiors, dark membranes, nothing flat or empty
        assert 140 < np.median(pixels) < 210, name
        assert (pixels < np.median(pixels) - 50).mean() > 0.03, name
        assert pixels.std() > 15, name


def test_demo_segmentation_is_the_cells(demo: httpx.Client, cells: np.ndarray) -> None:
    """Supervoxels are half cells; bodies are whole cells but in the cells left split; the
    served grayscale is dark exactly along the bodies' borders between cells."""
    http = demo
    (repo,) = http.get("/api/repos/info").json().values()
    seg = repo["DataInstances"]["segmentation"]
    assert seg["Base"]["TypeName"] == "labelmap"
    ext = seg["Extended"]
    assert ext["BlockSize"] == [64, 64, 64] and ext["MaxDownresLevel"] == 2
    assert ext["MinPoint"] == [0, 0, 0] and ext["MaxPoint"] == [255, 255, 255]

    slab = _slab(cells)
    svs = _labels(http, BOX, CORNER, supervoxels="true")
    np.testing.assert_array_equal(svs, _slab(split_cells(cells)))
    bodies = _labels(http, BOX, CORNER)
    np.testing.assert_array_equal(bodies, _slab(demo_bodies(cells)))
    # the mapping is exercised: most voxels' body is not their supervoxel, some are
    assert 0.2 < (bodies != svs).mean() < 0.8
    left_split = slab % SPLIT_EVERY == 0
    np.testing.assert_array_equal(bodies[left_split], svs[left_split])
    # one body per merged cell and one cell per body
    merged = ~left_split
    pairs = np.unique(np.stack([bodies[merged], slab[merged].astype(np.uint64)]), axis=1)
    assert len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == pairs.shape[1]

    # the grayscale's membranes lie on the cell borders the bodies draw
    gray = np.frombuffer(http.get("/api/node/:master/grayscale/raw/0_1_2/"
                                  f"{'_'.join(map(str, BOX))}/{'_'.join(map(str, CORNER))}"
                                  ).content, np.uint8).reshape(BOX[::-1]).astype(float)
    cell_of = np.where(merged, bodies, (bodies + 1) // 2)  # a split cell's halves as one
    border = np.zeros(cell_of.shape, bool)
    border[:, :, 1:] |= cell_of[:, :, 1:] != cell_of[:, :, :-1]
    border[:, :, :-1] |= cell_of[:, :, 1:] != cell_of[:, :, :-1]
    assert gray[border].mean() < gray[~border].mean() - 50

    # sizes come from the label indices: a merged body is its whole cell
    some = [int(c) for c in np.unique(slab[merged])[:3]]
    for cell in some:
        answer = http.get(f"/api/node/:master/segmentation/size/{2 * cell - 1}").json()
        assert answer == {"voxels": int((cells == cell).sum())}


def test_demo_segmentation_lower_scales(demo: httpx.Client, cells: np.ndarray) -> None:
    http = demo
    svs = split_cells(cells)
    one = halve_labels(svs)
    np.testing.assert_array_equal(_labels(http, (128, 128, 128), (0, 0, 0), scale="1",
                                          supervoxels="true"), one)
    np.testing.assert_array_equal(_labels(http, (64, 64, 64), (0, 0, 0), scale="2",
                                          supervoxels="true"), halve_labels(one))
    # mapped at every scale
    bodies = _labels(http, (64, 64, 64), (0, 0, 0), scale="2")
    assert set(np.unique(bodies).tolist()) <= set(np.unique(demo_bodies(cells)).tolist())


def test_demo_segmentation_through_graphql(demo: httpx.Client, cells: np.ndarray) -> None:
    http = demo
    query = """{ version(ref: ":master") { segmentation(instance: "segmentation") {
                 maxDownresLevel blockSize label(point: [128, 128, 128]) } } }"""
    answer = http.post("/graphql", json={"query": query}).json()
    assert "errors" not in answer, answer
    seg = answer["data"]["version"]["segmentation"]
    assert seg["maxDownresLevel"] == 2 and seg["blockSize"] == [64, 64, 64]
    assert int(seg["label"]) == int(demo_bodies(cells)[128, 128, 128])


def test_demo_synapses_cross_bodies(demo: httpx.Client, cells: np.ndarray) -> None:
    """The demo's synapses: T-bars with partners in other cells, relationships both ways."""
    got = demo.get("/api/node/:master/synapses/elements/256_256_256/0_0_0")
    assert got.status_code == 200
    elements = {tuple(e["Pos"]): e for e in got.json()}
    assert elements == {tuple(e["Pos"]): e for e in demo_synapses(cells)}
    pre = [e for e in elements.values() if e["Kind"] == "PreSyn"]
    assert len(pre) > 200
    for e in pre:
        x, y, z = e["Pos"]
        assert e["Rels"]
        for rel in e["Rels"]:
            px, py, pz = rel["To"]
            assert rel["Rel"] == "PreSynTo" and cells[pz, py, px] != cells[z, y, x]
            back = elements[tuple(rel["To"])]
            assert back["Kind"] == "PostSyn" and back["Rels"][0]["To"] == e["Pos"]
    tagged = demo.get("/api/node/:master/synapses/tag/demo").json()
    assert len(tagged) == len(elements)
    top = demo.get("/api/node/:master/synapse-counts/top/1/AllSyn").json()
    body, count = top[0]["Label"], top[0]["AllSyn"]
    in_body = demo.get(f"/api/node/:master/synapses/label/{body}").json()
    assert len(in_body) == count > 0
