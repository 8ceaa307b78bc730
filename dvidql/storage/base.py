"""The two small storage interfaces every backend implements, and shared conveniences.

``MetaStore`` holds ordered, small keys transactionally (repos, DAGs, keyvalue entries, logs);
``BlobStore`` holds large immutable values addressed by the hash of their bytes. Everything
versioned is built once on top of these in :mod:`dvidql.storage.versioned`.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from typing_extensions import Buffer

from dvidql.errors import BadRequest
from dvidql.parallel import in_parallel

__all__ = [
    "BlobStore",
    "BufferedTxn",
    "ByteRange",
    "Engine",
    "EngineMetaStore",
    "MetaStore",
    "Txn",
    "batched_scan",
    "content_ref",
]

SCAN_BATCH = 4096


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A half-open byte range ``[start, stop)``; ``stop=None`` reads to the end."""

    start: int
    stop: int | None = None

    def apply(self, data: bytes) -> bytes:
        return data[self.start : self.stop]


def content_ref(data: bytes) -> str:
    """The content address of a blob: hex BLAKE2b-128 of its bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


Fetch = Callable[[bytes, bytes, int], Awaitable[list[tuple[bytes, bytes]]]]


async def batched_scan(fetch: Fetch, start: bytes, end: bytes, *, reverse: bool,
                       limit: int | None) -> AsyncIterator[tuple[bytes, bytes]]:
    """A scan as a series of bounded reads, ``fetch(lo, hi, n)`` giving at most ``n`` pairs
    of ``[lo, hi)`` from the scan's end, so long scans never hold a whole range at once."""
    remaining = limit
    lo, hi = start, end
    while remaining is None or remaining > 0:
        size = SCAN_BATCH if remaining is None else min(SCAN_BATCH, remaining)
        batch = await fetch(lo, hi, size)
        for pair in batch:
            yield pair
        if len(batch) < size:
            return
        if remaining is not None:
            remaining -= len(batch)
        if reverse:
            hi = batch[-1][0]
        else:
            lo = batch[-1][0] + b"\x00"


