"""A small benchmark harness: named cases, warm-up and repeats, throughput and latency
percentiles, an aligned table with each case's ratio to a baseline, and a JSON record in
``bench/results/<name>.json``.

Each case times ``op(i)`` for ``i`` in ``range(n)``, one call at a time, so the latencies are
per operation; throughput is ``n`` over the wall time of a whole repeat (the median repeat is
reported). Synchronous operations use :meth:`Bench.measure`, coroutine functions
:meth:`Bench.ameasure`, awaited inside the caller's event loop.

Cases that move bytes can give ``nbytes`` (bytes per operation) to get an MB/s column
(MB = 10^6 bytes). Cases can be put in named ``group``s, each with its own baseline, so one
record can compare, say, reads with reads and writes with writes. :func:`serve` runs a server
command for the length of a ``with`` block; :func:`dvidql_command` and :func:`baseline_command`
are the commands that run dvidql and the bare handler it is compared with. :func:`timed_writes`
times writing a volume in slabs, as the ingest benchmarks do, and :func:`open_zarr` makes
their baseline's store.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = ["RESULTS_DIR", "Bench", "CaseResult", "baseline_command", "dvidql_command",
           "free_port", "open_zarr", "percentile", "serve", "timed_writes"]

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def percentile(sorted_values: list[int], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(fraction * len(sorted_values) + 0.5))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


@dataclass
class CaseResult:
    name: str
    ops: int  # operations per repeat
    repeats: int
    ops_per_s: float  # median over repeats
    p50_us: float
    p99_us: float
    mean_us: float
    baseline: bool = False
    ratio: float | None = None  # this case's time per op over its group's baseline's
    group: str = ""
    bytes_per_op: int | None = None
    mb_per_s: float | None = None  # 10^6 bytes per second, when bytes_per_op is known


class Bench:
    def __init__(
        self,
        name: str,
        *,
        warmup: int = 1,
        repeats: int = 5,
        params: dict[str, Any] | None = None,
        results_dir: Path = RESULTS_DIR,
    ) -> None:
        self.name = name
        self.warmup = warmup
        self.repeats = repeats
        self.params = dict(params or {})
        self.results_dir = results_dir
        self.results: list[CaseResult] = []

    # ----- measuring ---------------------------------------------------------------------

    def measure(
        self, case: str, op: Callable[[int], object], n: int, *, baseline: bool = False,
        group: str = "", nbytes: int | None = None,
    ) -> CaseResult:
        clock = time.perf_counter_ns
        for _ in range(self.warmup):
            for i in range(n):
                op(i)
        durations: list[int] = []
        latencies: list[int] = []
        for _ in range(self.repeats):
            lat = [0] * n
            start = clock()
            for i in range(n):
                t0 = clock()
                op(i)
                lat[i] = clock() - t0
            durations.append(clock() - start)
            latencies.extend(lat)
        return self.record(case, n, durations, latencies, baseline, group=group, nbytes=nbytes)

    async def ameasure(
        self, case: str, op: Callable[[int], Awaitable[object]], n: int, *,
        baseline: bool = False, group: str = "", nbytes: int | None = None,
    ) -> CaseResult:
        clock = time.perf_counter_ns
        for _ in range(self.warmup):
            for i in range(n):
                await op(i)
        durations: list[int] = []
        latencies: list[int] = []
        for _ in range(self.repeats):
            lat = [0] * n
            start = clock()
            for i in range(n):
                t0 = clock()
                await op(i)
                lat[i] = clock() - t0
            durations.append(clock() - start)
            latencies.extend(lat)
        return self.record(case, n, durations, latencies, baseline, group=group, nbytes=nbytes)

    def record(
        self, case: str, n: int, durations: list[int], latencies: list[int], baseline: bool,
        *, group: str = "", nbytes: int | None = None,
    ) -> CaseResult:
        """Add a case measured elsewhere: ``n`` ops per repeat, each repeat's wall time and
        every op's latency, in nanoseconds."""
        latencies.sort()
        ops_per_s = n / (statistics.median(durations) / 1e9)
        result = CaseResult(
            name=case,
            ops=n,
            repeats=len(durations),
            ops_per_s=ops_per_s,
            p50_us=percentile(latencies, 0.50) / 1e3,
            p99_us=percentile(latencies, 0.99) / 1e3,
            mean_us=statistics.fmean(latencies) / 1e3,
            baseline=baseline,
            group=group,
            bytes_per_op=nbytes,
            mb_per_s=None if nbytes is None else ops_per_s * nbytes / 1e6,
        )
        self.results.append(result)
        return result

    # ----- reporting ---------------------------------------------------------------------

    def groups(self) -> list[str]:
        """Group names in the order their first case was added."""
        return list(dict.fromkeys(r.group for r in self.results))

    def _baseline(self, group: str = "") -> CaseResult | None:
        members = [r for r in self.results if r.group == group]
        marked = [r for r in members if r.baseline]
        return marked[0] if marked else (members[0] if members else None)

    def _fill_ratios(self) -> None:
        for result in self.results:
            base = self._baseline(result.group)
            result.ratio = None if base is None else base.ops_per_s / result.ops_per_s

    def table(self) -> str:
        self._fill_ratios()
        with_mb = any(r.mb_per_s is not None for r in self.results)
        header = ["case", "timed ops", "ops/s", *(["MB/s"] if with_mb else []),
                  "p50 us", "p99 us", "x baseline"]
        rows: list[list[str] | str] = [header]
        for group in self.groups():
            if group:
                rows.append(f"[{group}]")
            base = self._baseline(group)
            for r in (r for r in self.results if r.group == group):
                rows.append([
                    r.name + (" (baseline)" if r is base else ""),
                    f"{r.ops * r.repeats:,}",
                    f"{r.ops_per_s:,.0f}",
                    *([] if not with_mb else
                      ["" if r.mb_per_s is None else f"{r.mb_per_s:,.0f}"]),
                    f"{r.p50_us:.2f}",
                    f"{r.p99_us:.2f}",
                    "" if r.ratio is None else f"{r.ratio:.2f}",
                ])
        cells = [row for row in rows if isinstance(row, list)]
        widths = [max(len(row[c]) for row in cells) for c in range(len(header))]
        lines = []
        for k, row in enumerate(rows):
            if isinstance(row, str):
                lines.append(row)
                continue
            lines.append("  ".join([row[0].ljust(widths[0])] + [
                cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
            ]))
            if k == 0:
                lines.append("  ".join("-" * width for width in widths))
        return "\n".join(lines)

    def report(self, summary: dict[str, Any] | None = None) -> Path:
        """Print the table (and ``summary``, figures derived from the cases, such as
        throughput ratios) and write the JSON record; returns the record's path."""
        print(f"{self.name}: warm-up {self.warmup}, repeats {self.repeats}")
        if self.params:
            print("  " + ", ".join(f"{k}={v}" for k, v in self.params.items()))
        print(self.table())
        for key, value in (summary or {}).items():
            print(f"{key}: {value}")
        self.results_dir.mkdir(parents=True, exist_ok=True)
        path = self.results_dir / f"{self.name}.json"
        record = {
            "name": self.name,
            "created": datetime.now(UTC).isoformat(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "warmup": self.warmup,
            "repeats": self.repeats,
            "params": self.params,
            "baseline": (base.name if (base := self._baseline(self.groups()[0] if self.results
                                                              else "")) else None),
            "results": [asdict(r) for r in self.results],
        }
        if len(self.groups()) > 1:
            record["baselines"] = {g: b.name for g in self.groups()
                                   if (b := self._baseline(g)) is not None}
        if summary:
            record["summary"] = summary
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
        return path


def timed_writes(
    bench: Bench, case: str, volume: np.ndarray, slab: int, repeats: int,
    start: Callable[[int], Callable[[int, np.ndarray], object]],
    variant: Callable[[np.ndarray, int], np.ndarray], *, baseline: bool = False,
    group: str = "",
) -> CaseResult:
    """Time writing ``volume`` in z slabs ``slab`` thick (one operation each, its bytes the
    MB/s), once per repeat into a fresh target: ``start(repeat)`` makes it and returns the
    function that writes a slab at a z. Repeat ``r`` writes ``variant(volume, r)``, which
    should differ for each ``r`` so that a content-addressed store cannot skip blocks an
    earlier repeat wrote; repeats run from the last down to 0, so ``variant(volume, 0)``,
    normally the volume itself, is what the targets last hold."""
    size = volume.shape[0]
    durations: list[int] = []
    latencies: list[int] = []
    for repeat in reversed(range(repeats)):
        data = variant(volume, repeat)
        write = start(repeat)
        began = time.perf_counter_ns()
        for z in range(0, size, slab):
            t0 = time.perf_counter_ns()
            write(z, data[z:z + slab])
            latencies.append(time.perf_counter_ns() - t0)
        durations.append(time.perf_counter_ns() - began)
    return bench.record(case, size // slab, durations, latencies, baseline, group=group,
                        nbytes=volume[:slab].nbytes)


def open_zarr(path: str, shape: tuple[int, ...], dtype: str, chunk: int, *,
              shuffle: int) -> Any:
    """A new tensorstore zarr v2 array in directory ``path`` (replacing one there), in
    ``chunk``-edged cubes compressed by blosc lz4 at level 5 with ``shuffle`` (0 none, 1 byte,
    2 bit): the ingest benchmarks' baseline store. Needs tensorstore."""
    import tensorstore as ts

    return ts.open({
        "driver": "zarr",
        "kvstore": {"driver": "file", "path": path},
        "metadata": {"dtype": dtype, "shape": list(shape), "chunks": [chunk] * len(shape),
                     "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5,
                                    "shuffle": shuffle}},
    }, create=True, delete_existing=True).result()


# ----- servers ---------------------------------------------------------------------------

def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def dvidql_command(port: int, *store: str) -> list[str]:
    """``dvidql serve`` on 127.0.0.1:``port`` with the store options ``store`` (``--data DIR``,
    or ``--meta URL --blobs URL ...``), logging warnings only, as every benchmark runs it."""
    return [sys.executable, "-m", "dvidql", "serve", *store, "--port", str(port),
            "--log-level", "warning"]


def baseline_command(port: int) -> list[str]:
    """The bare Starlette handler of ``bench/baseline_app.py`` (value size from the
    ``BENCH_VALUE_BYTES`` environment variable) under dvidql's uvicorn configuration."""
    return [sys.executable, "-m", "uvicorn", "bench.baseline_app:app", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--log-level", "warning",
            "--no-access-log"]


@contextmanager
def serve(cmd: list[str], port: int, env: dict[str, str] | None = None,
          *, timeout: float = 30.0) -> Iterator[str]:
    """Run a server command until the block ends, yielding its base URL once ``GET /`` on
    127.0.0.1:``port`` gets any HTTP answer, so cases never time the server's start-up."""
    import httpx

    process = subprocess.Popen(cmd, env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
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
