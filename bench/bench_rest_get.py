"""REST ``GET key`` throughput and latency with 16 concurrent clients: dvidql against a bare
Starlette handler served by the same uvicorn configuration, in the same run.

Run: ``python -m bench.bench_rest_get [--seconds 5] [--clients 16] [--value-bytes 1024]``."""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from bench.harness import Bench
from bench.loadgen import LoadResult, run_load


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def _serve(cmd: list[str], port: int, env: dict[str, str]) -> Iterator[str]:
    process = subprocess.Popen(cmd, env={**os.environ, **env})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(f"{cmd[:4]} did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(15)


def _measure(port: int, path: str, clients: int, seconds: float) -> LoadResult:
    asyncio.run(run_load("127.0.0.1", port, path, clients=clients, seconds=1.0))  # warm-up
    return asyncio.run(run_load("127.0.0.1", port, path, clients=clients, seconds=seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--value-bytes", type=int, default=1024)
    args = parser.parse_args()
    value = os.urandom(args.value_bytes)
    results: dict[str, LoadResult] = {}

    with tempfile.TemporaryDirectory() as data:
        port = _free_port()
        cmd = [sys.executable, "-m", "dvidql", "serve", "--data", data, "--port", str(port),
               "--log-level", "warning"]
        with _serve(cmd, port, {}) as url, httpx.Client(base_url=url) as http:
            root = http.post("/api/repos", json={}).json()["root"]
            http.post(f"/api/repo/{root}/instance",
                      json={"typename": "keyvalue", "dataname": "kv"})
            http.post(f"/api/node/{root}/kv/key/k", content=value)
            http.post(f"/api/node/{root}/commit")
            leaf = http.post(f"/api/node/{root}/newversion").json()["child"]
            path = f"/api/node/{leaf}/kv/key/k"
            assert http.get(path).content == value
            results["dvidql GET key"] = _measure(port, path, args.clients, args.seconds)

    port = _free_port()
    cmd = [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(port),
           "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
           "--no-access-log"]
    with _serve(cmd, port, {"BENCH_VALUE_BYTES": str(args.value_bytes)}):
        results["bare starlette handler"] = _measure(port, "/api/node/u/kv/key/k",
                                                     args.clients, args.seconds)

    bench = Bench("rest_get", warmup=1, repeats=1,
                  params={"clients": args.clients, "seconds": args.seconds,
                          "value_bytes": args.value_bytes, "server": "uvicorn uvloop+httptools"})
    for name, result in results.items():
        bench.record(name, result.requests, [int(result.seconds * 1e9)],
                     [int(latency * 1e9) for latency in result.latencies],
                     baseline=name == "bare starlette handler")
        if result.errors:
            print(f"warning: {result.errors} non-200 responses for {name}")
    bench.report()


if __name__ == "__main__":
    main()
