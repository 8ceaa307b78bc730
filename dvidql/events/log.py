"""The mutation log: one record per mutation, appended in the mutation's own transaction.

Mutation ids are repo-wide and strictly increasing. The log is the single source later read by
the Kafka outbox, GraphQL subscriptions and DVID's ``/mutations`` endpoints.
"""

from __future__ import annotations

from typing import Any

import orjson

from dvidql.ids import now
from dvidql.storage import keys as K
from dvidql.storage.base import MetaStore, Txn

__all__ = ["append", "last_id", "read"]


def _counter_key(repo_id: int) -> bytes:
    return K.meta_key(f"mutid/{repo_id}")


async def append(txn: Txn, repo_id: int, record: dict[str, Any]) -> int:
    """Log ``record`` (DVID message fields) and return its new mutation id."""
    current = await txn.get(_counter_key(repo_id))
    mutation_id = (int(current) if current else 0) + 1
    txn.put(_counter_key(repo_id), str(mutation_id).encode())
    entry = {"MutationID": mutation_id, "Timestamp": now(), **record}
    txn.put(K.mutation_key(repo_id, mutation_id), orjson.dumps(entry))
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
