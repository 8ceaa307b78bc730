"""The mutation log's per-instance index on both metadata backends: reading one instance's
records gives exactly what filtering the whole log gives, on new stores and on stores written
before the index existed."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from dvidql.events import log
from dvidql.storage import keys as K
from dvidql.storage.base import MetaStore
from dvidql.storage.lmdb import open_embedded
from dvidql.storage.postgres import open_postgres
from tests.services import fresh_database

REPO = 3
A, B = "a" * 32, "b" * 32  # data UUIDs
V1, V2 = "1" * 32, "2" * 32  # version UUIDs


@pytest.fixture(params=["lmdb", "postgres"])
async def meta(request, tmp_path):
    if request.param == "lmdb":
        store, _ = open_embedded(tmp_path / "data")
    else:
        store = await open_postgres(fresh_database(request.getfixturevalue("services")))
    yield store
    await store.close()


def _record(i: int) -> dict[str, Any]:
    """Instance A every third record, repo-level records now and then, B otherwise; two
    versions."""
    if i % 7 == 0:
        return {"Action": "newversion", "UUID": V1}
    return {"Action": "merge", "DataUUID": A if i % 3 == 0 else B,
            "UUID": V1 if i % 2 else V2, "Target": i}


async def _append(meta: MetaStore, records: list[dict[str, Any]]) -> None:
    for record in records:
        async with meta.transaction() as txn:
            await log.append(txn, REPO, record)


async def _append_before_index(meta: MetaStore, records: list[dict[str, Any]]) -> None:
    """What ``append`` wrote before the index existed: the counter and the record only."""
    for record in records:
        async with meta.transaction() as txn:
            counter = K.meta_key(f"mutid/{REPO}")
            current = await txn.get(counter)
            mutation_id = (int(current) if current else 0) + 1
            txn.put(counter, str(mutation_id).encode())
            txn.put(K.mutation_key(REPO, mutation_id),
                    orjson.dumps({"MutationID": mutation_id, **record}))


async def _expected(meta: MetaStore, data_uuid: str, since: int, limit: int | None,
                    versions: set[str] | None) -> list[dict[str, Any]]:
    """The old way: every record of the repo, filtered."""
    mine = [r for r in await log.read(meta, REPO, since) if r.get("DataUUID") == data_uuid
            and (versions is None or r["UUID"] in versions)]
    return mine if limit is None else mine[:limit]


async def _assert_same_as_filtering(meta: MetaStore) -> None:
    total = await log.last_id(meta, REPO)
    for data_uuid in (A, B, "c" * 32):
        for versions in (None, {V1}, {V2}, {V1, V2}, set()):
            for since in (0, 1, total // 3, total // 2, total - 1, total):
                for limit in (None, 1, 2, 5):
                    got = await log.read_instance(meta, REPO, data_uuid, since=since,
                                                  limit=limit, versions=versions)
                    assert got == await _expected(meta, data_uuid, since, limit, versions), \
                        (data_uuid, versions, since, limit)


async def test_reads_one_instance_as_filtering_the_log_does(meta):
    await _append(meta, [_record(i) for i in range(1, 60)])
    assert len(await log.read_instance(meta, REPO, A)) == 17
    await _assert_same_as_filtering(meta)


async def test_other_repos_and_instances_stay_apart(meta):
    await _append(meta, [_record(i) for i in range(1, 20)])
    async with meta.transaction() as txn:
        await log.append(txn, REPO + 1, {"Action": "merge", "DataUUID": A, "UUID": V1})
    assert [r["MutationID"] for r in await log.read_instance(meta, REPO + 1, A)] == [1]
    assert len(await log.read_instance(meta, REPO, A)) == 6


async def test_stores_from_before_the_index(meta):
    """Old records are found by the scan below the marker, new ones through the index."""
    await _append_before_index(meta, [_record(i) for i in range(1, 40)])
    await _assert_same_as_filtering(meta)  # no marker yet: everything is scanned
    await _append(meta, [_record(i) for i in range(40, 80)])
    assert await meta.get(K.meta_key(f"mutindex-from/{REPO}")) == b"40"
    await _assert_same_as_filtering(meta)


async def test_a_failed_mutation_leaves_no_index_entry(meta):
    await _append(meta, [_record(3)])
    with pytest.raises(RuntimeError):
        async with meta.transaction() as txn:
            await log.append(txn, REPO, _record(6))
            raise RuntimeError("refused")
    await _append(meta, [_record(9)])
    assert [r["Target"] for r in await log.read_instance(meta, REPO, A)] == [3, 9]
