"""A small HTTP/1.1 keep-alive load generator on raw asyncio streams.

It costs far less per request than an HTTP client library, so on a two-core machine most of
the CPU goes to the server under test. Several ports spread the clients over several server
processes of one service, whose aggregate is what :func:`run_load` then reports.

What is requested is a :data:`Paths`: one path, every request the same; a sequence of paths,
which each client cycles through from its own place in it; or a function of a running request
number giving the next path, for paths that are not known in advance."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from bench.harness import Bench, CaseResult

__all__ = ["LoadResult", "Paths", "measure_load", "record_load", "run_load"]

Paths = str | Sequence[str] | Callable[[int], str]
"""One path, paths cycled through, or the path of request number ``i`` (counted over all
clients)."""


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float]  # seconds, one per request
    errors: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _request(host: str, port: int, path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()


def _request_streams(host: str, ports: Sequence[int], paths: Paths,
                     clients: int) -> list[tuple[int, Iterator[bytes]]]:
    """Each client's port, ``ports[i % len(ports)]`` for client ``i``, and the requests it
    sends. Fixed paths are encoded up front, so a client only takes the next request; with
    many, client ``i`` starts ``i * (len(paths) // clients)`` into them, so that the clients
    spread over them."""
    port_of = [ports[i % len(ports)] for i in range(clients)]
    if isinstance(paths, str):
        encoded = {p: _request(host, p, paths) for p in ports}
        return [(p, itertools.repeat(encoded[p])) for p in port_of]
    if callable(paths):
        factory = paths
        numbers = itertools.count()  # shared by the clients: each number is used once

        def made(port: int) -> Iterator[bytes]:
            for n in numbers:
                yield _request(host, port, factory(n))

        return [(p, made(p)) for p in port_of]
    if not paths:
        raise ValueError("no paths to request")
    every = {p: [_request(host, p, path) for path in paths] for p in ports}
    stride = max(1, len(paths) // clients)
    return [(p, itertools.islice(itertools.cycle(every[p]), i * stride % len(paths), None))
            for i, p in enumerate(port_of)]


async def _client(host: str, port: int, requests: Iterator[bytes], stop_at: float,
                  latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            started = time.perf_counter()
            writer.write(next(requests))
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors[0] += 1
    finally:
        writer.close()


async def run_load(host: str, port: int | Sequence[int], path: Paths, *, clients: int = 16,
                   seconds: float = 5.0) -> LoadResult:
    """GET ``path`` (one path, or several: :data:`Paths`) from ``clients`` concurrent
    keep-alive connections for ``seconds``; with several ports, client ``i`` talks to
    ``ports[i % len(ports)]``."""
    ports = [port] if isinstance(port, int) else list(port)
    streams = _request_streams(host, ports, path, clients)
    latencies: list[float] = []
    errors = [0]
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(_client(host, p, requests, stop_at, latencies, errors)
                           for p, requests in streams))
    return LoadResult(len(latencies), time.perf_counter() - started, latencies, errors[0])


def measure_load(port: int | Sequence[int], path: Paths, *, clients: int, seconds: float,
                 warmup: float = 1.0) -> LoadResult:
    """:func:`run_load` on 127.0.0.1 after an untimed ``warmup`` of the same load, so that
    connection set-up and the servers' first requests are not timed."""
    asyncio.run(run_load("127.0.0.1", port, path, clients=clients, seconds=warmup))
    return asyncio.run(run_load("127.0.0.1", port, path, clients=clients, seconds=seconds))


def record_load(bench: Bench, case: str, result: LoadResult, *, baseline: bool = False,
                group: str = "", nbytes: int | None = None) -> CaseResult:
    """Add a load run to ``bench`` as one repeat of ``result.requests`` operations (warning
    about non-200 answers, which would make the rate meaningless)."""
    if result.errors:
        print(f"warning: {result.errors} non-200 responses for {case}")
    return bench.record(case, result.requests, [int(result.seconds * 1e9)],
                        [int(latency * 1e9) for latency in result.latencies], baseline,
                        group=group, nbytes=nbytes)
