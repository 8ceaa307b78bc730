"""labelmap through REST, each measurement with its baseline in the same run.

A synthetic segmentation (a ``--size``^3 uint64 volume of ``--seeds`` warped, weighted Voronoi
cells with sparse 40-bit ids, about 10-20 labels per 64^3 block, as in real fly EM) is served by
a real ``dvidql serve`` on a temporary data directory, and measured in turn:

* ingest: ``POST .../raw/0_1_2`` of the volume in block-aligned ``size x size x --slab`` slabs of
  packed uint64 LE into a fresh 64^3-block labelmap instance (``--compression``, DVID's default
  gzip unless told), in MB/s of uint64 voxels. The baseline is tensorstore writing the same
  slabs to a zarr v2 array on local disk with 64^3 chunks and blosc lz4 (clevel 5, byte
  shuffle), when tensorstore is importable. Each repeat writes a slightly different volume
  (ids offset by a multiple of 2^41) into a fresh instance or array, because dvidql's blob
  store is content-addressed and would skip blocks it already holds; the last repeat writes the
  volume that the later measurements read. dvidql commits each POST durably (fsync);
  tensorstore's writes end in the page cache. Both stores are read back and compared after.
* label at a point: ``GET .../label/<x>_<y>_<z>`` at ``--point-count`` random points of the
  volume, cycled through by ``--clients`` concurrent keep-alive clients (the load generator of
  ``bench/loadgen.py`` with one request per point) for ``--seconds``, after a one-second
  untimed warm-up, in ``--rounds`` rounds alternating with the baseline; the ratio quoted
  is the median round's. The baseline is a bare Starlette handler (``label_app`` below)
  that parses the point and returns ``{"Label": n}`` encoded as dvidql encodes it, served
  by the same uvicorn configuration (uvloop + httptools) and driven by the same load
  generator. The project's goal: at least 0.6x the bare handler's throughput.
* labels at many points: ``POST .../labels`` with ``--points`` random points per request, one
  keep-alive client, in points/s, against numpy fancy indexing of the same points in the
  in-memory volume.

Further measurements (merge and cleave latency for bodies of 10, 1,000 and 100,000 blocks)
belong in ``STEPS``, as functions of the same signature as ``measure_label_at_point``.

In the table, "x baseline" is time per operation over the baseline's (higher is slower); the
summary quotes throughput ratios, ours over the baseline's.

Run: ``python -m bench.bench_labelmap [--size 256] [--repeats 3] [--seconds 5]
[--steps label,labels] [--compression gzip]``.
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.harness import (
    Bench,
    baseline_command,
    dvidql_command,
    free_port,
    open_zarr,
    serve,
    timed_writes,
)
from bench.loadgen import LoadResult, measure_load, record_load

BLOCK = 64  # block / chunk edge
INSTANCE = "seg"  # the instance the measurements after ingest read
ID_BITS = 40  # label ids are random in [1, 2^40)
VARIANT_STRIDE = np.uint64(1 << (ID_BITS + 1))  # ids of write repeat r are offset by r * this
ZARR_CASE = "tensorstore zarr blosc-lz4"
BARE_CASE = "bare starlette handler"


# ----- the volume ------------------------------------------------------------------------

def segmentation_volume(size: int, seeds: int, seed: int, *, cell: int = 4,
                        candidates: int = 12, warp: float = 6.0) -> np.ndarray:
    """A (z, y, x) uint64 segmentation: each voxel takes the id of its nearest seed in a
    power diagram (per-seed weights vary the cell sizes) of smoothly warped space, so cells are
    irregular, curved blobs. Vectorized per ``cell``-thick z slab: the ``candidates`` seeds
    nearest each coarse cell's centre are found first, then each voxel's nearest among them.
    Deterministic for a seed; a few seconds for 256^3."""
    if size % cell:
        raise ValueError(f"size must be a multiple of {cell}")
    rng = np.random.default_rng(seed)
    sites = rng.uniform(0, size, (seeds, 3)).astype(np.float32)  # x, y, z
    spacing = size / seeds ** (1 / 3)
    weights = (rng.uniform(-0.35, 0.35, seeds) * spacing**2).astype(np.float32)
    ids = np.unique(rng.integers(1, 1 << ID_BITS, 2 * seeds, dtype=np.uint64))
    ids = rng.permutation(ids)[:seeds]
    phase = rng.uniform(0, 2 * np.pi, (3, 2)).astype(np.float32)
    k = np.float32(2 * np.pi / (size / 3))  # three warp periods across the volume

    def warped(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, ...]:
        return (x + warp * np.sin(k * y + phase[0, 0]) * np.cos(k * z + phase[0, 1]),
                y + warp * np.sin(k * z + phase[1, 0]) * np.cos(k * x + phase[1, 1]),
                z + warp * np.sin(k * x + phase[2, 0]) * np.cos(k * y + phase[2, 1]))

    def power_distance(x: np.ndarray, y: np.ndarray, z: np.ndarray,
                       which: np.ndarray | slice) -> np.ndarray:
        s = sites[which]
        return ((x[..., None] - s[..., 0]) ** 2 + (y[..., None] - s[..., 1]) ** 2
                + (z[..., None] - s[..., 2]) ** 2 - weights[which])

    n = size // cell
    centre = (np.arange(n, dtype=np.float32) + 0.5) * cell
    cy, cx = np.meshgrid(centre, centre, indexing="ij")
    axis = np.arange(size, dtype=np.float32)
    vz, vy, vx = np.meshgrid(np.arange(cell, dtype=np.float32), axis, axis, indexing="ij")
    coarse = np.arange(size) // cell
    out = np.empty((size, size, size), np.uint64)
    for layer in range(n):
        near = power_distance(*warped(cx, cy, np.full_like(cx, centre[layer])), slice(None))
        nearest = np.argpartition(near, candidates, axis=-1)[..., :candidates]  # (n, n, c)
        per_voxel = np.broadcast_to(nearest[coarse[:, None], coarse[None, :]],
                                    (cell, size, size, candidates))
        d = power_distance(*warped(vx, vy, vz + layer * cell), per_voxel)
        best = np.take_along_axis(per_voxel, d.argmin(-1)[..., None], -1)[..., 0]
        out[layer * cell:(layer + 1) * cell] = ids[best]
    return out


def write_variant(volume: np.ndarray, repeat: int) -> np.ndarray:
    """The volume of write repeat ``repeat``: repeat 0 is the volume itself, the others offset
    every id so that no block repeats an earlier repeat's content."""
    return volume if repeat == 0 else volume + VARIANT_STRIDE * np.uint64(repeat)


