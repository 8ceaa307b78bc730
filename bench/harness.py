"""A small benchmark harness: named cases, warm-up and repeats, throughput and latency
percentiles, an aligned table with each case's ratio to a baseline, and a JSON record in
``bench/results/<name>.json``.

Each case times ``op(i)`` for ``i`` in ``range(n)``, one call at a time, so the latencies are
per operation; throughput is ``n`` over the wall time of a whole repeat (the median repeat is
reported). Synchronous operations use :meth:`Bench.measure`, coroutine functions
:meth:`Bench.ameasure`, awaited inside the caller's event loop.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["RESULTS_DIR", "Bench", "CaseResult", "percentile"]

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
    ratio: float | None = None  # this case's time per op over the baseline's


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
        self, case: str, op: Callable[[int], object], n: int, *, baseline: bool = False
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
        return self.record(case, n, durations, latencies, baseline)

    async def ameasure(
        self, case: str, op: Callable[[int], Awaitable[object]], n: int, *,
        baseline: bool = False,
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
        return self.record(case, n, durations, latencies, baseline)

    def record(
        self, case: str, n: int, durations: list[int], latencies: list[int], baseline: bool
    ) -> CaseResult:
        """Add a case measured elsewhere: ``n`` ops per repeat, each repeat's wall time and
        every op's latency, in nanoseconds."""
        latencies.sort()
        result = CaseResult(
            name=case,
            ops=n,
            repeats=len(durations),
            ops_per_s=n / (statistics.median(durations) / 1e9),
            p50_us=percentile(latencies, 0.50) / 1e3,
            p99_us=percentile(latencies, 0.99) / 1e3,
            mean_us=statistics.fmean(latencies) / 1e3,
            baseline=baseline,
        )
        self.results.append(result)
        return result

    # ----- reporting ---------------------------------------------------------------------

    def _baseline(self) -> CaseResult | None:
        marked = [r for r in self.results if r.baseline]
        return marked[0] if marked else (self.results[0] if self.results else None)

    def _fill_ratios(self) -> None:
        base = self._baseline()
        for result in self.results:
            result.ratio = None if base is None else base.ops_per_s / result.ops_per_s

    def table(self) -> str:
        self._fill_ratios()
        header = ["case", "timed ops", "ops/s", "p50 us", "p99 us", "x baseline"]
        rows = [header]
        for r in self.results:
            rows.append([
                r.name + (" (baseline)" if r is self._baseline() else ""),
                f"{r.ops * r.repeats:,}",
                f"{r.ops_per_s:,.0f}",
                f"{r.p50_us:.2f}",
                f"{r.p99_us:.2f}",
                "" if r.ratio is None else f"{r.ratio:.2f}",
            ])
        widths = [max(len(row[c]) for row in rows) for c in range(len(header))]
        lines = []
        for k, row in enumerate(rows):
            cells = [row[0].ljust(widths[0])] + [
                cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)
            ]
            lines.append("  ".join(cells))
            if k == 0:
                lines.append("  ".join("-" * width for width in widths))
        return "\n".join(lines)

    def report(self) -> Path:
        """Print the table and write the JSON record; returns the record's path."""
        print(f"{self.name}: warm-up {self.warmup}, repeats {self.repeats}")
        if self.params:
            print("  " + ", ".join(f"{k}={v}" for k, v in self.params.items()))
        print(self.table())
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
            "baseline": (base.name if (base := self._baseline()) else None),
            "results": [asdict(r) for r in self.results],
        }
        path.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path}")
        return path
