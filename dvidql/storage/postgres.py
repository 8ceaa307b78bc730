"""Distributed metadata backend: the ordered key-value MetaStore in PostgreSQL (asyncpg).

One table holds every key (``bytea`` compares bytewise, so its primary-key index gives the
store's order and range scans). Many-key reads and many-range scans are one query each
(``unnest`` with ordinality), since the versioned store asks for the entries of a hundred
blocks at a time and a round trip costs more than the rows.

Any number of dvidql processes may share the database. Write transactions serialize on one
transaction-scoped advisory lock, taken first, so every read-modify-write inside them (mutation
ids, version locks, repo documents) sees the latest commit, exactly as the embedded store's
in-process lock guarantees within one process. Reads outside transactions take no locks.

The schema is created and upgraded at start-up by the numbered migrations below, under an
advisory lock so processes starting together apply each one once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

import asyncpg

from dvidql.errors import Unavailable
from dvidql.storage.base import BufferedTxn, MetaStore, Txn, batched_scan

__all__ = ["MIGRATIONS", "PostgresMetaStore", "open_postgres"]

log = logging.getLogger("dvidql.storage")

T = TypeVar("T")

# (version, statements); append only: a deployed migration never changes.
MIGRATIONS: list[tuple[int, str]] = [
    (1, """
        CREATE TABLE dvidql_kv (
            key   bytea PRIMARY KEY,
            value bytea NOT NULL
        );
    """),
]

MAX_KEY_BYTES = 2048  # well inside a btree index entry (about 2.7 kB)
_WRITE_LOCK = 0x64766964716C  # advisory lock id of write transactions ("dvidql")
_MIGRATION_LOCK = _WRITE_LOCK + 1

_DOWN = (OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError,
         asyncpg.InterfaceError, asyncpg.CannotConnectNowError,
         asyncpg.TooManyConnectionsError, asyncpg.AdminShutdownError,
         asyncpg.CrashShutdownError)

_GET_MANY = """
    SELECT k.i, t.value FROM unnest($1::bytea[]) WITH ORDINALITY AS k(key, i)
    JOIN dvidql_kv t ON t.key = k.key
"""
_SCAN_MANY = """
    SELECT r.i, t.key, t.value
    FROM unnest($1::bytea[], $2::bytea[]) WITH ORDINALITY AS r(lo, hi, i)
    JOIN LATERAL (SELECT key, value FROM dvidql_kv WHERE key >= r.lo AND key < r.hi) t ON true
    ORDER BY r.i, t.key
"""
_SCAN_UP = ("SELECT key, value FROM dvidql_kv WHERE key >= $1 AND key < $2 "
            "ORDER BY key LIMIT $3")
_SCAN_DOWN = ("SELECT key, value FROM dvidql_kv WHERE key >= $1 AND key < $2 "
              "ORDER BY key DESC LIMIT $3")
_UPSERT = """
    INSERT INTO dvidql_kv (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[])
    ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value