def random_points(count: int, size: int, seed: int) -> np.ndarray:
    """(count, 3) x, y, z voxel points uniform in the volume."""
    return np.random.default_rng(seed).integers(0, size, (count, 3), dtype=np.int64)


def labels_of(volume: np.ndarray, points: np.ndarray) -> np.ndarray:
    return volume[points[:, 2], points[:, 1], points[:, 0]]


# ----- a served instance -----------------------------------------------------------------

@dataclass
class Served:
    """A running ``dvidql serve`` whose labelmap ``name`` at ``uuid`` holds ``volume``."""
    url: str
    port: int
    uuid: str
    name: str
    volume: np.ndarray  # (z, y, x) uint64
    http: httpx.Client

    def path(self, endpoint: str) -> str:
        return f"/api/node/{self.uuid}/{self.name}/{endpoint}"


class Connection:
    """One keep-alive HTTP/1.1 connection (stdlib, so a 32 MiB body is sent without copies);
    non-2xx answers raise."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> bytes:
        self.conn.request(method, path, body=body, headers=headers or {})
        response = self.conn.getresponse()
        data = response.read()
        if not 200 <= response.status < 300:
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return data

    def close(self) -> None:
        self.conn.close()


def add_labelmap(http_client: httpx.Client, uuid: str, name: str, compression: str) -> None:
    http_client.post(f"/api/repo/{uuid}/instance", json={
        "typename": "labelmap", "dataname": name, "BlockSize": f"{BLOCK},{BLOCK},{BLOCK}",
        "Compression": compression}).raise_for_status()


# ----- ingest ----------------------------------------------------------------------------

def ingest_group(size: int, slab: int) -> str:
    return f"ingest {size}x{size}x{slab} slabs"


def ingest_zarr(bench: Bench, volume: np.ndarray, slab: int, repeats: int) -> bool:
    """The ingest baseline (zarr v2, 64^3 chunks, blosc lz4, in a temporary directory);
    False when tensorstore is not importable."""
    if importlib.util.find_spec("tensorstore") is None:
        print("tensorstore is not importable: no ingest baseline")
        return False
    with tempfile.TemporaryDirectory(prefix="bench-zarr-") as root:
        stores: dict[int, Any] = {}

        def start(repeat: int) -> Callable[[int, np.ndarray], object]:
            store = open_zarr(f"{root}/r{repeat}", volume.shape, "<u8", BLOCK, shuffle=1)
            stores[repeat] = store
            return lambda z, part: store[z:z + slab].write(part).result()

        timed_writes(bench, ZARR_CASE, volume, slab, repeats, start, write_variant,
                     baseline=True, group=ingest_group(volume.shape[0], slab))
        if not np.array_equal(stores[0].read().result(), volume):
            raise AssertionError("the zarr array differs from the volume written")
    return True


def ingest_dvidql(bench: Bench, url: str, port: int, volume: np.ndarray, slab: int,
                  repeats: int, compression: str) -> Served:
    """Ingest through ``raw`` POST into fresh instances; the last (``INSTANCE``) holds
    ``volume``, checked by reading it back, and is what the returned :class:`Served` names."""
    http_client = httpx.Client(base_url=url, timeout=300)
    uuid = http_client.post("/api/repos", json={"alias": "bench"}).json()["root"]
    size = volume.shape[0]
    conn = Connection(port)
    headers = {"Content-Type": "application/octet-stream"}

    def start(repeat: int) -> Callable[[int, np.ndarray], object]:
        name = INSTANCE if repeat == 0 else f"{INSTANCE}r{repeat}"
        add_labelmap(http_client, uuid, name, compression)
        prefix = f"/api/node/{uuid}/{name}/raw/0_1_2/{size}_{size}_{slab}/0_0_"
        return lambda z, part: conn.request(
            "POST", f"{prefix}{z}", memoryview(part.astype("<u8", copy=False)).cast("B"),
            headers)

    try:
        timed_writes(bench, f"dvidql REST raw POST ({compression})", volume, slab, repeats,
                     start, write_variant, group=ingest_group(size, slab))
        served = Served(url, port, uuid, INSTANCE, volume, http_client)
        for z in range(0, size, slab):
            got = conn.request("GET", served.path(f"raw/0_1_2/{size}_{size}_{slab}/0_0_{z}"))
            if not np.array_equal(np.frombuffer(got, "<u8").reshape(slab, size, size),
                                  volume[z:z + slab]):
                raise AssertionError(f"dvidql slab at z={z} differs from what was written")
    finally:
        conn.close()
    return served


# ----- label at a point ------------------------------------------------------------------

async def _bare_label(request: Request) -> Response:
    x, y, z = (int(v) for v in request.path_params["point"].split("_"))
    label = ((x * 73856093) ^ (y * 19349663) ^ (z * 83492791)) & ((1 << ID_BITS) - 1)
    return Response(orjson.dumps({"Label": label}), media_type="application/json")


label_app = Starlette(routes=[Route("/api/node/{uuid}/{name}/label/{point}", _bare_label)])
"""The label-at-point baseline: parses the point and answers ``{"Label": n}`` with orjson, as
dvidql's JSON answers are encoded, but reads no store."""


