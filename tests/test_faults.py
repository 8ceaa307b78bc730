"""Outages of S3 and PostgreSQL while a dvidql server takes writes and reads.

A writer keeps posting small keyvalue values (inline in PostgreSQL), large ones (blobs in S3)
and grayscale boxes (blocks in S3) while one service is stopped and started again. While it
is down, requests that need it get a clear 503 and the others go on; nothing half-written is
left (a failed write has no data and no mutation-log record); afterwards the same server
process serves every acknowledged write, with no restart.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.conftest import LiveServer, Store
from tests.services import Services

BLOCK = 32
BIG = 100 * 1024  # over the inline limit: an S3 blob


@dataclass
class Outcome:
    kind: str  # small, big, gray
    index: int
    status: int
    message: str = ""


@dataclass
class Writer:
    """Writes items of each kind until stopped, recording each answer."""

    http: httpx.AsyncClient
    root: str
    outcomes: list[Outcome] = field(default_factory=list)
    running: bool = True

    @staticmethod
    def payload(kind: str, index: int) -> bytes:
        rng = np.random.default_rng(index * 3 + len(kind))
        size = {"small": 100, "big": BIG, "gray": BLOCK**3}[kind]
        return rng.integers(1, 255, size, dtype=np.uint8).tobytes()

    async def write(self, kind: str, index: int) -> None:
        data = self.payload(kind, index)
        if kind == "gray":
            path = f"/api/node/{self.root}/g/raw/0_1_2/{BLOCK}_{BLOCK}_{BLOCK}/{index * BLOCK}_0_0"
        else:
            path = f"/api/node/{self.root}/kv/key/{kind}{index}"
        response = await self.http.post(path, content=data)
        message = response.json()["error"] if response.status_code != 200 else ""
        self.outcomes.append(Outcome(kind, index, response.status_code, message))

    async def run(self) -> None:
        """Each kind in its own loop, so that every kind keeps starting writes all through an
        outage: rounds waiting for their slowest write (one riding out its retries) would
        start too few to be sure that one falls wholly within the outage."""
        async def loop(kind: str) -> None:
            index = 0
            while self.running:
                await self.write(kind, index)
                index += 1
                await asyncio.sleep(0.05)

        await asyncio.gather(*(loop(kind) for kind in ("small", "big", "gray")))

    def of(self, kind: str, status: int) -> list[Outcome]:
        return [o for o in self.outcomes if o.kind == kind and o.status == status]


@pytest.fixture
async def writer(services: Services, tmp_path: Path):  # type: ignore[no-untyped-def]
    live = LiveServer(tmp_path / "unused", store=Store.distributed(services))
    live.start()
    async with httpx.AsyncClient(base_url=live.url, timeout=60) as http:
        root = (await http.post("/api/repos", json={})).json()["root"]
        for body in ({"typename": "keyvalue", "dataname": "kv"},
                     {"typename": "uint8blk", "dataname": "g", "BlockSize": str(BLOCK),
                      "Compression": "lz4"}):
            assert (await http.post(f"/api/repo/{root}/instance", json=body)).status_code == 200
        yield Writer(http, root)
    live.stop()


async def _through_outage(writer: Writer, stop: Callable[[], None],
                          start: Callable[[], None], down_seconds: float = 4.0) -> None:
    task = asyncio.create_task(writer.run())
    try:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(stop)
        try:
            await asyncio.sleep(down_seconds)
        finally:
            await asyncio.to_thread(start)
        recovered = time.monotonic() + 30
        while not any(o.status == 200 for o in writer.outcomes[-6:]):
            assert time.monotonic() < recovered, "writes did not recover"
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)
    finally:
        writer.running = False
        await task


async def _check_state(writer: Writer, logged_before: int) -> None:
    """Acknowledged writes are all there, failed ones left nothing (unless their answer says
    the outcome is unknown), and the log has exactly one record per stored write."""
    http, root = writer.http, writer.root
    stored_writes = 0
    assert {o.status for o in writer.outcomes} <= {200, 503}, writer.outcomes
    for o in writer.outcomes:
        if o.kind == "gray":
            got = await http.get(f"/api/node/{root}/g/raw/0_1_2/{BLOCK}_{BLOCK}_{BLOCK}/"
                                 f"{o.index * BLOCK}_0_0")
            assert got.status_code == 200, got.text
            stored = got.content == writer.payload("gray", o.index)
            assert stored or got.content == bytes(BLOCK**3), o  # or background: nothing
        else:
            got = await http.get(f"/api/node/{root}/kv/key/{o.kind}{o.index}")
            stored = got.status_code == 200
            assert not stored or got.content == writer.payload(o.kind, o.index), o
            assert stored or got.status_code == 404, o
        if o.status == 200:
            assert stored, o
        elif not _unknown(o):
            assert not stored, o
        stored_writes += stored
    info = (await http.get(f"/api/repo/{root}/info")).json()
    assert info["MutationID"] == logged_before + stored_writes


def _unknown(o: Outcome) -> bool:
    """A write refused as the database went away while committing: it may have been
    stored, and the message says so."""
    return o.status == 503 and "may or may not be stored" in o.message


async def test_s3_outage(writer: Writer, services: Services) -> None:
    before = (await writer.http.get(f"/api/repo/{writer.root}/info")).json()["MutationID"]
    await writer.http.post(f"/api/node/{writer.root}/kv/key/old-big", content=b"o" * BIG)
    await _through_outage(writer, services.stop_s3, services.start_s3)

    # Blob writes failed clearly while S3 was down; metadata-only writes went on.
    for kind in ("big", "gray"):
        failed = writer.of(kind, 503)
        assert failed, f"no {kind} write failed during the outage"
        assert all("S3 at " + services.s3_endpoint in o.message for o in failed), failed[0]
        assert writer.of(kind, 200), f"no {kind} write succeeded"
    assert not writer.of("small", 503), writer.of("small", 503)[0]
    await _check_state(writer, before + 1)
    assert (await writer.http.get(f"/api/node/{writer.root}/kv/key/old-big")).content == \
        b"o" * BIG


async def test_postgres_outage(writer: Writer, services: Services) -> None:
    before = (await writer.http.get(f"/api/repo/{writer.root}/info")).json()["MutationID"]
    await _through_outage(writer, services.stop_pg, services.start_pg, down_seconds=2.0)
    failed = [o for o in writer.outcomes if o.status == 503]
    assert {o.kind for o in failed} == {"small", "big", "gray"}, failed
    assert all("PostgreSQL at 127.0.0.1" in o.message for o in failed), failed[0]
    await _check_state(writer, before)


async def test_reads_during_an_s3_outage(writer: Writer, services: Services) -> None:
    http, root = writer.http, writer.root
    await http.post(f"/api/node/{root}/kv/key/big", content=b"b" * BIG)
    await http.post(f"/api/node/{root}/kv/key/small", content=b"s")
    services.stop_s3()
    try:
        started = time.monotonic()
        refused = await http.get(f"/api/node/{root}/kv/key/big")
        assert refused.status_code == 503 and refused.json()["code"] == "UNAVAILABLE"
        assert time.monotonic() - started < 15
        assert (await http.get(f"/api/node/{root}/kv/key/small")).content == b"s"
    finally:
        services.start_s3()
    assert (await http.get(f"/api/node/{root}/kv/key/big")).content == b"b" * BIG


@pytest.mark.parametrize(("args", "status", "message"), [
    (["--meta", "postgresql://postgres@127.0.0.1:9/none", "--blobs", "s3://b"], 1,
     "cannot connect to PostgreSQL at 127.0.0.1:9/none"),
    (["--meta", "postgresql://postgres@127.0.0.1:9/none"], 2, "needs both meta"),
    (["--meta", "mysql://x", "--blobs", "s3://b"], 2, "must be a postgresql:// URL"),
])
def test_serve_refuses_unusable_store_settings(args: list[str], status: int,
                                               message: str) -> None:
    run = subprocess.run([sys.executable, "-m", "dvidql", "serve", *args, "--port", "9"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == status, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr
