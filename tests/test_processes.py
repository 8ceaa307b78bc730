"""Two dvidql processes on one PostgreSQL + S3 store behave as one server.

Workers on both processes write, delete, commit, make versions and branch at random, all at
once, on a handful of keys (small values inline in PostgreSQL, large ones in S3). Afterwards
the repo's mutation log, read through GraphQL, must be a gap-free sequence that holds every
acknowledged write and nothing else, that never writes to a committed version, and whose
serial replay in mutation-id order predicts every read, through either process.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import LiveServer, Store
from tests.schema.conftest import ws_session
from tests.services import Services

WORKERS_PER_PROCESS = 4
OPS_PER_WORKER = 40
KEYS = [f"k{i}" for i in range(6)]
BIG = 70 * 1024  # over the 64 KiB inline limit: stored in S3
MUTATIONS = "subscription($r: String!) { mutations(repo: $r, since: 0) }"


@pytest.fixture
def two_servers(services: Services, tmp_path: Path) -> Any:
    store = Store.distributed(services)
    servers = [LiveServer(tmp_path / name, store=store) for name in ("a", "b")]
    for live in servers:
        live.start()
    yield servers
    for live in servers:
        live.stop()


def _value(worker: int, op: int, rng: random.Random) -> bytes:
    text = f"w{worker}-{op}".encode()
    return text + b"." * (BIG if rng.random() < 0.2 else rng.randrange(20))


class Clients:
    """What the workers share: the branches' leaves as last seen, and every acknowledged
    write by its mutation id."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.leaves = {"master": root}
        self.writes: dict[int, tuple[str, str, bytes | None]] = {}  # id -> (uuid, key, value)

    async def refresh_leaf(self, http: httpx.AsyncClient, branch: str) -> None:
        response = await http.get(f"/api/repo/{self.root}/branch-versions/{branch}")
        assert response.status_code == 200, response.text
        self.leaves[branch] = response.json()[0]

    async def worker(self, http: httpx.AsyncClient, worker: int, seed: int) -> None:
        rng = random.Random(seed)
        for op in range(OPS_PER_WORKER):
            branch = rng.choice(sorted(self.leaves))
            leaf = self.leaves[branch]
            roll = rng.random()
            if roll < 0.8:
                key = rng.choice(KEYS)
                if roll < 0.7:
                    value: bytes | None = _value(worker, op, rng)
                    response = await http.post(f"/api/node/{leaf}/kv/key/{key}", content=value)
                else:
                    value = None
                    response = await http.delete(f"/api/node/{leaf}/kv/key/{key}")
                if response.status_code == 200:
                    self.writes[int(response.headers["X-Mutation-Id"])] = (leaf, key, value)
                else:  # the leaf was committed meanwhile, through either process
                    assert response.status_code == 409, response.text
                    assert response.json()["code"] == "VERSION_LOCKED", response.text
                    await self.refresh_leaf(http, branch)
                continue
            committed = await http.post(f"/api/node/{leaf}/commit", json={"note": f"{op}"})
            assert committed.status_code in (200, 409), committed.text
            if roll < 0.93:
                made = await http.post(f"/api/node/{leaf}/newversion", json={})
                name = branch
            else:
                name = f"b{worker}-{op}"
                made = await http.post(f"/api/node/{leaf}/branch", json={"branch": name})
            if made.status_code == 200:
                self.leaves[name] = made.json()["child"]
            else:  # another worker already extended this branch from that leaf
                assert made.status_code == 409, made.text
                await self.refresh_leaf(http, branch)