def label_baseline_command(port: int) -> list[str]:
    """``label_app`` under exactly the uvicorn configuration of the harness's baseline."""
    cmd = baseline_command(port)
    cmd[cmd.index("bench.baseline_app:app")] = "bench.bench_labelmap:label_app"
    return cmd


def _joined(results: list[LoadResult]) -> LoadResult:
    """Several load runs as one, for the table."""
    return LoadResult(sum(r.requests for r in results), sum(r.seconds for r in results),
                      [t for r in results for t in r.latencies], sum(r.errors for r in results))


def point_paths(prefix: str, points: np.ndarray) -> list[str]:
    return [f"{prefix}{x}_{y}_{z}" for x, y, z in points.tolist()]


def measure_label_at_point(bench: Bench, served: Served,
                           args: argparse.Namespace) -> dict[str, Any]:
    group = f"GET label at a point, {args.clients} clients"
    points = random_points(args.point_count, served.volume.shape[0], args.seed + 1)
    want = labels_of(served.volume, points)
    for (x, y, z), label in list(zip(points.tolist(), want.tolist(), strict=True))[:200]:
        got = served.http.get(served.path(f"label/{x}_{y}_{z}")).json()
        if got != {"Label": label}:
            raise AssertionError(f"label at {x}_{y}_{z}: {got}, expected {label}")
    port = free_port()
    rounds: list[tuple[LoadResult, LoadResult]] = []
    with serve(label_baseline_command(port), port) as url:
        if set(httpx.get(f"{url}/api/node/u/seg/label/1_2_3").json()) != {"Label"}:
            raise AssertionError("the bare handler does not answer {'Label': n}")
        for _ in range(args.rounds):  # alternated, so that a slow spell of a shared
            # machine weighs on both sides rather than on one
            rounds.append((
                measure_load(served.port, point_paths(served.path("label/"), points),
                             clients=args.clients, seconds=args.seconds),
                measure_load(port, point_paths("/api/node/u/seg/label/", points),
                             clients=args.clients, seconds=args.seconds)))
    base = record_load(bench, BARE_CASE, _joined([b for _, b in rounds]), baseline=True,
                       group=group)
    mine = record_load(bench, "dvidql GET label", _joined([o for o, _ in rounds]), group=group)
    ratios = sorted(o.rate / b.rate for o, b in rounds)
    ratio = ratios[len(ratios) // 2]
    return {
        "label-at-point req/s dvidql / bare starlette (median round)": round(ratio, 3),
        "label-at-point req/s ratio of each round": [round(r, 3) for r in ratios],
        "label-at-point p50 / p99 ms dvidql": f"{mine.p50_us / 1e3:.2f} / "
                                               f"{mine.p99_us / 1e3:.2f}",
        "label-at-point p50 / p99 ms bare starlette": f"{base.p50_us / 1e3:.2f} / "
                                                      f"{base.p99_us / 1e3:.2f}",
        "goal: label-at-point >= 0.6 x bare starlette": "met" if ratio >= 0.6 else "not met",
    }


# ----- labels at many points -------------------------------------------------------------

def measure_labels(bench: Bench, served: Served, args: argparse.Namespace) -> dict[str, Any]:
    group = f"POST labels, {args.points} points a request"
    size = served.volume.shape[0]
    sets = [random_points(args.points, size, args.seed + 100 + i) for i in range(args.requests)]
    bodies = [orjson.dumps(p.tolist()) for p in sets]
    wants = [labels_of(served.volume, p) for p in sets]
    conn = Connection(served.port)
    path = served.path("labels")
    headers = {"Content-Type": "application/json"}
    try:
        for body, want in zip(bodies, wants, strict=True):
            if orjson.loads(conn.request("POST", path, body, headers)) != want.tolist():
                raise AssertionError("POST labels does not return the labels at the points")
        zyx = [(p[:, 2].copy(), p[:, 1].copy(), p[:, 0].copy()) for p in sets]
        volume = served.volume
        base = bench.measure("numpy fancy indexing, in process",
                             lambda i: volume[zyx[i]], args.requests, baseline=True,
                             group=group)
        mine = bench.measure("dvidql POST labels",
                             lambda i: conn.request("POST", path, bodies[i], headers),
                             args.requests, group=group)
    finally:
        conn.close()
    return {
        "labels points/s dvidql": round(mine.ops_per_s * args.points),
        "labels points/s numpy indexing": round(base.ops_per_s * args.points),
        "labels points/s dvidql / numpy indexing": round(mine.ops_per_s / base.ops_per_s, 5),
    }


# ----- the run ---------------------------------------------------------------------------

Step = Callable[[Bench, Served, argparse.Namespace], dict[str, Any]]
STEPS: dict[str, Step] = {
    "label": measure_label_at_point,
    "labels": measure_labels,
}
"""Measurements of the ingested instance, in the order they run."""


@contextmanager
def dvidql_server() -> Iterator[tuple[str, int]]:
    with tempfile.TemporaryDirectory(prefix="bench-dvidql-") as data:
        port = free_port()
        with serve(dvidql_command(port, "--data", data), port) as url:
            yield url, port


def source_state() -> str:
    """The commit measured, marked dirty when dvidql/ has uncommitted changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "dvidql"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" (dvidql/ modified)" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="volume edge (multiple of 64)")
    parser.add_argument("--seeds", type=int, default=300, help="segments (Voronoi seeds)")
    parser.add_argument("--slab", type=int, default=64, help="z thickness of one POST")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of each case")
    parser.add_argument("--compression", default="gzip", choices=["gzip", "lz4", "none"],
                        help="the labelmap instance's block compression")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0,
                        help="per label-at-point load and round")
    parser.add_argument("--rounds", type=int, default=3,
                        help="label-at-point rounds, dvidql and the bare handler in turn")
    parser.add_argument("--point-count", type=int, default=4096,
                        help="distinct random points the label-at-point clients cycle through")
    parser.add_argument("--points", type=int, default=1000, help="points per labels POST")
    parser.add_argument("--requests", type=int, default=20, help="labels POSTs per repeat")
    parser.add_argument("--steps", default=",".join(STEPS),
                        help=f"comma-separated measurements after ingest, of {', '.join(STEPS)}")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    steps = [s for s in args.steps.split(",") if s]
    if unknown := [s for s in steps if s not in STEPS]:
        parser.error(f"unknown steps {unknown}; known: {', '.join(STEPS)}")
    if args.size % BLOCK or args.slab % BLOCK or args.size % args.slab:
        parser.error(f"size and slab must be multiples of {BLOCK}, and size of slab")

    started = time.perf_counter()
    volume = segmentation_volume(args.size, args.seeds, args.seed)
    labels = np.unique(volume)
    print(f"volume {args.size}^3 uint64 made in {time.perf_counter() - started:.1f} s "
          f"({len(labels)} labels)")
    bench = Bench("labelmap", warmup=1, repeats=args.repeats, params={
        "volume": f"{args.size}^3 uint64, {len(labels)} labels (warped weighted Voronoi)",
        "block": f"{BLOCK}^3", "slab": f"{args.size}x{args.size}x{args.slab}",
        "compression": args.compression, "clients": args.clients, "seconds": args.seconds,
        "point_count": args.point_count, "points_per_request": args.points,
        "requests": args.requests, "seed": args.seed, "steps": ",".join(steps),
        "server": "dvidql serve --data (temporary), uvicorn uvloop+httptools",
        "zarr": "v2, blosc lz4 clevel 5 byte shuffle, file", "MB": "10^6 bytes of uint64",
        "source": source_state()})

    summary: dict[str, Any] = {}
    has_zarr = ingest_zarr(bench, volume, args.slab, args.repeats)
    with dvidql_server() as (url, port):
        served = ingest_dvidql(bench, url, port, volume, args.slab, args.repeats,
                               args.compression)
        try:
            group = [r for r in bench.results if r.group == ingest_group(args.size, args.slab)]
            mine = group[-1]
            summary[f"ingest MB/s {mine.name}"] = round(mine.mb_per_s or 0, 1)
            if has_zarr:
                summary[f"ingest MB/s {mine.name} / tensorstore"] = round(
                    (mine.mb_per_s or 0) / (group[0].mb_per_s or 1), 3)
            for name in steps:
                summary.update(STEPS[name](bench, served, args))
        finally:
            served.http.close()
    summary["run seconds"] = round(time.perf_counter() - started, 1)
    bench.report(summary)


if __name__ == "__main__":
    main()
