"""REST ``GET key`` throughput and latency with 16 concurrent clients: dvidql against a bare
Starlette handler served by the same uvicorn configuration, in the same run.

Run: ``python -m bench.bench_rest_get [--seconds 5] [--clients 16] [--value-bytes 1024]``."""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping

import httpx

from bench.harness import Bench, baseline_command, dvidql_command, free_port, serve
from bench.loadgen import LoadResult, measure_load, record_load


def put_keys(url: str, values: Mapping[str, bytes]) -> dict[str, str]:
    """Write ``values`` (key -> bytes) into a new repo's keyvalue instance ``kv`` at the root,
    commit it and make a child version; returns each key's GET path at the child, so reads
    resolve the value through an ancestor version. Checks that each GET returns its value."""
    with httpx.Client(base_url=url, timeout=60) as http:
        root = http.post("/api/repos", json={}).json()["root"]
        http.post(f"/api/repo/{root}/instance",
                  json={"typename": "keyvalue", "dataname": "kv"}).raise_for_status()
        for key, value in values.items():
            http.post(f"/api/node/{root}/kv/key/{key}", content=value).raise_for_status()
        http.post(f"/api/node/{root}/commit").raise_for_status()
        leaf = http.post(f"/api/node/{root}/newversion").json()["child"]
    paths = {key: f"/api/node/{leaf}/kv/key/{key}" for key in values}
    check_keys(url, paths, values)
    return paths


def check_keys(url: str, paths: Mapping[str, str], values: Mapping[str, bytes]) -> None:
    """Fail unless ``GET paths[key]`` on ``url`` returns ``values[key]`` for every key."""
    with httpx.Client(base_url=url, timeout=60) as http:
        for key, path in paths.items():
            if http.get(path).content != values[key]:
                raise AssertionError(f"GET {url}{path} does not return the value written")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--value-bytes", type=int, default=1024)
    args = parser.parse_args()
    value = os.urandom(args.value_bytes)
    results: dict[str, LoadResult] = {}

    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        with serve(dvidql_command(port, "--data", data), port) as url:
            path = put_keys(url, {"k": value})["k"]
            results["dvidql GET key"] = measure_load(port, path, clients=args.clients,
                                                     seconds=args.seconds)

    port = free_port()
    with serve(baseline_command(port), port, {"BENCH_VALUE_BYTES": str(args.value_bytes)}):
        results["bare starlette handler"] = measure_load(
            port, "/api/node/u/kv/key/k", clients=args.clients, seconds=args.seconds)

    bench = Bench("rest_get", warmup=1, repeats=1,
                  params={"clients": args.clients, "seconds": args.seconds,
                          "value_bytes": args.value_bytes, "server": "uvicorn uvloop+httptools"})
    for name, result in results.items():
        record_load(bench, name, result, baseline=name == "bare starlette handler")
    bench.report()


if __name__ == "__main__":
    main()
