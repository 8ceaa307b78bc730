"""Versioned key-value storage over a MetaStore and a BlobStore: the only version resolver.

Each version that writes a logical key ``(instance, tkey)`` stores its own entry; deletes store
a tombstone. A read at version ``v`` looks at the entries written by ``v`` and its ancestors and
keeps the *maximal* ones (those not an ancestor of another entry's version). On a chain that is
the nearest ancestor, as in DVID; through merge nodes several maximal entries can remain, and
if they disagree the read is ambiguous. Merges therefore look for such keys when they are made
(:meth:`VersionedKV.merge_conflicts`) instead of leaving them to surface as read errors.

Values up to ``inline_limit`` bytes live in the metadata entry; larger ones go to the blob store
first and the entry keeps their content reference.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

from typing_extensions import Buffer

from dvidql.errors import BadRequest, KeyConflict, Unavailable
from dvidql.parallel import in_parallel
from dvidql.storage import keys as K
from dvidql.storage.base import BlobStore, MetaStore, Txn
from dvidql.storage.cache import DecodedCache

__all__ = ["Lineage", "VersionedKV"]

TOMBSTONE = b"\x00"
_INLINE = 1
_BLOB = 2
_VERSION_SPAN = (b"\x00\x00\x00\x00", b"\xff\xff\xff\xff\x00")
_REMEMBERED_BYTES = 128  # block references and mapping entries, not inline values
_REMEMBERED_ENTRIES = 1 << 16
_MATERIALIZE_BATCH = 256
T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Lineage:
    """A version and its whole ancestry: ``parents`` maps the version and every ancestor to its
    parents (first parent first). Immutable, since a version's parents never change."""

    version: int
    parents: Mapping[int, tuple[int, ...]]
    _memo: dict[int, frozenset[int]] = field(default_factory=dict, repr=False)

    @cached_property
    def members(self) -> frozenset[int]:
        """The version and all its ancestors."""
        return frozenset(self.parents)

    @cached_property
    def linear(self) -> bool:
        """True when no merge node is in the ancestry, so the nearest ancestor always wins."""
        return all(len(p) <= 1 for p in self.parents.values())

    def ancestors_of(self, version: int) -> frozenset[int]:
        """``version`` and its ancestors (it must be a member)."""
        found = self._memo.get(version)
        if found is None:
            seen = {version}
            stack = [version]
            while stack:
                for parent in self.parents[stack.pop()]:
                    if parent not in seen:
                        seen.add(parent)
                        stack.append(parent)
            found = self._memo[version] = frozenset(seen)
        return found

    def at(self, version: int) -> Lineage:
        """The lineage of an ancestor."""
        return Lineage(version, {v: self.parents[v] for v in self.ancestors_of(version)})


def _maximal(entries: Iterable[tuple[int, bytes]], lineage: Lineage) -> list[tuple[int, bytes]]:
    """Entries visible from ``lineage`` that no other visible entry supersedes."""
    visible = sorted(((v, raw) for v, raw in entries if v in lineage.members), reverse=True)
    if not visible:
        return []
    if lineage.linear or visible[0][0] == lineage.version:
        return visible[:1]
    kept: list[tuple[int, bytes]] = []
    covered: set[int] = set()
    # Version ids grow with creation, so an ancestor always sorts after its descendants.
    for version, raw in visible:
        if version in covered:
            continue
        kept.append((version, raw))
        covered |= lineage.ancestors_of(version)
    return kept


def resolve(entries: Iterable[tuple[int, bytes]], lineage: Lineage) -> bytes | None:
    """The tagged value visible at ``lineage.version`` (None if absent or deleted).

    Raises KeyConflict when merged parents hold different values for the key."""
    kept = _maximal(entries, lineage)
    if not kept:
        return None
    states = {raw for _, raw in kept}
    if len(states) > 1:
        raise KeyConflict(
            f"key has different values on the parents merged into version {lineage.version}; "
            "resolve the merge with a parent priority"
        )
    raw = kept[0][1]
    return None if raw == TOMBSTONE else raw


