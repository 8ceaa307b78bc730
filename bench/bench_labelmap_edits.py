"""labelmap body edits: merge and cleave latency for bodies of 10, 1,000 and 100,000 blocks,
and server start-up after many mutations.

Bodies are made directly through ``POST indices`` (synthetic indices, a few supervoxels per
body spread over its blocks), so their size is exact and no voxels need writing: merge and
cleave only touch indices and the mapping. Each edit is timed through HTTP against a running
embedded server. Its baseline, in the same run, is the least storage work such an edit needs:
in a raw LMDB environment beside it, read the stored index values involved and write the
results (for a merge, their concatenation; for a cleave, the two halves) in one synced
transaction, with the same value sizes.

Start-up: the time from launching ``dvidql serve`` to its first answered ``size`` query, on a
store holding ``--mutations`` merges, against the same on an empty store. dvidql keeps the
mapping in the versioned store, so this should not grow with the mutation count (DVID
replays its mapping logs at start-up).

Run with ``python -m bench.bench_labelmap_edits [--sizes 10,1000,100000] [--mutations N]``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import lmdb
import numpy as np

from bench.harness import Bench, dvidql_command, free_port, serve
from dvidql.codec.labelindex import (
    LabelIndex,
    encode_label_indices,
    pack_block_coords,
    store_label_index,
)

SUPERVOXELS = 4  # per body
VOXELS = 500  # per supervoxel and block


def synthetic(label: int, blocks: int, first_sv: int) -> LabelIndex:
    """A body of ``blocks`` blocks in a cube, each holding one of its supervoxels."""
    side = int(np.ceil(blocks ** (1 / 3)))
    i = np.arange(blocks)
    coords = np.stack([i % side, (i // side) % side, i // (side * side)], axis=1)
    return LabelIndex.of(label, pack_block_coords(coords),
                         first_sv + (i % SUPERVOXELS).astype(np.uint64),
                         np.full(blocks, VOXELS))


class Labels:
    """Hands out fresh, non-overlapping body and supervoxel ids."""

    def __init__(self) -> None:
        self.next = 1

    def take(self, count: int) -> int:
        first, self.next = self.next, self.next + count
        return first


def make_bodies(client: httpx.Client, uuid: str, labels: Labels, count: int, blocks: int
                ) -> list[LabelIndex]:
    bodies = []
    for _ in range(count):
        sv = labels.take(SUPERVOXELS)
        bodies.append(synthetic(labels.take(1), blocks, sv))
    batch = max(1, 200_000 // (blocks * 2))
    for start in range(0, len(bodies), batch):
        posted = client.post(f"/api/node/{uuid}/seg/indices",
                             content=encode_label_indices(bodies[start:start + batch]))
        posted.raise_for_status()
    return bodies


def raw_edit(env: lmdb.Environment, reads: list[bytes], writes: list[bytes]) -> None:
    """The baseline: read ``reads`` keys, write ``writes`` values, one synced transaction."""
    with env.begin(write=True) as txn:
        for key in reads:
            txn.get(key)
        for n, value in enumerate(writes):
            txn.put(b"out-%d" % n, value)


def measure_edits(bench: Bench, url: str, uuid: str, sizes: list[int], repeats: int,
                  raw_dir: Path) -> None:
    labels = Labels()
    env = lmdb.open(str(raw_dir), map_size=1 << 34)
    with httpx.Client(base_url=url, timeout=600) as client:
        for blocks in sizes:
            pairs = make_bodies(client, uuid, labels, 2 * repeats, blocks)
            stored = [store_label_index(b) for b in pairs]
            with env.begin(write=True) as txn:
                for n, value in enumerate(stored):
                    txn.put(b"in-%d" % n, value)
            group = f"merge {blocks} blocks"

            def raw_merge(i: int, stored: list[bytes] = stored) -> None:
                raw_edit(env, [b"in-%d" % (2 * i), b"in-%d" % (2 * i + 1)],
                         [stored[2 * i] + stored[2 * i + 1]])

            def merge(i: int, pairs: list[LabelIndex] = pairs) -> None:
                client.post(f"/api/node/{uuid}/seg/merge", json=[
                    pairs[2 * i].label, pairs[2 * i + 1].label]).raise_for_status()

            bench.measure("raw LMDB read 2 + write 1", raw_merge, repeats,
                          baseline=True, group=group)
            bench.measure("dvidql POST merge", merge, repeats, group=group)
            group = f"cleave {blocks} blocks"
            # the merged targets have 2 * SUPERVOXELS supervoxels; cleave off one original body
            targets = pairs[0::2]
            gone = pairs[1::2]

            def raw_cleave(i: int, stored: list[bytes] = stored) -> None:
                half = len(stored[2 * i])
                both = stored[2 * i] + stored[2 * i + 1]
                raw_edit(env, [b"out-0"], [both[:half], both[half:]])

            def cleave(i: int, targets: list[LabelIndex] = targets,
                       gone: list[LabelIndex] = gone) -> None:
                client.post(f"/api/node/{uuid}/seg/cleave/{targets[i].label}",
                            json=gone[i].supervoxels().tolist()).raise_for_status()

            bench.measure("raw LMDB read 1 + write 2", raw_cleave, repeats,
                          baseline=True, group=group)
            bench.measure("dvidql POST cleave", cleave, repeats, group=group)
    env.close()


def new_labelmap(client: httpx.Client) -> str:
    uuid: str = client.post("/api/repos", json={}).json()["root"]
    client.post(f"/api/repo/{uuid}/instance",
                json={"typename": "labelmap", "dataname": "seg"}).raise_for_status()
    return uuid


def make_mutations(url: str, uuid: str, count: int, clients: int) -> float:
    """``count`` merges of one-block bodies (16 clients); returns merges per second."""
    with httpx.Client(base_url=url, timeout=600) as client:
        bodies = make_bodies(client, uuid, Labels(), 2 * count, 1)
    start = time.perf_counter()

    def work(part: range) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            for i in part:
                client.post(f"/api/node/{uuid}/seg/merge", json=[
                    bodies[2 * i].label, bodies[2 * i + 1].label]).raise_for_status()

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, [range(k, count, clients) for k in range(clients)]))
    return count / (time.perf_counter() - start)


def startup_seconds(directory: Path, uuid: str, label: int) -> float:
    """Launch to the first answered ``size`` query."""
    port = free_port()
    start = time.perf_counter()
    process = subprocess.Popen(dvidql_command(port, "--data", str(directory)))
    try:
        while True:
            try:
                got = httpx.get(f"http://127.0.0.1:{port}/api/node/{uuid}/seg/size/{label}",
                                timeout=1)
                if got.status_code == 200:
                    return time.perf_counter() - start
                got.raise_for_status()
            except httpx.HTTPError:
                pass
            if process.poll() is not None:
                raise RuntimeError("dvidql serve exited")
            time.sleep(0.01)
    finally:
        process.terminate()
        process.wait(15)


def measure_startup(bench: Bench, root: Path, mutations: int, clients: int) -> float:
    rates = 0.0
    for name, count in (("empty store", 0), (f"after {mutations} merges",
                                                        mutations)):
        directory = root / f"startup-{count}"
        port = free_port()
        with serve(dvidql_command(port, "--data", str(directory)), port) as url:
            with httpx.Client(base_url=url) as client:
                uuid = new_labelmap(client)
                labels = Labels()
                labels.take(10 * mutations)  # clear of the merged bodies' ids
                (probe,) = make_bodies(client, uuid, labels, 1, 1)
            if count:
                rates = make_mutations(url, uuid, count, clients)
        times = [int(startup_seconds(directory, uuid, probe.label) * 1e9) for _ in range(3)]
        bench.record(name, 1, times, list(times), baseline=not count,
                     group="start-up to first size query")
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,1000,100000",
                        help="body sizes in blocks (comma-separated)")
    parser.add_argument("--repeats", type=int, default=5, help="edits timed per size")
    parser.add_argument("--mutations", type=int, default=100_000,
                        help="merges made before the start-up measurement")
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    bench = Bench("labelmap_edits", warmup=0, repeats=1,
                  params={"sizes": sizes, "repeats": args.repeats,
                          "mutations": args.mutations, "python": sys.version.split()[0]})
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        port = free_port()
        with serve(dvidql_command(port, "--data", str(root / "edits")), port) as url:
            with httpx.Client(base_url=url) as client:
                uuid = new_labelmap(client)
            measure_edits(bench, url, uuid, sizes, args.repeats, root / "raw")
        rate = measure_startup(bench, root, args.mutations, args.clients)
    print(bench.table())
    print(f"merges of one-block bodies, {args.clients} clients: {rate:,.0f}/s")
    bench.report({"merges_per_s": rate})


if __name__ == "__main__":
    main()
