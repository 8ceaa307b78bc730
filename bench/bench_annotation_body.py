"""A body's synapses through REST (annotation ``GET label/<body>`` on an instance synced with
a labelmap) and its synaptic partners through GraphQL (``Body.partners``), for bodies of 10,
1,000 and 100,000 synapses, each against raw LMDB in the same run.

The segmentation: three bodies of solid 64^3 blocks in a row along x (one block, 10 blocks,
``--big-blocks`` blocks), posted as gzip-compressed raw uint64 to a real ``dvidql serve`` on
a temporary embedded store, and synapses (``PostSyn`` elements, each with a ``PostSynTo``
relationship to a point of another body) spread uniformly over each body: 10, 1,000 and
100,000 of them.

dvidql computes the answer at the request from the segmentation's label index: the body's
blocks, their stored element lists, and the supervoxel under each element. The baseline is
what a store keeping a per-body denormalization (DVID's label keys) does: one range scan of
the body's per-block element lists (without relationships) in a raw LMDB environment,
joined into one JSON array; for partners, the same scan with relationships, parsed, as the
least a per-body store must read before it can look up the partners' bodies (parsed with
the cyclic collector paused, as dvidql parses).

Also timed: a merge and cleave of the 100,000-synapse body, whose log records then name
every synapse changing body, against the same edits on a labelmap nothing follows.

Run: ``python -m bench.bench_annotation_body [--big-blocks 400] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import gc
import gzip
import struct
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import lmdb
import numpy as np
import orjson

from bench.harness import Bench, dvidql_command, free_port, serve
from dvidql.codec.annotation import bulk, group_by_block, join_arrays, without_rels

BLOCK = 64
SIZES = (10, 1_000, 100_000)


def body_blocks(big: int) -> list[tuple[int, int]]:
    """(first block along x, block count) of each body, in a row along x."""
    counts = (1, 10, big)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).tolist()
    return list(zip(starts, counts, strict=True))


def synapses(first: int, blocks: int, count: int, width: int, rng: np.random.Generator
             ) -> list[dict[str, Any]]:
    """``count`` distinct PostSyn elements spread over ``blocks`` blocks from block x
    ``first``, in the first block row and layer, each pointing at a random voxel of the
    ``width`` voxels wide row outside them."""
    chosen: set[tuple[int, int, int]] = set()
    while len(chosen) < count:
        xs = rng.integers(first * BLOCK, (first + blocks) * BLOCK, count)
        ys, zs = rng.integers(0, BLOCK, (2, count))
        chosen.update(zip(xs.tolist(), ys.tolist(), zs.tolist(), strict=True))
    outside = np.concatenate([np.arange(0, first * BLOCK),
                              np.arange((first + blocks) * BLOCK, width)])
    to = rng.choice(outside, count)
    return [{"Pos": list(p), "Kind": "PostSyn", "Tags": [], "Prop": {},
             "Rels": [{"Rel": "PostSynTo", "To": [int(x), 1, 1]}]}
            for p, x in zip(sorted(chosen)[:count], to.tolist(), strict=True)]


def raw_store(env: lmdb.Environment, bodies: dict[int, list[dict[str, Any]]]) -> None:
    """Each body's elements per block under body-first keys: without relationships (prefix
    0), and with them (prefix 1)."""
    with env.begin(write=True) as txn:
        for body, elements in bodies.items():
            for coord, items in group_by_block(elements, (BLOCK,) * 3):
                key = struct.pack(">Q3i", body, coord[2], coord[1], coord[0])
                txn.put(b"\0" + key, orjson.dumps([without_rels(e) for e in items]))
                txn.put(b"\1" + key, orjson.dumps(items))


def raw_body(env: lmdb.Environment, body: int, prefix: bytes = b"\0") -> bytes:
    lo, hi = prefix + struct.pack(">Q", body), prefix + struct.pack(">Q", body + 1)
    with env.begin() as txn:
        cursor = txn.cursor()
        values = []
        if cursor.set_range(lo):
            for key, value in cursor:
                if key >= hi:
                    break
                values.append(value)
    return join_arrays(values)


def parsed(data: bytes) -> list[Any]:
    """The elements, parsed with the cyclic collector paused, as dvidql parses them."""
    with bulk():
        return orjson.loads(data)  # type: ignore[no-any-return]


PARTNERS = """query($v: String!, $b: UInt64!) { version(ref: $v) {
  segmentation(instance: "seg") { body(id: $b) {
    partners(annotations: "syn") { body outgoing incoming } } } } }"""


def partners(client: httpx.Client, url: str, root: str, body: int) -> list[dict[str, Any]]:
    response = client.post(f"{url}/graphql", json={
        "query": PARTNERS, "variables": {"v": root, "b": str(body)}})
    response.raise_for_status()
    answer = response.json()
    assert "errors" not in answer, answer
    return answer["data"]["version"]["segmentation"]["body"]["partners"]  # type: ignore[no-any-return]


def merge_cost(client: httpx.Client, bench: Bench, node: str, labels: np.ndarray,
               width: int) -> dict[str, float]:
    """A merge of the 100,000-synapse body into the 10-synapse one, then a cleave taking it
    back off, on the synced segmentation (whose edits log which synapses change body) and on
    a copy that nothing follows (the baseline)."""
    client.post(f"/api/repo/{node.rsplit('/', 1)[1]}/instance",
                json={"typename": "labelmap", "dataname": "copy"}).raise_for_status()
    client.post(f"{node}/copy/raw/0_1_2/{width}_{BLOCK}_{BLOCK}/0_0_0",
                params={"compression": "gzip"},
                content=gzip.compress(labels.tobytes(), 1)).raise_for_status()
    group = "merge + cleave of the 100,000-synapse body"
    times = {}
    for name, label, baseline in (("copy", "unsynced labelmap", True),
                                  ("seg", "labelmap synced with the synapses", False)):
        holder = [3]  # the body now holding supervoxel 3, the big body

        def edit(_: int, name: str = name, holder: list[int] = holder) -> None:
            client.post(f"{node}/{name}/merge", json=[1, holder[0]]).raise_for_status()
            cleaved = client.post(f"{node}/{name}/cleave/1", json=[3])
            holder[0] = cleaved.raise_for_status().json()["CleavedLabel"]

        times[name] = bench.measure(label, edit, 1, baseline=baseline, group=group).p50_us
    return {"merge_cleave_synced_p50_ms": round(times["seg"] / 1e3, 1),
            "merge_cleave_unsynced_p50_ms": round(times["copy"] / 1e3, 1),
            "merge_cleave_time_over_unsynced": round(times["seg"] / times["copy"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-blocks", type=int, default=400,
                        help="blocks of the 100,000-synapse body")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(3)
    layout = body_blocks(args.big_blocks)
    width = sum(blocks for _, blocks in layout) * BLOCK
    bodies = {i + 1: synapses(first, blocks, count, width, rng)
              for i, ((first, blocks), count) in enumerate(zip(layout, SIZES, strict=True))}
    labels = np.zeros((BLOCK, BLOCK, width), np.uint64)
    for body, (first, blocks) in zip(bodies, layout, strict=True):
        labels[:, :, first * BLOCK:(first + blocks) * BLOCK] = body
    gc.freeze()  # the test data is permanent: collections need not scan it again and again
    bench = Bench("annotation_body", warmup=1, repeats=args.repeats, params={
        "synapses": list(SIZES), "blocks": [b for _, b in layout],
        "python": sys.version.split()[0]})
    summary: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = lmdb.open(str(Path(tmp) / "raw"), map_size=1 << 32)
        raw_store(env, bodies)
        port = free_port()
        with serve(dvidql_command(port, "--data", str(Path(tmp) / "dvidql")), port) as url, \
                httpx.Client(base_url=url, timeout=600) as client:
            root = client.post("/api/repos", json={}).json()["root"]
            for body in ({"typename": "labelmap", "dataname": "seg"},
                         {"typename": "annotation", "dataname": "syn"}):
                client.post(f"/api/repo/{root}/instance", json=body).raise_for_status()
            node = f"/api/node/{root}"
            client.post(f"{node}/seg/raw/0_1_2/{width}_{BLOCK}_{BLOCK}/0_0_0",
                        params={"compression": "gzip"},
                        content=gzip.compress(labels.tobytes(), 1)).raise_for_status()
            for elements in bodies.values():
                client.post(f"{node}/syn/elements", json=elements).raise_for_status()
            client.post(f"{node}/syn/sync", json={"sync": "seg"}).raise_for_status()
            for body, count in zip(bodies, SIZES, strict=True):
                group = f"body of {count:,} synapses"
                want = sorted(e["Pos"] for e in bodies[body])
                got = orjson.loads(client.get(f"{node}/syn/label/{body}").content)
                assert sorted(e["Pos"] for e in got) == want, body
                assert sorted(e["Pos"] for e in orjson.loads(raw_body(env, body))) == want
                raw = bench.measure("raw LMDB scan of the body's keys",
                                    lambda _, b=body: raw_body(env, b), 1, baseline=True,
                                    group=group)
                ours = bench.measure("dvidql GET label/<body>",
                                     lambda _, b=body: client.get(f"{node}/syn/label/{b}"
                                                                  ).raise_for_status(),
                                     1, group=group)
                summary[f"{count}_p50_ms"] = round(ours.p50_us / 1e3, 2)
                summary[f"{count}_raw_p50_ms"] = round(raw.p50_us / 1e3, 3)
                summary[f"{count}_time_over_raw"] = round(ours.p50_us / raw.p50_us, 1)
                group = f"partners of a body of {count:,} synapses"
                found = partners(client, url, root, body)
                assert sum(p["incoming"] for p in found) == count, (body, found)
                raw = bench.measure("raw LMDB scan with relationships, parsed",
                                    lambda _, b=body: parsed(raw_body(env, b, b"\1")),
                                    1, baseline=True, group=group)
                ours = bench.measure("dvidql GraphQL Body.partners",
                                     lambda _, b=body: partners(client, url, root, b), 1,
                                     group=group)
                summary[f"{count}_partners_p50_ms"] = round(ours.p50_us / 1e3, 2)
                summary[f"{count}_partners_time_over_raw"] = round(ours.p50_us / raw.p50_us, 1)
            summary.update(merge_cost(client, bench, node, labels, width))
        env.close()
    bench.report(summary)


if __name__ == "__main__":
    main()