class Txn(abc.ABC):
    """A read-write transaction: reads see the transaction's own writes."""

    @abc.abstractmethod
    async def get(self, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    async def scan(
        self, start: bytes, end: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]: ...

    async def scan_many(
        self, ranges: Sequence[tuple[bytes, bytes]]
    ) -> list[list[tuple[bytes, bytes]]]:
        """The pairs of each ``[start, end)`` range, in one round trip where the medium can."""
        return [await self.scan(lo, hi) for lo, hi in ranges]

    @abc.abstractmethod
    def put(self, key: bytes, value: bytes) -> None: ...

    @abc.abstractmethod
    def delete(self, key: bytes) -> None: ...


class MetaStore(abc.ABC):
    """Ordered, transactional small keys (bytewise order, half-open ranges).

    Parameters of ``scan``: ``start`` inclusive, ``end`` exclusive; ``reverse`` walks down
    from ``end``; ``limit`` bounds the number of pairs.
    """

    supports_snapshots: bool = True
    supports_concurrent_writers: bool = False
    max_key_bytes: int | None = None  # longest key the medium stores (None: no limit)
    # Committed write transactions so far, where every writer is in this process (so readers
    # may remember what they read until it changes); None where other processes write too.
    generation: int | None = None

    @abc.abstractmethod
    async def get(self, key: bytes) -> bytes | None: ...

    @abc.abstractmethod
    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]: ...

    @abc.abstractmethod
    def scan(
        self, start: bytes, end: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> AsyncIterator[tuple[bytes, bytes]]: ...

    async def scan_many(
        self, ranges: Sequence[tuple[bytes, bytes]]
    ) -> list[list[tuple[bytes, bytes]]]:
        """All pairs of several ranges; backends answer it in one round trip where they can."""
        return [[kv async for kv in self.scan(s, e)] for s, e in ranges]

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncTxnContext: ...

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the default has none."""


class AbstractAsyncTxnContext(Protocol):
    async def __aenter__(self) -> Txn: ...
    async def __aexit__(self, *exc: object) -> bool | None: ...


class BlobStore(abc.ABC):
    """Large immutable values, content-addressed so identical bytes are stored once."""

    @abc.abstractmethod
    async def put(self, data: bytes) -> str:
        """Store ``data`` (idempotent) and return its content reference."""

    async def put_many(self, datas: Sequence[bytes]) -> list[str]:
        """Store many values; order kept. A bounded gather by default; backends batch."""
        sem = asyncio.Semaphore(32)

        async def one(data: bytes) -> str:
            async with sem:
                return await self.put(data)

        return list(await asyncio.gather(*(one(d) for d in datas)))

    @abc.abstractmethod
    async def get(self, ref: str, byte_range: ByteRange | None = None) -> bytes | None: ...

    async def get_many(self, refs: Sequence[str]) -> list[bytes | None]:
        """Order kept, None for missing; a bounded gather by default."""
        sem = asyncio.Semaphore(32)

        async def one(ref: str) -> bytes | None:
            async with sem:
                return await self.get(ref)

        return list(await asyncio.gather(*(one(r) for r in refs)))

    async def visit_many(self, refs: Sequence[str],
                         visit: Callable[[int, Buffer], None]) -> list[bool]:
        """Call ``visit(i, data)`` for each stored blob ``refs[i]`` on the worker threads, for
        work such as decoding that needs the bytes only for the call: ``data`` may be a view
        of the store's own memory, valid only then. Returns which refs were found. The
        default reads everything first; embedded stores visit their memory in place."""
        datas = await self.get_many(refs)
        present = [(i, d) for i, d in enumerate(datas) if d is not None]

        def work(part: Sequence[tuple[int, bytes]]) -> list[None]:
            for i, data in part:
                visit(i, data)
            return []

        await in_parallel(present, work)
        return [d is not None for d in datas]

    @abc.abstractmethod
    async def exists(self, ref: str) -> bool: ...

    @abc.abstractmethod
    async def delete(self, ref: str) -> None:
        """Remove a blob; only garbage collection calls this."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> AsyncIterator[str]: ...

    async def list_with_times(self, prefix: str = ""
                              ) -> AsyncIterator[tuple[str, float | None]]:
        """References with the Unix time each was last written (by any put of its bytes),
        None where the store keeps no times; garbage collection spares recent blobs."""
        async for ref in self.list(prefix):
            yield ref, None

    async def written_at(self, ref: str) -> float | None:
        """The time :meth:`list_with_times` gives for one blob (None: absent or unknown)."""
        return None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources; the default has none."""


class Engine(abc.ABC):
    """A synchronous ordered key-value medium (memory, LMDB) under :class:`EngineMetaStore`.

    Reads are cheap enough to run on the event loop; ``apply`` commits a batch atomically and
    may be slow (fsync), so the store runs it in a worker thread when ``slow_apply`` is set.
    """

    slow_apply: bool = False
    max_key_bytes: int | None = None

    @abc.abstractmethod
    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]: ...

    @abc.abstractmethod
    def scan_ranges(
        self,
        ranges: Sequence[tuple[bytes, bytes]],
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> list[list[tuple[bytes, bytes]]]: ...

    @abc.abstractmethod
    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        """Atomically put (value) or delete (None) every key of ``writes``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the medium."""


def _get_many(engine: Engine, keys: Sequence[bytes]) -> list[bytes | None]:
    """Keys the medium cannot hold (empty, or longer than its limit) are simply absent."""
    limit = engine.max_key_bytes
    if limit is None or all(0 < len(k) <= limit for k in keys):
        return engine.get_many(keys)
    storable = [k for k in keys if 0 < len(k) <= limit]
    found = dict(zip(storable, engine.get_many(storable), strict=True))
    return [found.get(k) for k in keys]


class BufferedTxn(Txn):
    """Writes buffered in memory and applied at commit; reads overlay the buffer on what the
    medium holds. Backends supply the two reads and apply ``writes`` when the block ends."""

    def __init__(self, max_key_bytes: int | None) -> None:
        self.max_key_bytes = max_key_bytes
        self.writes: dict[bytes, bytes | None] = {}

    @abc.abstractmethod
    async def read(self, key: bytes) -> bytes | None:
        """The medium's value of a storable key."""

    @abc.abstractmethod
    async def read_range(self, start: bytes, end: bytes) -> list[tuple[bytes, bytes]]:
        """The medium's pairs in ``[start, end)``, in key order."""

    async def read_ranges(
        self, ranges: Sequence[tuple[bytes, bytes]]
    ) -> list[list[tuple[bytes, bytes]]]:
        """:meth:`read_range` of many ranges; backends batch it into one round trip."""
        return [await self.read_range(lo, hi) for lo, hi in ranges]

    def storable(self, key: bytes) -> bool:
        return 0 < len(key) and (self.max_key_bytes is None or len(key) <= self.max_key_bytes)

    async def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return await self.read(key) if self.storable(key) else None

    def _overlay(self, read: list[tuple[bytes, bytes]], start: bytes, end: bytes
                 ) -> list[tuple[bytes, bytes]]:
        merged = dict(read)
        for key, value in self.writes.items():
            if start <= key < end:
                if value is None:
                    merged.pop(key, None)
                else:
                    merged[key] = value
        return sorted(merged.items())

    async def scan(
        self, start: bytes, end: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> list[tuple[bytes, bytes]]:
        pairs = self._overlay(await self.read_range(start, end), start, end)
        if reverse:
            pairs.reverse()
        return pairs if limit is None else pairs[:limit]

    async def scan_many(
        self, ranges: Sequence[tuple[bytes, bytes]]
    ) -> list[list[tuple[bytes, bytes]]]:
        found = await self.read_ranges(ranges)
        return [self._overlay(pairs, lo, hi)
                for pairs, (lo, hi) in zip(found, ranges, strict=True)]

    def put(self, key: bytes, value: bytes) -> None:
        limit = self.max_key_bytes
        if limit is not None and len(key) > limit:
            raise BadRequest(f"a stored key may be at most {limit} bytes; this one has "
                             f"{len(key)} (use a shorter key)")
        self.writes[key] = bytes(value)

    def delete(self, key: bytes) -> None:
        self.writes[key] = None


class _EngineTxn(BufferedTxn):
    def __init__(self, engine: Engine) -> None:
        super().__init__(engine.max_key_bytes)
        self._engine = engine

    async def read(self, key: bytes) -> bytes | None:
        return self._engine.get_many([key])[0]

    async def read_range(self, start: bytes, end: bytes) -> list[tuple[bytes, bytes]]:
        return self._engine.scan_ranges([(start, end)])[0]

    async def read_ranges(
        self, ranges: Sequence[tuple[bytes, bytes]]
    ) -> list[list[tuple[bytes, bytes]]]:
        return self._engine.scan_ranges(ranges)


class EngineMetaStore(MetaStore):
    """A MetaStore over a synchronous engine, for one process.

    Transactions are serialized by an asyncio lock, which makes them serializable within the
    process; the embedded backend is single-process by design (the data directory is locked).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.max_key_bytes = engine.max_key_bytes
        self._write_lock = asyncio.Lock()
        self.generation = 0  # committed write transactions, counted once each is stored

    async def get(self, key: bytes) -> bytes | None:
        return _get_many(self.engine, [key])[0]

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return _get_many(self.engine, keys)

    async def scan(
        self, start: bytes, end: bytes, *, reverse: bool = False, limit: int | None = None
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        async def fetch(lo: bytes, hi: bytes, size: int) -> list[tuple[bytes, bytes]]:
            return self.engine.scan_ranges([(lo, hi)], reverse=reverse, limit=size)[0]

        async for pair in batched_scan(fetch, start, end, reverse=reverse, limit=limit):
            yield pair

    async def scan_many(
        self, ranges: Sequence[tuple[bytes, bytes]]
    ) -> list[list[tuple[bytes, bytes]]]:
        return self.engine.scan_ranges(ranges)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Txn]:  # type: ignore[override]
        async with self._write_lock:
            txn = _EngineTxn(self.engine)
            yield txn
            if txn.writes:
                try:
                    if self.engine.slow_apply:
                        await asyncio.to_thread(self.engine.apply, txn.writes)
                    else:
                        self.engine.apply(txn.writes)
                finally:  # even a failed apply may have changed what reads see
                    self.generation += 1

    async def close(self) -> None:
        self.engine.close()
