"""Bodies of the Segmentation type through a real GraphQL client, against real fly
segmentation ingested over REST: body fields against numpy, many bodies in one query, and
(in process) the loaders reading them in one batch."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from dvidql.config import Settings
from dvidql.datatypes.labelmap import bodies as body_ops
from dvidql.datatypes.labelmap import model as labelmap_model
from dvidql.datatypes.labelmap import ops as labelmap_ops
from dvidql.datatypes.voxels import parse_geometry
from dvidql.schema import schema
from dvidql.schema.context import Context
from dvidql.service import Service
from dvidql.storage.memory import MemoryBlobStore, memory_meta_store
from tests.conftest import LiveServer
from tests.schema.conftest import Gql, ws_session

FIXTURES = Path(__file__).resolve().parents[1] / "codec" / "fixtures"
BLOCK = 32
SHAPE = (64, 64, 128)  # z, y, x

BODY_FIELDS = """id voxelCount supervoxels supervoxelSizes { id voxelCount } blockCount
  boundingBox { minPoint maxPoint } lastModified { mutationId user time app }"""


def _sample(name: str) -> np.ndarray:
    raw = gzip.decompress((FIXTURES / f"{name}-64x64x64-sample1.dat.gz").read_bytes())
    return np.frombuffer(raw, "<u8").reshape(64, 64, 64).astype(np.uint64)


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
    volume = np.concatenate([_sample("fib19"), _sample("cx")], axis=2)
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
    volume = np.concatenate([_sample("fib19"), _sample("cx")], axis=2)
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
