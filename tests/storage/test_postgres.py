"""The PostgreSQL metadata backend against the shared conformance suites, plus what only a
shared database has: migrations, several stores (processes) writing at once, and outages."""

import asyncio
import threading

import asyncpg
import pytest

from dvidql.errors import Unavailable
from dvidql.storage.memory import MemoryBlobStore
from dvidql.storage.postgres import MIGRATIONS, open_postgres
from dvidql.testing.storage import MetaStoreTests, VersionedKVTests, overridden_tests
from tests.services import fresh_database


def _blocking(coro_fn):
    """Run an asyncpg coroutine to completion from synchronous test helpers (raw_put and
    raw_get are synchronous), on a thread with its own event loop."""
    result = {}

    def run():
        result["value"] = asyncio.run(coro_fn())

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result["value"]


def _raw(dsn, query, *args):
    async def go():
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    return _blocking(go)


@pytest.fixture
def dsn(services):
    return fresh_database(services)


class TestPostgresMetaStore(MetaStoreTests):
    @pytest.fixture
    async def store(self, dsn):
        store = await open_postgres(dsn)
        store.dsn = dsn
        yield store
        await store.close()

    def raw_put(self, store, key, value):
        _raw(store.dsn, "INSERT INTO dvidql_kv VALUES ($1, $2) ON CONFLICT (key) DO UPDATE "
                        "SET value = EXCLUDED.value", key, value)

    def raw_get(self, store, key):
        return _raw(store.dsn, "SELECT value FROM dvidql_kv WHERE key = $1", key)


class TestPostgresVersionedKV(VersionedKVTests):
    @pytest.fixture
    async def store(self, dsn):
        meta = await open_postgres(dsn)
        yield meta, MemoryBlobStore()
        await meta.close()


@pytest.mark.parametrize("suite", [TestPostgresMetaStore, TestPostgresVersionedKV])
def test_subclasses_override_no_test(suite):
    assert overridden_tests(suite) == []


async def test_migrations_apply_once_even_when_processes_start_together(dsn):
    stores = await asyncio.gather(*(open_postgres(dsn) for _ in range(4)))
    try:
        conn = await asyncpg.connect(dsn)
        try:
            versions = [r[0] for r in await conn.fetch(
                "SELECT version FROM dvidql_migrations ORDER BY version")]
        finally:
            await conn.close()
        assert versions == [v for v, _ in MIGRATIONS]
    finally:
        for store in stores:
            await store.close()


async def test_two_stores_never_lose_an_update(dsn):
    """Two pools stand for two processes: read-modify-write transactions from both on the
    same keys all land, because writers serialize in the database, not in one process."""
    first, second = await open_postgres(dsn), await open_postgres(dsn)

    async def bump(store, i):
        async with store.transaction() as txn:
            count = await txn.get(b"count")
            await asyncio.sleep(0.001 * (i % 3))  # a gap between the read and the write
            txn.put(b"count", b"%d" % (int(count or b"0") + 1))
            txn.put(b"by/%03d" % i, b"x")

    try:
        await asyncio.gather(*(bump(first if i % 2 else second, i) for i in range(60)))
        assert await first.get(b"count") == b"60"
        assert await second.get(b"count") == b"60"
        assert len([kv async for kv in second.scan(b"by/", b"by0")]) == 60
    finally:
        await first.close()
        await second.close()


async def test_outage_gives_unavailable_then_recovers(services, dsn):
    store = await open_postgres(dsn)
    try:
        async with store.transaction() as txn:
            txn.put(b"before", b"1")
        services.stop_pg()
        try:
            with pytest.raises(Unavailable, match=r"PostgreSQL at 127\.0\.0\.1"):
                await store.get(b"before")
            with pytest.raises(Unavailable, match="changed nothing"):
                async with store.transaction() as txn:
                    txn.put(b"during", b"1")
        finally:
            services.start_pg()
        assert await store.get(b"before") == b"1"  # the same store, no restart
        assert await store.get(b"during") is None
        async with store.transaction() as txn:
            txn.put(b"after", b"1")
        assert await store.get_many([b"before", b"during", b"after"]) == [b"1", None, b"1"]
    finally:
        await store.close()


async def test_unreachable_at_open_is_a_clear_error():
    with pytest.raises(Unavailable, match=r"cannot connect to PostgreSQL at 127\.0\.0\.1:9"):
        await open_postgres("postgresql://postgres@127.0.0.1:9/none")
