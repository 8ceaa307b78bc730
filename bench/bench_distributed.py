"""dvidql on its distributed store (PostgreSQL + S3) against its embedded store (LMDB), in
one run, to see what the network store costs and where.

1. Keyvalue ``GET key`` throughput and latency with 16 concurrent keep-alive clients
   (bench/loadgen.py, as bench/bench_rest_get.py), for a small value (inline in PostgreSQL)
   and a large one (over ``Settings.inline_value_bytes``, so an S3 object): on the embedded
   store (the baseline), on the distributed store with one ``dvidql serve``, and with two
   processes on the same database and bucket, the clients split between them (aggregate
   throughput: does a second process add capacity?).
2. bench/bench_grayscale.py's slab writes and random-box reads through REST, on the embedded
   and on the distributed store (same volume, same boxes).
3. Our S3 layer against plain aioboto3: every object of one freshly written grayscale volume
   (lz4 blocks; the bucket is listed to find them) fetched with raw ``get_object`` calls, with
   as many in flight as ``S3BlobStore`` allows (``Settings.s3_concurrency``), then with
   ``S3BlobStore.get_many`` of the same references, both in this process on the same event
   loop type as the server (uvloop); then the same blocks through REST, as ``specificblocks``
   (uncompressed: decoded on the server) and as one ``raw`` read of the whole volume.

The servers are ``scripts/services`` (PostgreSQL with fsync off, Ceph radosgw on an in-memory
OSD), started in a temporary directory and stopped at the end, unless ``DVIDQL_TEST_PG`` and
the other ``DVIDQL_TEST_*`` variables name running ones. Everything is on loopback on one
machine, so the load generator, dvidql, PostgreSQL and radosgw share its cores: the figures
are dvidql's costs, not a network's or a disk's. Each distributed case gets a fresh database
and bucket. No figure is a pass/fail goal; the only checks are that data read back equals
the data written.

The grayscale volume is 256^3 with 128^3 boxes by default: a run then takes about 70 s on
a two-core machine, against about 165 s with bench_grayscale's 512^3 volume and 256^3 boxes
(``--size 512 --box 256``), too close to three minutes when anything else runs. The
servers and fresh databases and buckets come from ``tests/services.py``, so this needs the
test tools (``scripts/setup --test``).

Run: ``python -m bench.bench_distributed [--seconds 4] [--size 256] [--box 128] ...``
(``--help`` lists every size).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import struct
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import aioboto3
import httpx
import numpy as np
import uvloop
from botocore.config import Config

from bench.bench_grayscale import (
    BLOCK,
    BLOCK_SHAPE,
    SLAB,
    HttpConnection,
    add_grayscale,
    random_offsets,
    read_group,
    run_dvidql,
    slab_writer,
    synthetic_volume,
    write_group,
)
from bench.bench_rest_get import check_keys, put_keys
from bench.harness import Bench, CaseResult, dvidql_command, free_port, serve
from bench.loadgen import measure_load, record_load
from dvidql.codec.imageblock import BlockCodec, encode_block
from dvidql.config import Settings
from dvidql.storage.base import content_ref
from dvidql.storage.s3 import S3BlobStore
from tests.services import Services, fresh_bucket, fresh_database, run_script, s3_client

EMBEDDED = "embedded"
ONE = "distributed, 1 process"
TWO = "distributed, 2 processes"
RAW_S3 = "raw aioboto3 get_object"
GET_MANY = "S3BlobStore.get_many"
SPECIFIC = "REST specificblocks"
RAW_REST = "REST raw (whole volume)"
_BLOCK_HEADER = struct.Struct("<4i")  # specificblocks: x, y, z, byte count


# ----- stores ----------------------------------------------------------------------------

@contextmanager
def running_services() -> Iterator[Services]:
    """The servers named by the ``DVIDQL_TEST_*`` environment, or throwaway ones that
    ``scripts/services`` starts for the length of the block (and its watcher stops should
    this process be killed outright)."""
    if os.environ.get("DVIDQL_TEST_PG"):
        yield Services.from_env(os.environ)
        return
    # Directly under the temporary directory: PostgreSQL's user must be able to enter it.
    directory = Path(tempfile.mkdtemp(prefix="dvidql-bench-services-"))
    try:
        run_script("up", directory, "--watch", str(os.getpid()))
        lines = (directory / "env").read_text().splitlines()
        pairs = (line.split("=", 1) for line in lines if "=" in line)
        yield Services.from_env({key: value for key, value in pairs})
    finally:
        run_script("down", directory)


@dataclass(frozen=True)
class Store:
    """Where ``dvidql serve`` keeps its data: its store options and environment, and for the
    distributed store the bucket and key prefix of its blobs."""

    args: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    bucket: str = ""
    prefix: str = ""


def distributed_store(services: Services) -> Store:
    """A fresh PostgreSQL database and S3 bucket (blobs under ``blocks/``)."""
    bucket = fresh_bucket(services)
    return Store(("--meta", fresh_database(services), "--blobs", f"s3://{bucket}/blocks",
                  "--s3-endpoint", services.s3_endpoint),
                 {"DVIDQL_S3_ACCESS_KEY": services.s3_access_key,
                  "DVIDQL_S3_SECRET_KEY": services.s3_secret_key,
                  "DVIDQL_S3_REGION": services.s3_region},
                 bucket=bucket, prefix="blocks/")


@contextmanager
def dvidql(store: Store) -> Iterator[tuple[str, int]]:
    """A ``dvidql serve`` process on ``store``: its base URL and port."""
    port = free_port()
    with serve(dvidql_command(port, *store.args), port, store.env) as url:
        yield url, port


# ----- 1. keyvalue GET -------------------------------------------------------------------

def kv_group(nbytes: int, clients: int) -> str:
    return f"keyvalue GET {_size(nbytes)} value, {clients} clients"


def run_keyvalue(bench: Bench, services: Services, sizes: Sequence[int], clients: int,
                 seconds: float) -> None:
    """One key per value size, read at a child version of the version that wrote it."""
    values = {f"v{n}": os.urandom(n) for n in sizes}

    def load(ports: list[int], paths: dict[str, str], case: str) -> None:
        for key, path in paths.items():
            result = measure_load(ports, path, clients=clients, seconds=seconds)
            nbytes = len(values[key])
            record_load(bench, case, result, baseline=case == EMBEDDED,
                        group=kv_group(nbytes, clients), nbytes=nbytes)

    with tempfile.TemporaryDirectory(prefix="bench-dvidql-") as data, \
            dvidql(Store(("--data", data))) as (url, port):
        load([port], put_keys(url, values), EMBEDDED)
    store = distributed_store(services)
    with dvidql(store) as (url, port):
        paths = put_keys(url, values)
        _check_placement(services, store, values.values())
        load([port], paths, ONE)
        with dvidql(store) as (second_url, second_port):
            check_keys(second_url, paths, values)
            load([port, second_port], paths, TWO)


def _check_placement(services: Services, store: Store, values: Iterable[bytes]) -> None:
    """Fail unless exactly the values over the inline limit are S3 objects, as the cases
    assume."""
    listing = s3_client(services).list_objects_v2(Bucket=store.bucket, Prefix=store.prefix)
    objects = {item["Key"] for item in listing.get("Contents", ())}
    limit = Settings().inline_value_bytes
    for value in values:
        if (store.prefix + content_ref(value) in objects) != (len(value) > limit):
            raise AssertionError(f"a {len(value)}-byte value is {'not ' * (len(value) > limit)}"
                                 f"in S3, with an inline limit of {limit} bytes")


# ----- 3. the S3 layer -------------------------------------------------------------------

def s3_group(blocks: int) -> str:
    return f"all {blocks} blocks (64^3 lz4) of a volume, per op"


def run_s3_layer(bench: Bench, services: Services, volume: np.ndarray, rounds: int) -> None:
    """Write ``volume`` (lz4) into a fresh distributed store, then read every block back
    through raw aioboto3, S3BlobStore and REST."""
    size = volume.shape[0]
    n = size // BLOCK
    coords = [(x, y, z) for z in range(n) for y in range(n) for x in range(n)]
    blocks = {c: np.ascontiguousarray(volume[c[2] * BLOCK:(c[2] + 1) * BLOCK,
                                             c[1] * BLOCK:(c[1] + 1) * BLOCK,
                                             c[0] * BLOCK:(c[0] + 1) * BLOCK]) for c in coords}
    codec = BlockCodec("lz4")
    expected = {content_ref(encode_block(b, codec)) for b in blocks.values()}
    group = s3_group(len(coords))
    store = distributed_store(services)
    with dvidql(store) as (url, port), httpx.Client(base_url=url, timeout=120) as http:
        root = http.post("/api/repos", json={"alias": "bench"}).json()["root"]
        add_grayscale(http, root, "em", "lz4")
        conn = HttpConnection("127.0.0.1", port)
        try:
            write = slab_writer(conn, root, "em", size)
            for z in range(0, size, SLAB):
                write(z, volume[z:z + SLAB])
        finally:
            conn.close()
        uvloop.run(_s3_cases(bench, services, store, expected, group, rounds))
        # A new connection: uvicorn closes one idle for 5 s, as the last may have been.
        conn = HttpConnection("127.0.0.1", port)
        try:
            numbers = ",".join(str(v) for c in coords for v in c)
            specific = f"/api/node/{root}/em/specificblocks?blocks={numbers}"
            out = bytearray(len(coords) * (_BLOCK_HEADER.size + BLOCK**3))
            body = conn.request("GET", specific, out=out)
            _check_block_stream(body, blocks)
            bench.measure(SPECIFIC, lambda i: conn.request("GET", specific, out=out), rounds,
                          group=group, nbytes=len(body))
            whole = f"/api/node/{root}/em/raw/0_1_2/{size}_{size}_{size}/0_0_0"
            out = bytearray(volume.nbytes)
            got = np.frombuffer(conn.request("GET", whole, out=out), np.uint8)
            if not np.array_equal(got.reshape(volume.shape), volume):
                raise AssertionError("REST raw of the whole volume differs from what was written")
            bench.measure(RAW_REST, lambda i: conn.request("GET", whole, out=out), rounds,
                          group=group, nbytes=volume.nbytes)
        finally:
            conn.close()


async def _s3_cases(bench: Bench, services: Services, store: Store, expected: set[str],
                    group: str, rounds: int) -> None:
    """Raw aioboto3 GETs of every listed object, then S3BlobStore.get_many of the same refs,
    both ``Settings.s3_concurrency`` at a time, the client configured as the store's is."""
    concurrency = Settings().s3_concurrency
    config = Config(s3={"addressing_style": "path"}, max_pool_connections=concurrency,
                    retries={"mode": "standard", "total_max_attempts": 1})
    async with aioboto3.Session().client(
            "s3", endpoint_url=services.s3_endpoint, aws_access_key_id=services.s3_access_key,
            aws_secret_access_key=services.s3_secret_key, region_name=services.s3_region,
            config=config) as client:
        keys: list[str] = []
        async for page in client.get_paginator("list_objects_v2").paginate(
                Bucket=store.bucket, Prefix=store.prefix):
            keys.extend(item["Key"] for item in page.get("Contents", ()))
        refs = [key.removeprefix(store.prefix) for key in keys]
        if set(refs) != expected:
            raise AssertionError(f"the bucket holds {len(refs)} objects, not exactly the "
                                 f"{len(expected)} blocks written")

        async def get(key: str) -> bytes:
            response = await client.get_object(Bucket=store.bucket, Key=key)
            async with response["Body"] as body:
                data: bytes = await body.read()
            return data

        async def fetch_all(_: int) -> list[bytes]:
            found: list[bytes] = [b""] * len(keys)
            pending = iter(enumerate(keys))

            async def worker() -> None:
                for i, key in pending:
                    found[i] = await get(key)

            await asyncio.gather(*(worker() for _ in range(min(concurrency, len(keys)))))
            return found

        raw = await fetch_all(0)
        if any(content_ref(data) != ref for data, ref in zip(raw, refs, strict=True)):
            raise AssertionError("an object's bytes do not match its content reference")
        nbytes = sum(map(len, raw))
        await bench.ameasure(RAW_S3, fetch_all, rounds, baseline=True, group=group,
                             nbytes=nbytes)

    blobs = await S3BlobStore.from_url(
        f"s3://{store.bucket}/{store.prefix}", endpoint=services.s3_endpoint,
        access_key=services.s3_access_key, secret_key=services.s3_secret_key,
        region=services.s3_region, concurrency=concurrency)
    try:
        if await blobs.get_many(refs) != raw:
            raise AssertionError("S3BlobStore.get_many differs from raw get_object")
        await bench.ameasure(GET_MANY, lambda _: blobs.get_many(refs), rounds, group=group,
                             nbytes=nbytes)
    finally:
        await blobs.close()


