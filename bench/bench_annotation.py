"""annotation through REST: posting synapses, and reading them all back, each against raw
LMDB in the same run.

Synthetic synapses: a T-bar (``PreSyn``, tagged ``tbar``, with ``PreSynTo`` relationships to
its partners) and four ``PostSyn`` partners within 30 voxels of it, each with a
``PostSynTo`` back, scattered uniformly in a cube sized for about ``--density`` elements per
64^3 block. ``--elements`` of them (1,000,000 by default) are posted as JSON arrays of
``--batch`` elements (whole synapses), one after another over one keep-alive connection,
into a fresh annotation instance of a real ``dvidql serve`` on a temporary embedded store.

Baseline: the least storage work the same post needs, with the same bytes stored: in a raw
LMDB environment beside it, for each batch, one synced write transaction that reads each
touched block's stored JSON list and writes it back with the batch's elements of that block
appended (their JSON made before timing). dvidql also validates every element, keeps the tag
and inbound-relationship indices, goes through HTTP and logs the mutation.

Read: ``GET .../all-elements`` against concatenating every stored block value of the raw
environment into the same ``{"x,y,z": [...]}`` object.

Run: ``python -m bench.bench_annotation [--elements 1000000] [--batch 50000]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import lmdb
import numpy as np
import orjson

from bench.harness import Bench, dvidql_command, free_port, serve
from dvidql.codec.annotation import encode_block_map, group_by_block
from dvidql.datatypes.annotation.keys import block_tkey, decode_block_tkey

BLOCK = (64, 64, 64)
PARTNERS = 4
REACH = 30  # voxels between a T-bar and its partners, at most along each axis


def synapses(count: int, density: float, seed: int = 0) -> list[dict[str, Any]]:
    """About ``count`` elements, whole synapses in order, as clients post them."""
    rng = np.random.default_rng(seed)
    n = count // (PARTNERS + 1)
    side = round((count / density) ** (1 / 3) * 64)
    pre = rng.integers(REACH, side - REACH, size=(n, 3))
    post = pre[:, None, :] + rng.integers(-REACH, REACH + 1, size=(n, PARTNERS, 3))
    out: list[dict[str, Any]] = []
    for tbar, partners in zip(pre.tolist(), post.tolist(), strict=True):
        out.append({"Pos": tbar, "Kind": "PreSyn", "Tags": ["tbar"], "Prop": {"conf": "0.9"},
                    "Rels": [{"Rel": "PreSynTo", "To": p} for p in partners]})
        out.extend({"Pos": p, "Kind": "PostSyn", "Tags": [], "Prop": {},
                    "Rels": [{"Rel": "PostSynTo", "To": tbar}]} for p in partners)
    return out


def raw_batches(batches: list[list[dict[str, Any]]]) -> list[list[tuple[bytes, bytes]]]:
    """Each batch's (block key, JSON of its elements in that block), made before timing."""
    return [[(block_tkey(coord), orjson.dumps(items))
             for coord, items in group_by_block(batch, BLOCK)] for batch in batches]


def raw_post(env: lmdb.Environment, pairs: list[tuple[bytes, bytes]]) -> None:
    """Read each block's list, append the new elements, write it, in one synced txn."""
    with env.begin(write=True) as txn:
        for key, new in pairs:
            old = txn.get(key)
            txn.put(key, new if old is None else old[:-1] + b"," + new[1:])


def timed(bench: Bench, case: str, ops: list[Any], run: Any, group: str,
          baseline: bool = False) -> float:
    """Run ``run(op)`` for each op once; returns the wall time in seconds."""
    latencies = []
    start = time.perf_counter_ns()
    for op in ops:
        t0 = time.perf_counter_ns()
        run(op)
        latencies.append(time.perf_counter_ns() - t0)
    total = time.perf_counter_ns() - start
    bench.record(case, len(ops), [total], latencies, baseline, group=group)
    return total / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--elements", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000, help="elements per POST")
    parser.add_argument("--density", type=float, default=50.0,
                        help="elements per 64^3 block, on average")
    args = parser.parse_args()
    elements = synapses(args.elements, args.density)
    step = args.batch - args.batch % (PARTNERS + 1)
    batches = [elements[i:i + step] for i in range(0, len(elements), step)]
    bodies = [orjson.dumps(b) for b in batches]
    prepared = raw_batches(batches)
    bench = Bench("annotation", warmup=0, repeats=1, params={
        "elements": len(elements), "batch": step, "density": args.density,
        "blocks": len({k for pairs in prepared for k, _ in pairs}),
        "body_mb": round(sum(map(len, bodies)) / 1e6, 1), "python": sys.version.split()[0]})
    with tempfile.TemporaryDirectory() as tmp:
        env = lmdb.open(str(Path(tmp) / "raw"), map_size=1 << 34)
        raw_s = timed(bench, "raw LMDB read+append+write per block", prepared,
                      lambda pairs: raw_post(env, pairs), "POST elements", baseline=True)
        port = free_port()
        with serve(dvidql_command(port, "--data", str(Path(tmp) / "dvidql")), port) as url, \
                httpx.Client(base_url=url, timeout=600) as client:
            root = client.post("/api/repos", json={}).json()["root"]
            client.post(f"/api/repo/{root}/instance", json={
                "typename": "annotation", "dataname": "synapses"}).raise_for_status()
            path = f"/api/node/{root}/synapses"
            ours_s = timed(bench, "dvidql POST elements", bodies,
                           lambda body: client.post(f"{path}/elements",
                                                    content=body).raise_for_status(),
                           "POST elements")

            def raw_all(_: None) -> bytes:
                with env.begin() as txn:
                    return encode_block_map((decode_block_tkey(k), v) for k, v in txn.cursor())

            timed(bench, "raw LMDB scan + splice", [None], raw_all, "GET all-elements",
                  baseline=True)
            got: list[bytes] = []
            timed(bench, "dvidql GET all-elements", [None],
                  lambda _: got.append(client.get(f"{path}/all-elements").content),
                  "GET all-elements")
            stored = sum(len(v) for v in orjson.loads(got[0]).values())
            distinct = len({tuple(e["Pos"]) for e in elements})  # a later post replaces
            assert stored == distinct, (stored, distinct)
        env.close()
    ours, raw = len(elements) / ours_s, len(elements) / raw_s
    bench.report({"dvidql_elements_per_s": round(ours), "raw_lmdb_elements_per_s": round(raw),
                  "dvidql_over_raw": round(ours / raw, 3)})


if __name__ == "__main__":
    main()
