"""Reading one instance's mutation records through its log index next to filtering the whole
repo log, as the ``mutations`` endpoints did before the index.

Builds, in a temporary directory, an embedded store whose repo log holds N records of a busy
instance and, spread among them, a few records of a quiet one; times reading every record of
the quiet instance (REST ``mutations``) and the page after a recent mutation id (GraphQL
``mutations(since:)``). The baseline of each group is the full scan and filter. Run with
``python -m bench.bench_mutation_log``.
"""

from __future__ import annotations

import asyncio
import tempfile
from typing import Any

from bench.harness import Bench
from dvidql.events import log
from dvidql.storage.base import MetaStore
from dvidql.storage.lmdb import open_embedded

N_RECORDS = 100_000  # of the busy instance
QUIET_EVERY = 10_000  # one record of the quiet instance per this many
PER_TXN = 10_000
REPO = 1
BUSY, QUIET, VERSION = "b" * 32, "q" * 32, "1" * 32
READS = 20


async def _fill(meta: MetaStore) -> None:
    for first in range(0, N_RECORDS, PER_TXN):
        async with meta.transaction() as txn:
            for i in range(first, first + PER_TXN):
                instance = QUIET if i % QUIET_EVERY == QUIET_EVERY - 1 else BUSY
                await log.append(txn, REPO, {"Action": "merge", "DataUUID": instance,
                                             "UUID": VERSION, "Target": i})


async def _filtered(meta: MetaStore, since: int) -> list[dict[str, Any]]:
    """The old read: the whole log after ``since``, filtered."""
    return [r for r in await log.read(meta, REPO, since)
            if r.get("DataUUID") == QUIET and r.get("UUID") == VERSION]


async def measure(meta: MetaStore) -> Bench:
    await _fill(meta)
    recent = N_RECORDS // 2
    bench = Bench("mutation_log", warmup=1, repeats=3,
                  params={"records": N_RECORDS, "quiet_records": N_RECORDS // QUIET_EVERY,
                          "backend": "lmdb"})
    for group, since in (("all records", 0), ("since a recent id", recent)):
        expected = await _filtered(meta, since)
        indexed = await log.read_instance(meta, REPO, QUIET, since=since, versions={VERSION})
        assert indexed == expected and expected

        async def scan(i: int, since: int = since) -> object:
            return await _filtered(meta, since)

        async def index(i: int, since: int = since) -> object:
            return await log.read_instance(meta, REPO, QUIET, since=since,
                                           versions={VERSION})

        await bench.ameasure("whole log, filtered", scan, READS, baseline=True, group=group)
        await bench.ameasure("instance index", index, READS, group=group)
    return bench


async def run() -> Bench:
    """The benchmark on a fresh embedded store in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="dvidql-bench-") as directory:
        meta, _ = open_embedded(directory)
        try:
            return await measure(meta)
        finally:
            await meta.close()


if __name__ == "__main__":
    asyncio.run(run()).report()