"""
_DELETE = "DELETE FROM dvidql_kv WHERE key = ANY($1::bytea[])"


def describe_dsn(dsn: str) -> str:
    """``host:port/database`` of a DSN, for messages (never the password)."""
    parts = urlsplit(dsn)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}{parts.path or '/'}"


def _group_rows(rows: Sequence[Any], n: int) -> list[list[tuple[bytes, bytes]]]:
    """The rows of a ``_SCAN_MANY`` query, grouped by range."""
    out: list[list[tuple[bytes, bytes]]] = [[] for _ in range(n)]
    for i, key, value in rows:
        out[i - 1].append((key, value))
    return out


class _PgTxn(BufferedTxn):
    def __init__(self, conn: asyncpg.Connection) -> None:
        super().__init__(MAX_KEY_BYTES)
        self._conn = conn

    async def read(self, key: bytes) -> bytes | None:
        value: bytes | None = await self._conn.fetchval(
            "SELECT value FROM dvidql_kv WHERE key = $1", key)
        return value

    async def read_range(self, start: bytes, end: bytes) -> list[tuple[bytes, bytes]]:
        rows = await self._conn.fetch(
            "SELECT key, value FROM dvidql_kv WHERE key >= $1 AND key < $2 ORDER BY key",
            start, end)
        return [(r[0], r[1]) for r in rows]

    async def read_ranges(
        self, ranges: Sequence[tuple[bytes, bytes]]
    ) -> list[list[tuple[bytes, bytes]]]:
        return _group_rows(await self._conn.fetch(
            _SCAN_MANY, [lo for lo, _ in ranges], [hi for _, hi in ranges]), len(ranges))

    async def apply(self) -> None:
        puts = [(k, v) for k, v in self.writes.items() if v is not None]
        deletes = [k for k, v in self.writes.items() if v is None]
        if puts:
            await self._conn.execute(_UPSERT, [k for k, _ in puts], [v for _, v in puts])
        if deletes:
            await self._conn.execute(_DELETE, deletes)


class PostgresMetaStore(MetaStore):
    """The MetaStore over an asyncpg pool; see the module docstring for the locking model."""

    supports_concurrent_writers = True
    max_key_bytes = MAX_KEY_BYTES

    def __init__(self, pool: asyncpg.Pool, where: str) -> None:
        self.pool = pool
        self.where = where
        # Writers of this process queue here rather than each holding a pooled connection
        # while they wait for the database lock, which would starve readers of connections.
        self._local_writer = asyncio.Lock()

    async def _run(self, what: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        try:
            async with self.pool.acquire() as conn:
                return await work(conn)
        except _DOWN as exc:
            raise self._unavailable(what, exc) from exc

    def _unavailable(self, what: str, exc: BaseException, *,
                     committing: bool = False) -> Unavailable:
        reason = str(exc) or type(exc).__name__
        if committing:  # the COMMIT was sent: whether it took is unknown here
            return Unavailable(f"PostgreSQL at {self.where} went away while committing "
                               f"({reason}); the change may or may not be stored: read it "
                               "back before retrying when the database is back")
        return Unavailable(f"PostgreSQL at {self.where} is unreachable ({what}: {reason}); "
                           "the request changed nothing, retry when the database is back")

    async def get(self, key: bytes) -> bytes | None:
        if not 0 < len(key) <= MAX_KEY_BYTES:
            return None
        return await self._run("read", lambda c: c.fetchval(
            "SELECT value FROM dvidql_kv WHERE key = $1", key))

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        if not keys:
            return []
        rows = await self._run("read", lambda c: c.fetch(_GET_MANY, list(keys)))
        out: list[bytes | None] = [None] * len(keys)
        for i, value in rows:
            out[i - 1] = value
        return out

    async def scan(
        self, start: bytes, end: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        query = _SCAN_DOWN if reverse else _SCAN_UP

        async def fetch(lo: bytes, hi: bytes, size: int) -> list[tuple[bytes, bytes]]:
            rows = await self._run("scan", lambda c: c.fetch(query, lo, hi, size))
            return [(key, value) for key, value in rows]

        async for pair in batched_scan(fetch, start, end, reverse=reverse, limit=limit):
            yield pair

    async def scan_many(
        self, ranges: Sequence[tuple[bytes, bytes]]
    ) -> list[list[tuple[bytes, bytes]]]:
        if not ranges:
            return []
        return _group_rows(await self._run("scan", lambda c: c.fetch(
            _SCAN_MANY, [lo for lo, _ in ranges], [hi for _, hi in ranges])), len(ranges))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Txn]:  # type: ignore[override]
        async with self._local_writer:
            committing = False
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _WRITE_LOCK)
                    txn = _PgTxn(conn)
                    yield txn
                    await txn.apply()
                    committing = True  # all that is left is the COMMIT on leaving
            except _DOWN as exc:
                raise self._unavailable("write", exc, committing=committing) from exc

    async def close(self) -> None:
        await self.pool.close()


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply the migrations this database lacks, each in its own transaction; returns them."""
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    try:
        await conn.execute("""CREATE TABLE IF NOT EXISTS dvidql_migrations (
            version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())""")
        done = {r[0] for r in await conn.fetch("SELECT version FROM dvidql_migrations")}
        applied = []
        for version, sql in MIGRATIONS:
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO dvidql_migrations (version) VALUES ($1)", version)
            applied.append(version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)


async def open_postgres(dsn: str, *, min_size: int = 2, max_size: int = 20,
                        **pool_options: Any) -> PostgresMetaStore:
    """Connect a pool to ``dsn`` and bring its schema up to date."""
    where = describe_dsn(dsn)
    try:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size,
                                         timeout=10, command_timeout=60, **pool_options)
    except _DOWN as exc:
        raise Unavailable(f"cannot connect to PostgreSQL at {where}: {exc}") from exc
    except asyncpg.PostgresError as exc:
        raise Unavailable(f"PostgreSQL at {where} refused the connection: {exc}") from exc
    try:
        async with pool.acquire() as conn:
            applied = await migrate(conn)
    except BaseException:
        await pool.close()
        raise
    if applied:
        log.info("PostgreSQL at %s: applied schema migrations %s", where, applied)
    return PostgresMetaStore(pool, where)
