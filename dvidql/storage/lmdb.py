"""Embedded backend: metadata and blobs in one LMDB environment in one directory.

LMDB commits are atomic and, once ``commit`` returns, on disk (``sync=True``), so an
acknowledged write survives a killed process. A lock file keeps a second process from serving
the same directory, since the in-process transaction lock is what serializes writers.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import lmdb
from typing_extensions import Buffer

from dvidql.errors import Unavailable
from dvidql.parallel import in_parallel
from dvidql.storage.base import BlobStore, ByteRange, Engine, EngineMetaStore, content_ref

__all__ = ["LmdbBlobStore", "LmdbEngine", "open_embedded"]

DEFAULT_MAP_SIZE = 1 << 40  # virtual; the file grows only as data is written


class LmdbEngine(Engine):
    slow_apply = True

    def __init__(self, env: lmdb.Environment, db: object) -> None:
        self.env = env
        self.db = db
        self.max_key_bytes = env.max_key_size()

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        with self.env.begin(db=self.db) as txn:
            return [txn.get(k) for k in keys]

    def scan_ranges(
        self,
        ranges: Sequence[tuple[bytes, bytes]],
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> list[list[tuple[bytes, bytes]]]:
        out: list[list[tuple[bytes, bytes]]] = []
        with self.env.begin(db=self.db) as txn:
            cursor = txn.cursor()
            for start, end in ranges:
                out.append(_scan_one(cursor, start, end, reverse, limit, self.max_key_bytes))
        return out

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        with self.env.begin(db=self.db, write=True) as txn:
            for key, value in writes.items():
                if value is None:
                    txn.delete(key)
                else:
                    txn.put(key, value)


def _scan_one(
    cursor: lmdb.Cursor, start: bytes, end: bytes, reverse: bool, limit: int | None,
    max_key: int,
) -> list[tuple[bytes, bytes]]:
    """Pairs in [start, end); bounds longer than LMDB's key limit are cut to it for seeking
    (a cut bound sorts no later than the bound) and enforced by comparison."""
    pairs: list[tuple[bytes, bytes]] = []
    if start >= end:
        return pairs
    if not reverse:
        if not (cursor.set_range(start[:max_key]) if start else cursor.first()):
            return pairs
        for key, value in cursor:
            if key >= end or (limit is not None and len(pairs) >= limit):
                break
            if key >= start:
                pairs.append((key, value))
        return pairs
    # reverse: position on the last key < end
    positioned = cursor.set_range(end[:max_key])
    while positioned and cursor.key() < end:
        positioned = cursor.next()
    ok = cursor.prev() if positioned else cursor.last()
    while ok:
        key = cursor.key()
        if key < start or (limit is not None and len(pairs) >= limit):
            break
        pairs.append((key, cursor.value()))
        ok = cursor.prev()
    return pairs


class LmdbBlobStore(BlobStore):
    def __init__(self, env: lmdb.Environment, db: object) -> None:
        self.env = env
        self.db = db

    async def put(self, data: bytes) -> str:
        return (await self.put_many([data]))[0]

    async def put_many(self, datas: Sequence[bytes]) -> list[str]:
        """One write transaction (and one thread hop) for the whole batch."""
        refs = [content_ref(d) for d in datas]

        def write() -> None:
            with self.env.begin(db=self.db, write=True) as txn:
                for ref, data in zip(refs, datas, strict=True):
                    txn.put(ref.encode(), data, overwrite=False)

        await asyncio.to_thread(write)
        return refs

    async def get(self, ref: str, byte_range: ByteRange | None = None) -> bytes | None:
        with self.env.begin(db=self.db, buffers=True) as txn:
            view = txn.get(ref.encode())
            if view is None:
                return None
            return bytes(view if byte_range is None else byte_range.apply(view))

    async def get_many(self, refs: Sequence[str]) -> list[bytes | None]:
        with self.env.begin(db=self.db) as txn:
            return [txn.get(r.encode()) for r in refs]

    async def visit_many(self, refs: Sequence[str],
                         visit: Callable[[int, Buffer], None]) -> list[bool]:
        """Visits the memory-mapped values inside read transactions on the worker threads,
        so no blob is copied before it is decoded."""
        def work(part: Sequence[tuple[int, str]]) -> list[bool]:
            found = []
            with self.env.begin(db=self.db, buffers=True) as txn:
                for i, ref in part:
                    view = txn.get(ref.encode())
                    if view is not None:
                        visit(i, view)
                    found.append(view is not None)
            return found

        return await in_parallel(list(enumerate(refs)), work)

    async def exists(self, ref: str) -> bool:
        with self.env.begin(db=self.db, buffers=True) as txn:
            return txn.get(ref.encode()) is not None

    async def delete(self, ref: str) -> None:
        def remove() -> None:
            with self.env.begin(db=self.db, write=True) as txn:
                txn.delete(ref.encode())

        await asyncio.to_thread(remove)

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        with self.env.begin(db=self.db) as txn:
            cursor = txn.cursor()
            refs: list[str] = []
            if cursor.set_range(prefix.encode()):
                for key in cursor.iternext(values=False):
                    ref = bytes(key).decode()
                    if not ref.startswith(prefix):
                        break
                    refs.append(ref)
        for ref in refs:
            yield ref


class _DirectoryLock:
    """An exclusive flock on ``<dir>/dvidql.lock`` for the life of the process's store."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path / "dvidql.lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise Unavailable(
                f"data directory {path} is in use by another dvidql process; "
                "the embedded store serves one process (use PostgreSQL + S3 for several)"
            ) from None

    def release(self) -> None:
        os.close(self._fd)


class _EmbeddedEngine(LmdbEngine):
    """The metadata engine that also owns the environment and the directory lock."""

    def __init__(self, env: lmdb.Environment, db: object, lock: _DirectoryLock) -> None:
        super().__init__(env, db)
        self._lock = lock

    def close(self) -> None:
        self.env.close()
        self._lock.release()


def open_embedded(
    directory: str | os.PathLike[str], *, map_size: int = DEFAULT_MAP_SIZE
) -> tuple[EngineMetaStore, LmdbBlobStore]:
    """Open (creating if needed) the embedded store in ``directory``."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    lock = _DirectoryLock(path)
    try:
        env = lmdb.open(
            str(path / "lmdb"),
            map_size=map_size,
            max_dbs=4,
            subdir=True,
            sync=True,
            metasync=True,
            readahead=False,
            max_readers=1024,
        )
    except lmdb.Error as exc:
        lock.release()
        raise Unavailable(f"cannot open embedded store in {path}: {exc}") from exc
    meta_db = env.open_db(b"meta")
    blob_db = env.open_db(b"blobs")
    return EngineMetaStore(_EmbeddedEngine(env, meta_db, lock)), LmdbBlobStore(env, blob_db)
