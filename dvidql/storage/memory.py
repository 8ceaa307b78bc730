"""In-memory backends: the reference the property tests compare against, and fast unit tests."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Sequence

from dvidql.storage.base import BlobStore, ByteRange, Engine, EngineMetaStore, content_ref

__all__ = ["MemoryBlobStore", "MemoryEngine", "memory_meta_store"]


class MemoryEngine(Engine):
    """A dict plus a sorted key list: ordered scans without any dependency."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] = {}
        self._keys: list[bytes] = []

    def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return [self._data.get(k) for k in keys]  # no key limit: every key is storable

    def scan_ranges(
        self,
        ranges: Sequence[tuple[bytes, bytes]],
        *,
        reverse: bool = False,
        limit: int | None = None,
    ) -> list[list[tuple[bytes, bytes]]]:
        out = []
        for start, end in ranges:
            lo = bisect.bisect_left(self._keys, start)
            hi = bisect.bisect_left(self._keys, end)
            keys = self._keys[lo:hi]
            if reverse:
                keys.reverse()
            if limit is not None:
                keys = keys[:limit]
            out.append([(k, self._data[k]) for k in keys])
        return out

    def apply(self, writes: dict[bytes, bytes | None]) -> None:
        for key, value in writes.items():
            if value is None:
                if self._data.pop(key, None) is not None:
                    del self._keys[bisect.bisect_left(self._keys, key)]
            else:
                if key not in self._data:
                    bisect.insort(self._keys, key)
                self._data[key] = value


def memory_meta_store() -> EngineMetaStore:
    """A fresh, empty in-memory metadata store."""
    return EngineMetaStore(MemoryEngine())


class MemoryBlobStore(BlobStore):
    def __init__(self) -> None:
        self._blobs: dict[str, bytes] = {}

    async def put(self, data: bytes) -> str:
        ref = content_ref(data)
        self._blobs.setdefault(ref, bytes(data))
        return ref

    async def get(self, ref: str, byte_range: ByteRange | None = None) -> bytes | None:
        data = self._blobs.get(ref)
        if data is None or byte_range is None:
            return data
        return byte_range.apply(data)

    async def exists(self, ref: str) -> bool:
        return ref in self._blobs

    async def delete(self, ref: str) -> None:
        self._blobs.pop(ref, None)

    async def list(self, prefix: str = "") -> AsyncIterator[str]:
        for ref in sorted(self._blobs):
            if ref.startswith(prefix):
                yield ref
