"""keyvalue operations: the one implementation behind REST and GraphQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.keyvalue.keys import decode_tkey, encode_tkey
from dvidql.errors import BadRequest, NotFound

__all__ = ["delete", "exists", "get", "get_many", "items", "keys", "put", "put_many"]


async def get(h: DataHandle, key: str) -> bytes:
    value = await h.kv.get(h.instance_id, encode_tkey(key), h.lineage)
    if value is None:
        raise NotFound(f"key {key!r} not found in {h.instance.name!r} at version {h.node.uuid}")
    return value


async def exists(h: DataHandle, key: str) -> bool:
    return await h.kv.get_raw(h.instance_id, encode_tkey(key), h.lineage) is not None


async def get_many(h: DataHandle, keys: Sequence[str]) -> list[bytes | None]:
    """Values of many keys (None where absent) in one batch."""
    return await h.kv.get_many(h.instance_id, [encode_tkey(k) for k in keys], h.lineage)


async def put(h: DataHandle, key: str, value: bytes) -> int:
    """Store a value; returns the mutation id."""
    return await put_many(h, [(key, value)])


async def put_many(h: DataHandle, pairs: Sequence[tuple[str, bytes]]) -> int:
    """Store many values in one transaction (all or nothing); returns the last mutation id."""
    encoded = [(encode_tkey(k), k, v) for k, v in pairs]
    if not encoded:
        raise BadRequest("no key-value pairs were given")
    prepared = [(tkey, key, value, await h.kv.encode(value)) for tkey, key, value in encoded]
    mutation_id = 0
    async with h.writing() as txn:
        for tkey, key, value, raw in prepared:
            h.kv.put_raw(txn, h.instance_id, tkey, h.version, raw,
                         versioned=h.instance.versioned)
            mutation_id = await h.log(txn, {"Action": "postkv", "Key": key, "Bytes": len(value)})
    return mutation_id


async def delete(h: DataHandle, key: str) -> int:
    """Delete a key at this version (a tombstone, so ancestors keep their value)."""
    tkey = encode_tkey(key)
    async with h.writing() as txn:
        h.kv.delete(txn, h.instance_id, tkey, h.version, versioned=h.instance.versioned)
        return await h.log(txn, {"Action": "deletekv", "Key": key})


def _bounds(lo: str | None, hi: str | None) -> tuple[bytes, bytes | None]:
    if lo is not None and hi is not None and lo > hi:
        raise BadRequest(f"key range is empty: {lo!r} sorts after {hi!r}")
    return (b"" if lo is None else encode_tkey(lo)), (None if hi is None else encode_tkey(hi))


async def keys(h: DataHandle, lo: str | None = None, hi: str | None = None) -> list[str]:
    """Keys visible at this version, sorted, within the inclusive range if given."""
    start, end = _bounds(lo, hi)
    return [decode_tkey(t) async for t, _ in h.kv.scan(h.instance_id, h.lineage, start, end,
                                                        keys_only=True)]


async def items(
    h: DataHandle, lo: str | None = None, hi: str | None = None
) -> AsyncIterator[tuple[str, bytes]]:
    """Key-value pairs visible at this version, sorted, within the inclusive range."""
    start, end = _bounds(lo, hi)
    async for tkey, value in h.kv.scan(h.instance_id, h.lineage, start, end):
        yield decode_tkey(tkey), value
