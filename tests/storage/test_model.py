"""Versioned storage against an independent model: random version DAGs, writes and merges.

The model keeps, per version, the entries that version wrote (None for a deletion) and the
DAG, and computes reads and merge conflicts from the definition: the maximal entries among
a version's ancestry decide a read, and disagreeing maximal entries are a conflict.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from dvidql.errors import Conflict, KeyConflict, Locked
from dvidql.storage.base import BlobStore, MetaStore
from dvidql.storage.lmdb import open_embedded
from dvidql.storage.memory import MemoryBlobStore, memory_meta_store
from dvidql.testing.storage import VersionedWorld
from dvidql.versions.repos import RepoManager

T = TypeVar("T")
Key = tuple[str, bytes]  # (instance name, tkey)

INLINE_LIMIT = 8
INSTANCES = VersionedWorld.INSTANCES
KEYS: list[Key] = [("a", b"k0"), ("a", b"k1"), ("a", b"k2"), ("b", b"k0")]
VALUES: list[bytes | None] = [b"", b"v1", b"v2", b"B" * (3 * INLINE_LIMIT), None]  # None: delete
Writes = list[tuple[Key, bytes | None]]
WRITES = st.lists(st.tuples(st.sampled_from(KEYS), st.sampled_from(VALUES)), max_size=3)
PRIORITIES: list[tuple[str, ...] | None] = [None, ("a",), ("b",), ("a", "b")]
CONFLICT = object()  # the model's answer for an ambiguous read
LOCKED_WRITES: list[tuple[bytes, bytes | None]] = [
    (b"k0", b"changed"), (b"k1", b"C" * 40), (b"k0", None), (b"k2", b"new"), (b"k2", None),
]

Opener = Callable[[Path], tuple[MetaStore, BlobStore]]


def open_memory(_: Path) -> tuple[MetaStore, BlobStore]:
    return memory_meta_store(), MemoryBlobStore()


def open_lmdb(directory: Path) -> tuple[MetaStore, BlobStore]:
    return open_embedded(directory)


BACKENDS: dict[str, Opener] = {"memory": open_memory, "lmdb": open_lmdb}


class Model:
    """Versions, their parents, branches and lock flags, and what each version wrote."""

    def __init__(self, root: int) -> None:
        self.parents: dict[int, tuple[int, ...]] = {}
        self.branch: dict[int, str] = {}
        self.locked: set[int] = set()
        self.entries: dict[int, dict[Key, bytes | None]] = {}
        self.add(root, (), "")

    def add(
        self, version: int, parents: tuple[int, ...], branch: str,
        entries: dict[Key, bytes | None] | None = None,
    ) -> None:
        self.parents[version] = parents
        self.branch[version] = branch
        self.entries[version] = dict(entries or {})

    def ancestry(self, version: int) -> set[int]:
        """The version and all its ancestors."""
        seen, stack = {version}, [version]
        while stack:
            for parent in self.parents[stack.pop()]:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen

    def children(self, version: int) -> list[int]:
        return [c for c, parents in self.parents.items() if version in parents]

    def states(self, key: Key, versions: set[int]) -> set[bytes | None]:
        """The distinct states of the maximal entries of ``key`` among ``versions``."""
        holders = [v for v in versions if key in self.entries[v]]
        maximal = [v for v in holders
                   if not any(w != v and v in self.ancestry(w) for w in holders)]
        return {self.entries[v][key] for v in maximal}

    def read(self, version: int, key: Key) -> object:
        states = self.states(key, self.ancestry(version))
        if len(states) > 1:
            return CONFLICT
        return next(iter(states), None)

    def merge_conflicts(self, parents: Iterable[int]) -> list[Key]:
        versions: set[int] = set().union(*(self.ancestry(p) for p in parents))
        return sorted(k for k in KEYS if len(self.states(k, versions)) > 1)


SETTINGS = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class VersionedStorageMachine(RuleBasedStateMachine):
    """Drives RepoManager and VersionedKV; ``open_backend`` is set per backend."""

    open_backend: Opener = staticmethod(open_memory)

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = Path(tempfile.mkdtemp(prefix="dvidql-model-"))
        self.world: VersionedWorld | None = None
        try:
            meta, blobs = type(self).open_backend(self.directory / "data")
            self.world = VersionedWorld(meta, blobs, inline_limit=INLINE_LIMIT)
            root = self.run(self.world.start())
        except BaseException:
            self.teardown()
            raise
        self.model = Model(root.version_id)
        self.branches = 0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        try:
            if self.world is not None:
                self.run(self.world.blobs.close())
                self.run(self.world.meta.close())
        finally:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())
            self.loop.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    # ----- helpers -----------------------------------------------------------------------

    @property
    def w(self) -> VersionedWorld:
        assert self.world is not None
        return self.world

    def committed(self) -> list[int]:
        """Committed versions, newest first (so that draws favour the growing edge)."""
        return sorted(self.model.locked, reverse=True)

    def uncommitted(self) -> list[int]:
        return sorted(set(self.model.parents) - self.model.locked, reverse=True)

    def created(self, version: int) -> None:
        """A new version id is fresh and larger than every other (reads rely on that)."""
        assert version not in self.model.parents
        assert version > max(self.model.parents)

    def do_commit(self, version: int) -> None:
        if version in self.model.locked:
            with pytest.raises(Conflict):
                self.run(self.w.commit(self.w.node(version)))
            return
        self.run(self.w.commit(self.w.node(version)))
        self.model.locked.add(version)

    def do_new_version(self, parent: int) -> int | None:
        branch = self.model.branch[parent]
        if any(self.model.branch[c] == branch for c in self.model.children(parent)):
            event("new_version refused: the branch already continues")
            with pytest.raises(Conflict):
                self.run(self.w.new_version(self.w.node(parent)))
            return None
        child = self.run(self.w.new_version(self.w.node(parent))).version_id
        self.created(child)
        self.model.add(child, (parent,), branch)
        return child

    def do_branch(self, parent: int) -> int:
        self.branches += 1
        name = f"br{self.branches}"
        child = self.run(self.w.branch(self.w.node(parent), name)).version_id
        self.created(child)
        self.model.add(child, (parent,), name)
        return child

    def do_merge(self, parents: list[int], priority: tuple[str, ...] | None) -> None:
        expected = self.model.merge_conflicts(parents)
        refused = any(instance not in (priority or ()) for instance, _ in expected)
        outcome = self.run(self.w.merge([self.w.node(p) for p in parents], priority_for=priority))
        assert outcome.conflicts == expected
        if refused:
            event("merge refused")
            assert outcome.child is None
            return
        event("merge resolved conflicts" if expected else "merge without conflicts")
        assert outcome.child is not None
        child = outcome.child.version_id
        self.created(child)
        resolved = {key: self.model.read(parents[0], key) for key in expected}
        assert CONFLICT not in resolved.values()
        self.model.add(child, tuple(parents), self.model.branch[parents[0]],
                       resolved)  # type: ignore[arg-type]

    def put(self, version: int, key: Key, value: bytes | None) -> None:
        self.run(self.w.put(self.w.node(version), key[0], key[1], value))
        self.model.entries[version][key] = value

    def fill(self, version: int, writes: Writes, then_commit: bool) -> None:
        """Write to a fresh version, and maybe commit it, so that merges have work to do."""
        for key, value in writes:
            self.put(version, key, value)
        if then_commit:
            self.do_commit(version)

    # ----- the DAG -----------------------------------------------------------------------

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        # Mostly versions that can be committed; sometimes one that already is (refused).
        choices = self.uncommitted()
        if not choices or data.draw(st.integers(0, 9), label="recommit") == 0:
            choices = sorted(self.model.parents, reverse=True)
        self.do_commit(data.draw(st.sampled_from(choices), label="version"))

    @precondition(lambda self: self.model.locked)
    @rule(data=st.data(), writes=WRITES, then_commit=st.booleans())
    def new_version(self, data: st.DataObject, writes: Writes, then_commit: bool) -> None:
        child = self.do_new_version(data.draw(st.sampled_from(self.committed()), label="parent"))
        if child is not None:
            self.fill(child, writes, then_commit)

    @precondition(lambda self: self.model.locked)
    @rule(data=st.data(), writes=WRITES, then_commit=st.booleans())
    def branch(self, data: st.DataObject, writes: Writes, then_commit: bool) -> None:
        child = self.do_branch(data.draw(st.sampled_from(self.committed()), label="parent"))
        self.fill(child, writes, then_commit)

    @precondition(lambda self: len(self.model.locked) >= 2)
    @rule(data=st.data(), priority=st.sampled_from(PRIORITIES))
    def merge(self, data: st.DataObject, priority: tuple[str, ...] | None) -> None:
        parents = data.draw(
            st.lists(st.sampled_from(self.committed()), min_size=2, max_size=3, unique=True),
            label="parents",
        )
        self.do_merge(parents, priority)

    @precondition(lambda self: self.model.locked)
    @rule(
        data=st.data(),
        first=WRITES.filter(bool),
        second=WRITES.filter(bool),
        priority=st.sampled_from(PRIORITIES),
    )
    def diverge_and_merge(
        self, data: st.DataObject, first: Writes, second: Writes,
        priority: tuple[str, ...] | None,
    ) -> None:
        """Two new branches off one version, both written and committed, then merged."""
        parent = data.draw(st.sampled_from(self.committed()), label="parent")
        left, right = self.do_branch(parent), self.do_branch(parent)
        self.fill(left, first, then_commit=True)
        self.fill(right, second, then_commit=True)
        self.do_merge([left, right], priority)

    # ----- data --------------------------------------------------------------------------

    @precondition(lambda self: len(self.model.locked) < len(self.model.parents))
    @rule(data=st.data(), writes=WRITES)
    def write(self, data: st.DataObject, writes: Writes) -> None:
        version = data.draw(st.sampled_from(self.uncommitted()), label="version")
        for key, value in writes:
            self.put(version, key, value)

    @precondition(lambda self: self.model.locked)
    @rule(data=st.data(), key=st.sampled_from(KEYS), value=st.sampled_from(VALUES))
    def write_committed(self, data: st.DataObject, key: Key, value: bytes | None) -> None:
        version = data.draw(st.sampled_from(self.committed()), label="version")
        with pytest.raises(Locked):
            self.run(self.w.put(self.w.node(version), key[0], key[1], value))

    # ----- checks ------------------------------------------------------------------------

    @invariant()
    def matches_model(self) -> None:
        self.run(self.check())

    async def check(self) -> None:
        w, model = self.w, self.model
        repo = w.repo
        assert set(repo.nodes) == set(model.parents)
        for version, node in repo.nodes.items():
            assert tuple(node.parents) == model.parents[version]
            assert node.branch == model.branch[version]
            assert node.locked == (version in model.locked)
        # The stored repo document says the same as the in-memory one.
        fresh = RepoManager(w.meta, w.kv)
        await fresh.load()
        assert fresh.repos[w.repo_id].to_dict() == repo.to_dict()
        for version in model.parents:
            node = w.node(version)
            for instance in INSTANCES:
                tkeys = [t for i, t in KEYS if i == instance]
                want = [model.read(version, (instance, t)) for t in tkeys]
                for tkey, value in zip(tkeys, want, strict=True):
                    if value is CONFLICT:
                        with pytest.raises(KeyConflict):
                            await w.get(node, instance, tkey)
                    else:
                        assert await w.get(node, instance, tkey) == value, (version, tkey)
                if CONFLICT in want:
                    continue
                assert await w.get_many(node, instance, tkeys[::-1]) == want[::-1]
                visible = [(t, v) for t, v in zip(tkeys, want, strict=True) if v is not None]
                assert await w.scan(node, instance) == sorted(visible)  # type: ignore[arg-type]


def machine_for(name: str) -> type[VersionedStorageMachine]:
    return type(f"VersionedStorage_{name}", (VersionedStorageMachine,),
                {"open_backend": staticmethod(BACKENDS[name])})


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_versioned_storage_matches_model(backend: str) -> None:
    run_state_machine_as_test(machine_for(backend), settings=SETTINGS)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
async def test_writes_to_committed_versions_change_nothing(backend: str, tmp_path: Path) -> None:
    meta, blobs = BACKENDS[backend](tmp_path / "data")
    try:
        w = VersionedWorld(meta, blobs, inline_limit=INLINE_LIMIT)
        root = await w.start()
        await w.put(root, "a", b"k0", b"v1")
        await w.put(root, "a", b"k1", b"B" * 30)
        child = await w.advance(root)
        await w.put(child, "a", b"k0", b"v2")
        await w.delete(child, "a", b"k1")
        await w.commit(child)

        async def snapshot() -> tuple[list[tuple[bytes, bytes]], list[str]]:
            pairs = [pair async for pair in meta.scan(b"", b"\xff" * 8)]
            return pairs, [ref async for ref in blobs.list()]

        before = await snapshot()
        for node in (root, child):
            for key, value in LOCKED_WRITES:
                with pytest.raises(Locked):
                    await w.put(node, "a", key, value)
        # A transaction that checks the lock after other writes loses all of them.
        with pytest.raises(Locked):
            async with meta.transaction() as txn:
                txn.put(b"\x00scratch", b"x")
                await w.kv.put(txn, w.ids["a"], b"k2", root.version_id, b"sneaky")
                await w.repos.assert_writable(txn, root)
        assert await snapshot() == before
        assert await w.get(root, "a", b"k0") == b"v1"
        assert await w.get(root, "a", b"k1") == b"B" * 30
        assert await w.get(child, "a", b"k0") == b"v2"
        assert await w.get(child, "a", b"k1") is None
        assert await w.get(root, "a", b"k2") is None
    finally:
        await meta.close()