class VersionedKV:
    """Reads at a version, writes at a version, and merge-conflict scans, over two stores."""

    def __init__(self, meta: MetaStore, blobs: BlobStore, *, inline_limit: int = 64 * 1024,
                 cache_bytes: int = 0):
        self.meta = meta
        self.blobs = blobs
        self.inline_limit = inline_limit
        self.cache = DecodedCache(cache_bytes)
        # Small entries found by get_raw, with the store's write generation they were read
        # at: only where this process makes every write (else another could change them).
        self._entries_seen: dict[tuple[int, bytes, int], tuple[int, bytes | None]] | None = (
            None if meta.generation is None else {})

    # ----- reads -------------------------------------------------------------------------

    async def _entries(
        self, instance: int, tkeys: Sequence[bytes], txn: Txn | None = None
    ) -> list[list[tuple[int, bytes]]]:
        prefixes = [K.data_prefix(instance, t) for t in tkeys]
        ranges = [(p + _VERSION_SPAN[0], p + _VERSION_SPAN[1]) for p in prefixes]
        found = await (self.meta if txn is None else txn).scan_many(ranges)
        out = []
        for prefix, pairs in zip(prefixes, found, strict=True):
            size = len(prefix) + 4
            out.append([(K.split_data_key(k)[1], v) for k, v in pairs if len(k) == size])
        return out

    async def get_raw(self, instance: int, tkey: bytes, lineage: Lineage) -> bytes | None:
        """The tagged entry visible at the lineage's version (None if absent). One key at a
        time is the hot read of single-point requests, so on a store this process alone
        writes, small entries are remembered until the next committed write."""
        seen, generation = self._entries_seen, self.meta.generation
        if seen is None or generation is None:
            return resolve((await self._entries(instance, [tkey]))[0], lineage)
        key = (instance, tkey, lineage.version)
        hit = seen.get(key)
        if hit is not None and hit[0] == generation:
            return hit[1]
        raw = resolve((await self._entries(instance, [tkey]))[0], lineage)
        if raw is None or len(raw) <= _REMEMBERED_BYTES:
            if len(seen) >= _REMEMBERED_ENTRIES:
                seen.clear()
            seen[key] = (generation, raw)  # a write meanwhile makes it stale, never wrong
        return raw

    async def get_raw_many(
        self, instance: int, tkeys: Sequence[bytes], lineage: Lineage, txn: Txn | None = None
    ) -> list[bytes | None]:
        """The tagged entries visible at the lineage's version, with one metadata round trip
        (inside ``txn`` when given, to validate a read-modify-write); pass the present ones to
        :meth:`visit` or :meth:`materialize` for their values."""
        return [resolve(entries, lineage)
                for entries in await self._entries(instance, tkeys, txn)]

    async def visit(self, raws: Sequence[bytes], visit: Callable[[int, Buffer], None]) -> None:
        """Call ``visit(i, value)`` for the value of each tagged entry ``raws[i]`` on the worker
        threads; the value may be a view of the store's memory, valid only during the call."""
        inline = [i for i, raw in enumerate(raws) if raw[0] == _INLINE]
        blobbed = [i for i, raw in enumerate(raws) if raw[0] != _INLINE]
        found = await self.blobs.visit_many(
            [raws[i][1:].decode() for i in blobbed], lambda j, data: visit(blobbed[j], data))
        if not all(found):
            ref = raws[blobbed[found.index(False)]][1:].decode()
            raise Unavailable(f"blob {ref} referenced by metadata is missing")

        def work(part: Sequence[int]) -> list[None]:
            for i in part:
                visit(i, memoryview(raws[i])[1:])
            return []

        await in_parallel(inline, work)

    async def decoded(self, raws: Sequence[bytes], kind: str, decode: Callable[[Buffer], T],
                      weigh: Callable[[T], int]) -> list[T]:
        """``decode`` of the value of each tagged entry, run as :meth:`visit` runs it. What is
        decoded from a blob is kept in :attr:`cache` under ``kind`` and the blob's reference
        (``weigh`` gives its size), so the next read of that blob, at any version, neither
        fetches nor decodes it. ``kind`` names the decoding: one blob may be decoded in
        several ways."""
        if len(raws) == 1 and raws[0][0] == _BLOB:  # one block, as a point read asks
            hit = self.cache.get((kind, raws[0]))
            if hit is not None:
                return [hit]
        out: list[T | None] = [None] * len(raws)
        missing = []
        for i, raw in enumerate(raws):
            hit = self.cache.get((kind, raw)) if raw[0] == _BLOB else None
            if hit is None:
                missing.append(i)
            else:
                out[i] = hit
        if missing:
            def grab(j: int, data: Buffer) -> None:
                out[missing[j]] = decode(data)

            await self.visit([raws[i] for i in missing], grab)
            for i in missing:
                value = out[i]
                if raws[i][0] == _BLOB and value is not None:
                    self.cache.put((kind, raws[i]), value, weigh(value))
        return out  # type: ignore[return-value]

    async def get(self, instance: int, tkey: bytes, lineage: Lineage) -> bytes | None:
        raw = await self.get_raw(instance, tkey, lineage)
        return None if raw is None else (await self.materialize([raw]))[0]

    async def get_many(
        self, instance: int, tkeys: Sequence[bytes], lineage: Lineage
    ) -> list[bytes | None]:
        """Values of many keys with one metadata round trip and one batch of blob reads."""
        raws = await self.get_raw_many(instance, tkeys, lineage)
        present = [r for r in raws if r is not None]
        values = iter(await self.materialize(present))
        return [None if r is None else next(values) for r in raws]

    async def scan(
        self,
        instance: int,
        lineage: Lineage,
        lo: bytes = b"",
        hi: bytes | None = None,
        *,
        keys_only: bool = False,
    ) -> AsyncIterator[tuple[bytes, bytes]]:
        """Keys visible at the version with ``lo <= tkey <= hi`` (``hi=None``: no upper bound),
        in key order, with their values (empty bytes when ``keys_only``)."""
        start = K.data_prefix(instance, lo)
        end = (
            K.instance_range(instance)[1]
            if hi is None
            else K.data_prefix(instance, hi) + _VERSION_SPAN[1]
        )
        pending: list[tuple[bytes, bytes]] = []
        group_key: bytes | None = None
        group: list[tuple[int, bytes]] = []

        async def flush() -> AsyncIterator[tuple[bytes, bytes]]:
            if keys_only:
                for tkey, _ in pending:
                    yield tkey, b""
            else:
                values = await self.materialize([raw for _, raw in pending])
                for (tkey, _), value in zip(pending, values, strict=True):
                    yield tkey, value
            pending.clear()

        async for key, raw in self.meta.scan(start, end):
            tkey, version = K.split_data_key(key)
            if tkey != group_key:
                if group_key is not None and group_key >= lo and (hi is None or group_key <= hi):
                    found = resolve(group, lineage)
                    if found is not None:
                        pending.append((group_key, found))
                        if len(pending) >= _MATERIALIZE_BATCH:
                            async for item in flush():
                                yield item
                group_key, group = tkey, []
            group.append((version, raw))
        if group_key is not None and group_key >= lo and (hi is None or group_key <= hi):
            found = resolve(group, lineage)
            if found is not None:
                pending.append((group_key, found))
        async for item in flush():
            yield item

    async def blob_refs(self) -> set[str]:
        """Every blob reference that any version's entry holds: what garbage collection
        must keep. One pass over all data entries."""
        refs: set[str] = set()
        async for _, raw in self.meta.scan(K.DATA, K.CHANGE):
            if raw[:1] == bytes([_BLOB]):
                refs.add(raw[1:].decode())
        return refs

    async def materialize(self, raws: Sequence[bytes]) -> list[bytes]:
        refs = [raw[1:].decode() for raw in raws if raw[0] == _BLOB]
        blobs = iter(await self.blobs.get_many(refs) if refs else [])
        out = []
        for raw in raws:
            if raw[0] == _INLINE:
                out.append(raw[1:])
                continue
            blob = next(blobs)
            if blob is None:
                raise Unavailable(f"blob {raw[1:].decode()} referenced by metadata is missing")
            out.append(blob)
        return out

    # ----- writes (inside the caller's transaction) --------------------------------------

    async def encode(self, value: bytes) -> bytes:
        """The tagged entry for a value, writing it to the blob store first when large."""
        return (await self.encode_many([value]))[0]

    async def encode_many(self, values: Sequence[bytes], *, blob: bool = False) -> list[bytes]:
        """Tagged entries for many values with one batch of blob writes; ``blob`` sends every
        value to the blob store (voxel blocks, which belong in object storage)."""
        large = [i for i, v in enumerate(values) if blob or len(v) > self.inline_limit]
        refs = iter(await self.blobs.put_many([values[i] for i in large]) if large else [])
        chosen = set(large)
        return [bytes([_BLOB]) + next(refs).encode() if i in chosen else bytes([_INLINE]) + v
                for i, v in enumerate(values)]

    async def put(
        self,
        txn: Txn,
        instance: int,
        tkey: bytes,
        version: int,
        value: bytes,
        *,
        versioned: bool = True,
    ) -> None:
        self.put_raw(txn, instance, tkey, version, await self.encode(value), versioned=versioned)

    def put_raw(
        self,
        txn: Txn,
        instance: int,
        tkey: bytes,
        version: int,
        raw: bytes,
        *,
        versioned: bool = True,
    ) -> None:
        limit = self.meta.max_key_bytes
        if limit is not None and len(K.data_key(instance, tkey, version)) > limit:
            raise BadRequest(f"key too long for this store: it allows keys of at most "
                             f"{limit - K.DATA_KEY_OVERHEAD} bytes")
        txn.put(K.data_key(instance, tkey, version), raw)
        if versioned:
            txn.put(K.change_key(version, instance, tkey), b"")

    def delete(
        self, txn: Txn, instance: int, tkey: bytes, version: int, *, versioned: bool = True
    ) -> None:
        """Versioned: a tombstone at ``version``; unversioned: the entry is removed."""
        if versioned:
            self.put_raw(txn, instance, tkey, version, TOMBSTONE)
        else:
            txn.delete(K.data_key(instance, tkey, version))

    # ----- merges ------------------------------------------------------------------------

    async def changed_keys(self, versions: Iterable[int]) -> dict[int, set[bytes]]:
        """Per instance, the tkeys written (or deleted) by any of ``versions``."""
        ordered = sorted(versions)
        ranges = [(K.change_prefix(v), K.change_prefix(v + 1)) for v in ordered]
        changed: dict[int, set[bytes]] = {}
        for pairs in await self.meta.scan_many(ranges):
            for key, _ in pairs:
                instance = int.from_bytes(key[5:9], "big")
                changed.setdefault(instance, set()).add(key[9:])
        return changed

    async def merge_conflicts(
        self, merged: Lineage, instances: Collection[int]
    ) -> list[tuple[int, bytes]]:
        """Keys of ``instances`` whose parents of ``merged.version`` disagree, sorted.

        Only keys written since the parents' common ancestry can disagree, so only those are
        read, using the change index."""
        parents = merged.parents[merged.version]
        common = frozenset.intersection(*(merged.ancestors_of(p) for p in parents))
        diverged = merged.members - common - {merged.version}
        candidates = await self.changed_keys(diverged)
        conflicts: list[tuple[int, bytes]] = []
        for instance in sorted(set(candidates) & set(instances)):
            tkeys = sorted(candidates[instance])
            for tkey, entries in zip(tkeys, await self._entries(instance, tkeys), strict=True):
                if len({raw for _, raw in _maximal(entries, merged)}) > 1:
                    conflicts.append((instance, tkey))
        return conflicts

    async def resolve_by_priority(
        self, txn: Txn, merged: Lineage, conflicts: Sequence[tuple[int, bytes]]
    ) -> None:
        """At the merge version, give each conflicting key the value that the first listed
        parent sees (a tombstone if it sees none)."""
        winner = merged.at(merged.parents[merged.version][0])
        by_instance: dict[int, list[bytes]] = {}
        for instance, tkey in conflicts:
            by_instance.setdefault(instance, []).append(tkey)
        for instance, tkeys in by_instance.items():
            for tkey, entries in zip(tkeys, await self._entries(instance, tkeys), strict=True):
                raw = resolve(entries, winner)
                self.put_raw(txn, instance, tkey, merged.version, raw or TOMBSTONE)
