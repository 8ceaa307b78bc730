"""Versioned point reads through LMDB next to raw LMDB reads of the same physical keys.

Builds, in a temporary directory, an embedded store with one repo whose master branch is a
chain of committed versions; N keys are written at one version of the chain, and ``kv.get``
is timed at that version and at 1, 10 and 100 versions below it. The baseline is a raw
``lmdb`` ``txn.get`` of the physical data keys, one read transaction per get as ``kv.get``
uses. Run with ``python -m bench.bench_versioned_get``.
"""

from __future__ import annotations

import asyncio
import random
import tempfile

from bench.harness import Bench
from dvidql.ids import new_uuid
from dvidql.storage import keys as K
from dvidql.storage.lmdb import open_embedded
from dvidql.storage.versioned import VersionedKV
from dvidql.versions.dag import Instance, Node
from dvidql.versions.repos import RepoManager

N_KEYS = 10_000
VALUE_BYTES = 100
ABOVE = 10  # versions before the one that writes
DEPTHS = (1, 10, 100)  # versions below the write that are read


async def run(directory: str) -> Bench:
    meta, blobs = open_embedded(directory)
    try:
        kv = VersionedKV(meta, blobs)
        repos = RepoManager(meta, kv)
        repo = await repos.create_repo(alias="bench")
        instance = await repos.add_instance(repo, lambda i: Instance(
            name="kv", type_name="keyvalue", data_uuid=new_uuid(), instance_id=i))
        iid = instance.instance_id

        async def advance(node: Node) -> Node:
            await repos.commit(repos.repos[repo.repo_id], node)
            return await repos.new_version(repos.repos[repo.repo_id], node)

        node = repos.repos[repo.repo_id].nodes[repo.root_version]
        for _ in range(ABOVE):
            node = await advance(node)
        written = node
        rng = random.Random(42)
        tkeys = [b"key-%06d\x00" % i for i in range(N_KEYS)]
        async with meta.transaction() as txn:
            await repos.assert_writable(txn, written)
            for tkey in tkeys:
                await kv.put(txn, iid, tkey, written.version_id, rng.randbytes(VALUE_BYTES))
        chain = [written]
        for _ in range(max(DEPTHS)):
            chain.append(await advance(chain[-1]))
        current = repos.repos[repo.repo_id]

        order = tkeys[:]
        rng.shuffle(order)
        physical = [K.data_key(iid, t, written.version_id) for t in order]
        env, db = meta.engine.env, meta.engine.db  # type: ignore[attr-defined]

        bench = Bench(
            "versioned_get",
            warmup=1,
            repeats=5,
            params={"keys": N_KEYS, "value_bytes": VALUE_BYTES,
                    "versions": len(current.nodes), "backend": "lmdb"},
        )

        def raw_get(i: int) -> bytes | None:
            with env.begin(db=db) as txn:
                return txn.get(physical[i])

        bench.measure("lmdb txn.get, txn per get", raw_get, N_KEYS, baseline=True)

        with env.begin(db=db) as shared:
            bench.measure("lmdb txn.get, one txn", lambda i: shared.get(physical[i]), N_KEYS)

        for depth in (0, *DEPTHS):
            lineage = repos.lineage(current, chain[depth].version_id)
            assert await kv.get(iid, order[0], lineage) is not None

            async def versioned_get(i: int, lineage=lineage) -> bytes | None:
                return await kv.get(iid, order[i], lineage)

            label = "at the write" if depth == 0 else f"{depth} below"
            await bench.ameasure(f"kv.get, {label}", versioned_get, N_KEYS)
        return bench
    finally:
        await meta.close()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="dvidql-bench-") as directory:
        bench = asyncio.run(run(directory))
    bench.report()


if __name__ == "__main__":
    main()
