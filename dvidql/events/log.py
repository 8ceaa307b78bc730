"""The mutation log: one record per mutation, appended in the mutation's own transaction.

Mutation ids are repo-wide and strictly increasing. The log is the single source later read by
the Kafka outbox, GraphQL subscriptions and DVID's ``/mutations`` endpoints.

A record naming a data instance (``DataUUID``) also gets an entry in that instance's index,
``mutindex/{repo}/{data uuid}/`` + mutation id (u64 BE) → the record's version UUID, so one
instance's records are a range scan of its own entries rather than a filter of the whole log.
The ``mutindex-from/{repo}`` marker holds the first mutation id that was indexed: stores
written before the index existed set it at their next append, and reads find the older
records by scanning the log below it, as they did before (the marker never moves, so the two
parts never overlap or miss a record).
"""

from __future__ import annotations

import struct
from collections.abc import Collection
from typing import Any

import orjson

from dvidql.ids import now
from dvidql.storage import keys as K
from dvidql.storage.base import SCAN_BATCH, MetaStore, Txn

__all__ = ["append", "last_id", "read", "read_instance"]

_U64 = struct.Struct(">Q")


def _counter_key(repo_id: int) -> bytes:
    return K.meta_key(f"mutid/{repo_id}")


def _indexed_from_key(repo_id: int) -> bytes:
    return K.meta_key(f"mutindex-from/{repo_id}")


def _index_prefix(repo_id: int, data_uuid: str) -> bytes:
    return K.meta_key(f"mutindex/{repo_id}/{data_uuid}/")


async def append(txn: Txn, repo_id: int, record: dict[str, Any]) -> int:
    """Log ``record`` (DVID message fields) and return its new mutation id."""
    current = await txn.get(_counter_key(repo_id))
    mutation_id = (int(current) if current else 0) + 1
    txn.put(_counter_key(repo_id), str(mutation_id).encode())
    if await txn.get(_indexed_from_key(repo_id)) is None:
        txn.put(_indexed_from_key(repo_id), str(mutation_id).encode())
    entry = {"MutationID": mutation_id, "Timestamp": now(), **record}
    txn.put(K.mutation_key(repo_id, mutation_id), orjson.dumps(entry))
    data_uuid = record.get("DataUUID")
    if isinstance(data_uuid, str):
        txn.put(_index_prefix(repo_id, data_uuid) + _U64.pack(mutation_id),
                str(record.get("UUID", "")).encode())
    return mutation_id


async def last_id(meta: MetaStore, repo_id: int) -> int:
    current = await meta.get(_counter_key(repo_id))
    return int(current) if current else 0


async def read(
    meta: MetaStore, repo_id: int, since: int = 0, limit: int | None = None
) -> list[dict[str, Any]]:
    """Records with mutation id greater than ``since``, oldest first."""
    start = K.mutation_key(repo_id, since + 1)
    end = K.mutation_prefix(repo_id + 1)
    return [orjson.loads(v) async for _, v in meta.scan(start, end, limit=limit)]


async def read_instance(
    meta: MetaStore, repo_id: int, data_uuid: str, *, since: int = 0,
    limit: int | None = None, versions: Collection[str] | None = None,
) -> list[dict[str, Any]]:
    """The records naming data instance ``data_uuid`` with mutation id greater than
    ``since``, made at one of ``versions`` (any if None), oldest first, at most ``limit``."""
    marker = await meta.get(_indexed_from_key(repo_id))
    indexed_from = int(marker) if marker else None
    found: list[dict[str, Any]] = []
    if indexed_from is None or since + 1 < indexed_from:  # records older than the index
        end = K.mutation_prefix(repo_id + 1) if indexed_from is None else \
            K.mutation_key(repo_id, indexed_from)
        async for _, value in meta.scan(K.mutation_key(repo_id, since + 1), end):
            if limit is not None and len(found) == limit:
                return found
            record = orjson.loads(value)
            if record.get("DataUUID") == data_uuid and (
                    versions is None or record.get("UUID") in versions):
                found.append(record)
    if indexed_from is None:
        return found
    prefix = _index_prefix(repo_id, data_uuid)
    wanted: list[bytes] = []
    async for key, version in meta.scan(prefix + _U64.pack(max(since + 1, indexed_from)),
                                        prefix + b"\xff" * (_U64.size + 1)):
        if limit is not None and len(found) + len(wanted) == limit:
            break
        if versions is None or version.decode() in versions:
            wanted.append(K.mutation_key(repo_id, _U64.unpack_from(key, len(prefix))[0]))
    for i in range(0, len(wanted), SCAN_BATCH):
        found += [orjson.loads(v) for v in await meta.get_many(wanted[i : i + SCAN_BATCH])
                  if v is not None]  # never None: a record and its entry commit together
    return found