def _check_block_stream(body: memoryview, blocks: dict[tuple[int, int, int], np.ndarray]) -> None:
    """Every block, once, each equal to the block written (uncompressed voxels)."""
    seen = 0
    at = 0
    while at < len(body):
        x, y, z, length = _BLOCK_HEADER.unpack_from(body, at)
        at += _BLOCK_HEADER.size
        got = np.frombuffer(body[at:at + length], np.uint8)
        if length != BLOCK**3 or not np.array_equal(got.reshape(BLOCK_SHAPE), blocks[(x, y, z)]):
            raise AssertionError(f"specificblocks block {(x, y, z)} differs")
        at += length
        seen += 1
    if seen != len(blocks):
        raise AssertionError(f"specificblocks returned {seen} of {len(blocks)} blocks")


# ----- the run ---------------------------------------------------------------------------

def _size(nbytes: int) -> str:
    return f"{nbytes // 1024} KiB" if nbytes % 1024 == 0 else f"{nbytes} B"


def _case(bench: Bench, group: str, case: str) -> CaseResult:
    return next(r for r in bench.results if r.group == group and r.name == case)


def _ratio(a: float | None, b: float | None) -> float:
    assert a is not None and b is not None
    return round(a / b, 3)


def summarize(bench: Bench, args: argparse.Namespace, sizes: Sequence[int],
              codecs: Sequence[str], blocks: int) -> dict[str, Any]:
    """The ratios worth reading first: throughput over the matching baseline's."""
    summary: dict[str, Any] = {}
    for nbytes in sizes:
        group = kv_group(nbytes, args.clients)
        one, two = _case(bench, group, ONE).ops_per_s, _case(bench, group, TWO).ops_per_s
        label = f"kv GET {_size(nbytes)}"
        summary[f"{label}: distributed 1 process / embedded"] = _ratio(
            one, _case(bench, group, EMBEDDED).ops_per_s)
        summary[f"{label}: distributed 2 processes / 1 process"] = _ratio(two, one)
    for codec in codecs:
        for kind, group in (("write", write_group(args.size)), ("read", read_group(args.box))):
            summary[f"grayscale {kind} MB/s {codec}: distributed / embedded"] = _ratio(
                _case(bench, group, f"distributed REST {codec}").mb_per_s,
                _case(bench, group, f"embedded REST {codec}").mb_per_s)
    group = s3_group(blocks)
    raw = _case(bench, group, RAW_S3).ops_per_s
    for case in (GET_MANY, SPECIFIC, RAW_REST):
        summary[f"S3 layer: {case} / raw aioboto3 (ops/s)"] = _ratio(
            _case(bench, group, case).ops_per_s, raw)
    return summary


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so that every server is stopped on the way out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="per keyvalue load case")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--small-bytes", type=int, default=1024,
                        help="small keyvalue value (inline in PostgreSQL)")
    parser.add_argument("--large-bytes", type=int, default=256 * 1024,
                        help="large keyvalue value (an S3 object beyond the inline limit)")
    parser.add_argument("--size", type=int, default=256, help="grayscale volume edge")
    parser.add_argument("--box", type=int, default=128, help="grayscale read box edge")
    parser.add_argument("--boxes", type=int, default=20, help="random boxes to read")
    parser.add_argument("--repeats", type=int, default=3,
                        help="repeats of grayscale writes and reads and of the S3 cases")
    parser.add_argument("--s3-size", type=int, default=256,
                        help="edge of the volume whose (s3-size/64)^3 blocks the S3 cases read")
    parser.add_argument("--rounds", type=int, default=3,
                        help="reads of all blocks per repeat in the S3 cases")
    parser.add_argument("--codecs", default="lz4,jpeg:90", help="grayscale block codecs")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if any(n <= 0 or n % SLAB or n % BLOCK for n in (args.size, args.s3_size)) or \
            not 0 < args.box <= args.size:
        parser.error(f"--size and --s3-size must be multiples of {max(SLAB, BLOCK)}, and "
                     "--box at most --size")
    codecs = args.codecs.split(",")
    sizes = [args.small_bytes, args.large_bytes]
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    started = time.perf_counter()
    volume = synthetic_volume(args.seed, args.size)
    offsets = random_offsets(args.boxes, args.seed + 1, args.size, args.box)
    blocks = (args.s3_size // BLOCK) ** 3
    from_env = bool(os.environ.get("DVIDQL_TEST_PG"))
    bench = Bench("distributed", warmup=1, repeats=args.repeats, params={
        "services": "from DVIDQL_TEST_* environment" if from_env else
        "scripts/services: PostgreSQL fsync off, Ceph radosgw on memstore, loopback",
        "keyvalue": f"{args.clients} clients x {args.seconds} s after 1 s warm-up, values "
                    f"{' and '.join(_size(n) for n in sizes)} (inline limit "
                    f"{_size(Settings().inline_value_bytes)})",
        "grayscale": f"{args.size}^3 uint8 volume, {args.box}^3 boxes x {args.boxes}, "
                     f"{BLOCK}^3 blocks, {'+'.join(codecs)}",
        "s3 layer": f"{blocks} lz4 blocks x {args.rounds} per repeat, "
                    f"{Settings().s3_concurrency} in flight; REST decodes them",
        "cpus": os.cpu_count(), "seed": args.seed, "MB": "10^6 bytes"})
    print(f"volume {args.size}^3 made in {time.perf_counter() - started:.1f} s", flush=True)

    with running_services() as services:
        print(f"services ready at {time.perf_counter() - started:.1f} s", flush=True)
        run_keyvalue(bench, services, sizes, args.clients, args.seconds)
        print(f"keyvalue done at {time.perf_counter() - started:.1f} s", flush=True)
        # 2. grayscale: bench_grayscale's dvidql cases, on each store
        run_dvidql(bench, volume, offsets, args.repeats, codecs, box=args.box,
                   label="embedded REST")
        grayscale = distributed_store(services)
        run_dvidql(bench, volume, offsets, args.repeats, codecs, box=args.box,
                   store=grayscale.args, env=grayscale.env, label="distributed REST")
        print(f"grayscale done at {time.perf_counter() - started:.1f} s", flush=True)
        run_s3_layer(bench, services, volume if args.s3_size == args.size else
                     synthetic_volume(args.seed, args.s3_size), args.rounds)
    summary = summarize(bench, args, sizes, codecs, blocks)
    summary["run seconds"] = round(time.perf_counter() - started, 1)
    bench.report(summary)


if __name__ == "__main__":
    main()