async def _log(server: LiveServer, root: str, last: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    async with ws_session(server) as ws, asyncio.timeout(60):
        async for result in ws.subscribe(MUTATIONS, r=root):
            records.append(result["mutations"])
            if records[-1]["MutationID"] == last:
                return records
    raise AssertionError("the mutation log ended early")


def _replay(records: list[dict[str, Any]], writes: dict[int, tuple[str, str, bytes | None]]
            ) -> tuple[dict[str, str | None], dict[tuple[str, str], bytes | None]]:
    """The DAG (child -> parent) and the writes (version, key) -> value of a serial replay,
    checking the log's own invariants on the way."""
    parents: dict[str, str | None] = {}
    locked: set[str] = set()
    data: dict[tuple[str, str], bytes | None] = {}
    for record in records:
        action, uuid = record["Action"], record.get("UUID")
        if action == "newrepo":
            parents[uuid] = None
        elif action in ("postkv", "deletekv"):
            assert uuid not in locked, f"mutation {record['MutationID']} wrote a committed version"
            acked = writes.get(record["MutationID"])
            assert acked is not None and acked[:2] == (uuid, record["Key"]), (record, acked)
            if action == "postkv":
                assert acked[2] is not None and record["Bytes"] == len(acked[2])
            data[(uuid, record["Key"])] = acked[2]
        elif action == "commit":
            locked.add(uuid)
        elif action in ("newversion", "branch"):
            assert record["Parent"] in locked, record
            parents[record["Child"]] = record["Parent"]
        else:
            assert action == "newinstance", record
    return parents, data


def _expected(parents: dict[str, str | None], data: dict[tuple[str, str], bytes | None],
              version: str, key: str) -> bytes | None:
    node: str | None = version
    while node is not None:
        if (node, key) in data:
            return data[(node, key)]
        node = parents[node]
    return None


async def test_two_processes_equal_a_serial_replay(two_servers: list[LiveServer]) -> None:
    a, b = two_servers
    async with httpx.AsyncClient(base_url=a.url, timeout=60) as http_a, \
            httpx.AsyncClient(base_url=b.url, timeout=60) as http_b:
        root = (await http_a.post("/api/repos", json={"alias": "shared"})).json()["root"]
        made = await http_b.post(f"/api/repo/{root}/instance",  # on the other process at once
                                 json={"typename": "keyvalue", "dataname": "kv"})
        assert made.status_code == 200, made.text
        clients = Clients(root)
        await asyncio.gather(*(
            clients.worker(http, worker, seed=worker)
            for worker, http in enumerate([http_a, http_b] * WORKERS_PER_PROCESS)))

        last = int((await http_a.get(f"/api/repo/{root}/info")).json()["MutationID"])
        records = await _log(b, root, last)
        assert [r["MutationID"] for r in records] == list(range(1, last + 1))
        parents, data = _replay(records, clients.writes)
        assert {mid for mid, r in enumerate(records, 1)
                if r["Action"] in ("postkv", "deletekv")} == set(clients.writes)
        assert len(parents) > 3 and len(clients.writes) > 100  # the run did real work

        for http in (http_a, http_b):
            dag = (await http.get(f"/api/repo/{root}/info")).json()["DAG"]["Nodes"]
            assert set(dag) == set(parents)
            for version in parents:
                for key in KEYS:
                    response = await http.get(f"/api/node/{version}/kv/key/{key}")
                    want = _expected(parents, data, version, key)
                    if want is None:
                        assert response.status_code == 404, (version, key, response.text)
                    else:
                        assert response.status_code == 200, (version, key, response.text)
                        assert response.content == want, (version, key)


async def test_committed_through_one_is_immutable_through_the_other(
        two_servers: list[LiveServer]) -> None:
    a, b = two_servers
    async with httpx.AsyncClient(base_url=a.url) as http_a, \
            httpx.AsyncClient(base_url=b.url) as http_b:
        root = (await http_a.post("/api/repos", json={})).json()["root"]
        await http_a.post(f"/api/repo/{root}/instance",
                          json={"typename": "keyvalue", "dataname": "kv"})
        assert (await http_b.post(f"/api/node/{root}/kv/key/x", content=b"1")).status_code == 200
        assert (await http_a.post(f"/api/node/{root}/commit")).status_code == 200
        refused = await http_b.post(f"/api/node/{root}/kv/key/x", content=b"2")
        assert refused.status_code == 409 and refused.json()["code"] == "VERSION_LOCKED"
        assert (await http_b.get(f"/api/node/{root}/status")).json() == {"Locked": True}
        again = await http_b.post(f"/api/node/{root}/commit")
        assert again.status_code == 409
        assert (await http_a.get(f"/api/node/{root}/kv/key/x")).content == b"1"
        # A version made through one process is usable through the other's next request.
        child = (await http_b.post(f"/api/node/{root}/newversion", json={})).json()["child"]
        assert (await http_a.post(f"/api/node/{child}/kv/key/x", content=b"3")).status_code == 200
        assert (await http_b.get(f"/api/node/{root[:8]}:master/kv/key/x")).content == b"3"


async def test_grayscale_from_both_processes(two_servers: list[LiveServer]) -> None:
    """Blocks posted through both processes at once land in S3 and PostgreSQL alike: every
    voxel reads back through either one, the extents cover all of them, and a pyramid built
    through one sees the other's blocks."""
    a, b = two_servers
    block, n = 32, 4  # a 4x4x1-block layer, each block posted separately
    rng = np.random.default_rng(3)
    truth = rng.integers(1, 255, (block, block * n, block * n), dtype=np.uint8)
    async with httpx.AsyncClient(base_url=a.url, timeout=60) as http_a, \
            httpx.AsyncClient(base_url=b.url, timeout=60) as http_b:
        root = (await http_a.post("/api/repos", json={})).json()["root"]
        made = await http_b.post(f"/api/repo/{root}/instance", json={
            "typename": "uint8blk", "dataname": "g", "BlockSize": str(block),
            "Compression": "lz4"})
        assert made.status_code == 200, made.text

        async def post(http: httpx.AsyncClient, i: int, j: int) -> None:
            part = truth[:, j * block:(j + 1) * block, i * block:(i + 1) * block]
            response = await http.post(
                f"/api/node/{root}/g/raw/0_1_2/{block}_{block}_{block}/"
                f"{i * block}_{j * block}_0", content=part.tobytes())
            assert response.status_code == 200, response.text

        await asyncio.gather(*(post((http_a, http_b)[(i + j) % 2], i, j)
                               for i in range(n) for j in range(n)))
        size = f"{block * n}_{block * n}_{block}"
        for http in (http_a, http_b):
            got = await http.get(f"/api/node/{root}/g/raw/0_1_2/{size}/0_0_0")
            assert np.array_equal(np.frombuffer(got.content, np.uint8).reshape(truth.shape),
                                  truth)
            extended = (await http.get(f"/api/node/{root}/g/info")).json()["Extended"]
            assert extended["MaxPoint"] == [block * n - 1, block * n - 1, block - 1]
        built = await http_a.post(f"/api/node/{root}/g/pyramid")
        assert built.status_code == 200, built.text
        half = await http_b.get(f"/api/node/{root}/g_1/raw/0_1_2/{block * n // 2}_"
                                f"{block * n // 2}_{block // 2}/0_0_0")
        assert half.status_code == 200, half.text
        sums = truth.reshape(block // 2, 2, block * n // 2, 2, block * n // 2, 2).sum(
            axis=(1, 3, 5), dtype=np.uint16)
        assert np.frombuffer(half.content, np.uint8).tolist() == \
            ((sums + 4) // 8).astype(np.uint8).ravel().tolist()


async def _edit_cycles(http: httpx.AsyncClient, root: str, group: list[int]) -> None:
    """Merge a group, then cleave and re-merge its other supervoxels, again and again."""
    target, *rest = group
    seg = f"/api/node/{root}/seg"
    assert (await http.post(f"{seg}/merge", json=group)).status_code == 200
    for _ in range(6):
        response = await http.post(f"{seg}/cleave/{target}", json=rest)
        assert response.status_code == 200, response.text
        cleaved = response.json()["CleavedLabel"]
        response = await http.post(f"{seg}/merge", json=[target, cleaved])
        assert response.status_code == 200, response.text


async def test_concurrent_body_edits_across_processes(two_servers: list[LiveServer]) -> None:
    """DVID's TestConcurrentMutations through two processes: workers on both edit disjoint
    body groups at once; afterwards both processes serve exactly the expected bodies."""
    from tests.fly_samples import two_samples
    from tests.rest.test_labelmap_bodies import Model, _largest, check

    a, b = (httpx.AsyncClient(base_url=s.url, timeout=120) for s in two_servers)
    async with a, b:
        root = (await a.post("/api/repos", json={})).json()["root"]
        made = await a.post(f"/api/repo/{root}/instance", json={
            "typename": "labelmap", "dataname": "seg", "BlockSize": "32"})
        assert made.status_code == 200, made.text
        model = Model(two_samples())
        posted = await b.post(f"/api/node/{root}/seg/raw/0_1_2/128_64_64/0_0_0",
                              content=model.svs.astype("<u8").tobytes())
        assert posted.status_code == 200, posted.text
        labels = _largest(model, 18)
        groups = [labels[i::6] for i in range(6)]
        await asyncio.gather(*(_edit_cycles(a if i % 2 else b, root, g)
                               for i, g in enumerate(groups)))
        # and edits of one body at once: each merges another body into the same target
        others = [v for v in _largest(model, 100) if v not in labels]
        target, *merged = others
        responses = await asyncio.gather(*(
            (a if i % 2 else b).post(f"/api/node/{root}/seg/merge", json=[target, m])
            for i, m in enumerate(merged)))
        assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    for group in [*groups, others]:
        model.mapping.update({sv: group[0] for sv in group[1:]})
    for live in two_servers:
        with httpx.Client(base_url=live.url, timeout=60) as client:
            check(client, root, model, [g[0] for g in groups] + [target])
