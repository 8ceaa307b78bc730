"""The Segmentation type through a real GraphQL client (HTTP and WebSocket), against real
fly segmentation written over REST."""

from __future__ import annotations

import httpx
import numpy as np

from tests.conftest import LiveServer
from tests.fly_samples import sample
from tests.schema.conftest import Gql, ws_session

SEGMENTATION = """
query($v: String!, $p: [Int!]!, $ps: [[Int!]!]!) { version(ref: $v) {
  segmentation(instance: "seg") {
    name version blockSize voxelSize voxelUnits compression maxDownresLevel
    extents { minPoint maxPoint }
    label(point: $p) labels(points: $ps)
    packed: subvolumeUrl(offset: [1, 2, 3], size: [4, 5, 6])
    neuroglancer: subvolumeUrl(offset: [0, 0, 0], size: [64, 64, 64],
                               compression: "googlegzip") } } }
"""


def _volume(server: LiveServer) -> tuple[str, np.ndarray]:
    truth = sample("fib19")
    with httpx.Client(base_url=server.url, timeout=30) as http:
        root = http.post("/api/repos", json={}).json()["root"]
        assert http.post(f"/api/repo/{root}/instance", json={
            "typename": "labelmap", "dataname": "seg", "MaxDownresLevel": "1"}
        ).status_code == 200
        assert http.post(f"/api/node/{root}/seg/raw/0_1_2/64_64_64/64_0_0",
                         content=truth.astype("<u8").tobytes()).status_code == 200
        assert http.post(f"/api/repo/{root}/instance", json={
            "typename": "keyvalue", "dataname": "kv"}).status_code == 200
    return root, truth


async def test_geometry_labels_and_urls(api: Gql, server: LiveServer) -> None:
    root, truth = _volume(server)
    rng = np.random.default_rng(2)
    points = [[int(x) + 64, int(y), int(z)] for x, y, z in rng.integers(0, 64, (50, 3))]
    points.append([0, 0, 0])  # never written
    seg = (await api.run(SEGMENTATION, v=root, p=points[0], ps=points)
           )["version"]["segmentation"]
    assert seg["name"] == "seg" and seg["version"] == root
    assert seg["blockSize"] == [64, 64, 64] and seg["voxelSize"] == [8, 8, 8]
    assert seg["voxelUnits"] == ["nanometers"] * 3
    assert seg["compression"] == "gzip" and seg["maxDownresLevel"] == 1
    assert seg["extents"] == {"minPoint": [64, 0, 0], "maxPoint": [127, 63, 63]}
    want = [str(int(truth[z, y, x - 64])) if x >= 64 else "0" for x, y, z in points]
    assert seg["labels"] == want and seg["label"] == want[0]  # UInt64: decimal strings
    assert int(max(seg["labels"], key=int)) > 2**32
    assert seg["packed"] == f"{server.url}/api/node/{root}/seg/raw/0_1_2/4_5_6/1_2_3"
    assert seg["neuroglancer"].endswith("/raw/0_1_2/64_64_64/0_0_0?compression=googlegzip")
    async with httpx.AsyncClient(timeout=30) as http:  # the URLs work
        assert len((await http.get(seg["packed"])).content) == 4 * 5 * 6 * 8
        assert (await http.get(seg["neuroglancer"])).status_code == 200
    async with ws_session(server) as ws:  # the same over WebSocket
        again = (await ws.run(SEGMENTATION, v=root, p=points[0], ps=points)
                 )["version"]["segmentation"]
        assert again["labels"] == want


async def test_errors(api: Gql, server: LiveServer) -> None:
    root, _ = _volume(server)

    async def refused(code: str, words: str, query: str) -> None:
        error = await api.error(code, query, v=root)
        assert words in error["message"], error

    await refused("BAD_REQUEST", "not labelmap", """query($v: String!) { version(ref: $v) {
        segmentation(instance: "kv") { name } } }""")
    await refused("NOT_FOUND", "no data instance", """query($v: String!) { version(ref: $v) {
        segmentation(instance: "nope") { name } } }""")
    await refused("BAD_REQUEST", "three integers", """query($v: String!) { version(ref: $v) {
        segmentation(instance: "seg") { labels(points: [[1, 2]]) } } }""")
    # GraphQL's Int is 32-bit, so the schema itself refuses coordinates beyond int32
    await refused("GRAPHQL_VALIDATION", "32-bit", """query($v: String!) { version(ref: $v) {
        segmentation(instance: "seg") { label(point: [0, 0, 2147483648]) } } }""")
    await refused("BAD_REQUEST", "compression", """query($v: String!) { version(ref: $v) {
        segmentation(instance: "seg") {
          subvolumeUrl(offset: [0, 0, 0], size: [8, 8, 8], compression: "zstd") } } }""")
