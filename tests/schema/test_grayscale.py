"""The Grayscale type through a real GraphQL client, against data written over REST."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
from PIL import Image

from tests.conftest import LiveServer
from tests.schema.conftest import Gql, ws_session

GEOMETRY = """
query($v: String!) { version(ref: $v) { grayscale(instance: "g") {
  name version blockSize voxelSize voxelUnits background compression
  extents { minPoint maxPoint }
  scales { level name voxelSize extents { minPoint maxPoint } } } } }
"""


def make_volume(server: LiveServer) -> tuple[str, np.ndarray]:
    """A repo with a 64^3 lz4 grayscale at (0, 32, 0) and its pyramid; returns (root, voxels)."""
    truth = (np.arange(64**3, dtype=np.uint32) * 7919 % 253).astype(np.uint8)
    truth = truth.reshape(64, 64, 64)
    with httpx.Client(base_url=server.url, timeout=30) as http:
        root = http.post("/api/repos", json={"alias": "gql-gray"}).json()["root"]
        assert http.post(f"/api/repo/{root}/instance", json={
            "typename": "uint8blk", "dataname": "g", "VoxelSize": "4,4,40"}).status_code == 200
        assert http.post(f"/api/node/{root}/g/raw/0_1_2/64_64_64/0_32_0",
                         content=truth.tobytes()).status_code == 200
        assert http.post(f"/api/node/{root}/g/pyramid").status_code == 200
    return root, truth


async def test_geometry_scales_and_urls(api: Gql, server: LiveServer) -> None:
    root, _ = make_volume(server)
    g = (await api.run(GEOMETRY, v=root))["version"]["grayscale"]
    assert g["name"] == "g" and g["version"] == root
    assert g["blockSize"] == [32, 32, 32] and g["voxelSize"] == [4, 4, 40]
    assert g["voxelUnits"] == ["nanometers"] * 3 and g["background"] == 0
    assert g["compression"] == "lz4"
    assert g["extents"] == {"minPoint": [0, 32, 0], "maxPoint": [63, 95, 63]}
    assert [(s["level"], s["name"], s["voxelSize"]) for s in g["scales"]] == [
        (0, "g", [4, 4, 40]), (1, "g_1", [8, 8, 80]), (2, "g_2", [16, 16, 160])]
    assert g["scales"][1]["extents"] == {"minPoint": [0, 0, 0], "maxPoint": [31, 63, 31]}
    urls = (await api.run(
        """query($v: String!) { version(ref: $v) { grayscale(instance: "g") {
             box: subvolumeUrl(offset: [1, 2, 3], size: [4, 5, 6])
             slice: sliceUrl(plane: XZ, offset: [0, 40, 0], size: [64, 64], format: "jpg:80")
             coarse: sliceUrl(plane: XY, offset: [0, 0, 5], size: [16, 16], scale: 1) } } }""",
        v=root))["version"]["grayscale"]
    assert urls["box"] == f"{server.url}/api/node/{root}/g/raw/0_1_2/4_5_6/1_2_3"
    assert urls["slice"] == f"{server.url}/api/node/{root}/g/raw/0_2/64_64/0_40_0/jpg:80"
    assert urls["coarse"] == f"{server.url}/api/node/{root}/g_1/raw/0_1/16_16/0_0_5/png"
    async with httpx.AsyncClient(timeout=30) as http:  # the URLs work
        assert len((await http.get(urls["box"])).content) == 4 * 5 * 6
        assert (await http.get(urls["slice"])).headers["content-type"] == "image/jpeg"


async def test_inline_voxels_and_slices(server: LiveServer) -> None:
    root, truth = make_volume(server)
    async with ws_session(server) as ws:  # the same fields over a WebSocket
        data = (await ws.run(
            """query($v: String!) { version(ref: $v) { grayscale(instance: "g") {
                 box: subvolume(offset: [10, 40, 20], size: [30, 20, 10])
                 xy: slice(plane: XY, offset: [5, 35, 7], size: [40, 30])
                 yz: slice(plane: YZ, offset: [9, 32, 0], size: [64, 64])
                 coarse: subvolume(offset: [0, 16, 0], size: [32, 32, 32], scale: 1) } } }""",
            v=root))["version"]["grayscale"]
    box = np.frombuffer(base64.b64decode(data["box"]), np.uint8).reshape(10, 20, 30)
    np.testing.assert_array_equal(box, truth[20:30, 8:28, 10:40])
    xy = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["xy"]))))
    np.testing.assert_array_equal(xy, truth[7, 3:33, 5:45])
    yz = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["yz"]))))
    np.testing.assert_array_equal(yz, truth[:, :, 9])
    coarse = np.frombuffer(base64.b64decode(data["coarse"]), np.uint8).reshape(32, 32, 32)
    sums = truth.reshape(32, 2, 32, 2, 32, 2).astype(int).sum(axis=(1, 3, 5))
    np.testing.assert_array_equal(coarse, (sums + 4) // 8)


async def test_errors(api: Gql, server: LiveServer) -> None:
    root, _ = make_volume(server)
    query = """query($v: String!, $i: String!, $o: [Int!]!, $s: [Int!]!, $k: Int!) {
      version(ref: $v) { grayscale(instance: $i) { subvolume(offset: $o, size: $s, scale: $k)
      } } }"""
    too_big = await api.error("PAYLOAD_TOO_LARGE", query, v=root, i="g", o=[0, 0, 0],
                              s=[512, 512, 64], k=0)
    assert f"/api/node/{root}/g/raw/0_1_2/512_512_64/0_0_0" in too_big["message"]
    await api.error("BAD_REQUEST", query, v=root, i="g", o=[0, 0], s=[1, 1, 1], k=0)
    await api.error("BAD_REQUEST", query, v=root, i="g", o=[0, 0, 0], s=[0, 1, 1], k=0)
    await api.error("BAD_REQUEST", query, v=root, i="g", o=[0, 0, 0], s=[1, 1, 1], k=3)
    await api.error("NOT_FOUND", query, v=root, i="nosuch", o=[0, 0, 0], s=[1, 1, 1], k=0)
    await api.error("BAD_REQUEST", """query($v: String!) { version(ref: $v) {
        grayscale(instance: "g") { slice(plane: XY, offset: [0,0,0], size: [4,4],
        format: "gif") } } }""", v=root)
