"""Conformance suites for storage backends: every backend runs the same checks.

A backend's test module subclasses each suite once and provides only the fixture and helpers,
never a ``test_*`` method (see :func:`overridden_tests`)::

    class TestMyMeta(MetaStoreTests):
        @pytest.fixture
        async def store(self):
            store = open_my_meta_store()
            yield store
            await store.close()

        def raw_put(self, store, key, value): ...   # write the medium directly
        def raw_get(self, store, key): ...          # read the medium directly

The raw helpers bypass the store's code path so that reads and writes are checked
independently: what ``transaction`` writes must be on the medium, and what is on the medium
must be what ``get``/``scan`` return.

``VersionedKVTests.store`` yields a ``(MetaStore, BlobStore)`` pair; the suite builds a
:class:`~dvidql.storage.versioned.VersionedKV` and a
:class:`~dvidql.versions.repos.RepoManager` over it (see :class:`VersionedWorld`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import ClassVar

import pytest
from typing_extensions import Buffer

from dvidql.errors import BadRequest, KeyConflict, Locked
from dvidql.ids import new_uuid
from dvidql.storage.base import SCAN_BATCH, BlobStore, ByteRange, MetaStore, content_ref
from dvidql.storage.versioned import Lineage, VersionedKV
from dvidql.versions.dag import Instance, Node, Repo
from dvidql.versions.repos import MergeOutcome, RepoManager

__all__ = [
    "BlobStoreTests",
    "MetaStoreTests",
    "VersionedKVTests",
    "VersionedWorld",
    "overridden_tests",
    "suite_tests",
]

MIB = 1 << 20


class _Boom(Exception):
    """Raised inside a transaction to abort it."""


class _Suite:
    """What the three suites share: known failures of a backend, declared, not hidden.

    A backend's subclass may map a test name to the reason it fails in ``KNOWN_FAILURES``;
    the test still runs, as a strict xfail, so fixing the bug turns it into a failure until
    the entry is removed."""

    KNOWN_FAILURES: ClassVar[Mapping[str, str]] = {}

    @pytest.fixture(autouse=True)
    def _known_failure(self, request: pytest.FixtureRequest) -> None:
        reason = self.KNOWN_FAILURES.get(request.function.__name__)
        if reason is not None:
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))


def suite_tests(cls: type) -> set[str]:
    """Names of the ``test_*`` methods a suite (or its subclass) runs."""
    return {name for name in dir(cls) if name.startswith("test")}


def overridden_tests(cls: type) -> list[str]:
    """Names of ``test_*`` methods that ``cls`` (or a class between it and a suite) defines,
    and any ``KNOWN_FAILURES`` entry that names no test.

    A backend's subclass must provide fixtures and helpers only, so that no backend can
    weaken a shared check; its test module asserts this returns an empty list."""
    suites = (MetaStoreTests, BlobStoreTests, VersionedKVTests)
    found: list[str] = []
    for klass in cls.__mro__:
        if klass in suites or klass is object:
            break
        found.extend(name for name in vars(klass) if name.startswith("test"))
    unknown = set(getattr(cls, "KNOWN_FAILURES", {})) - suite_tests(cls)
    found.extend(f"KNOWN_FAILURES names no test: {name}" for name in unknown)
    return sorted(found)


async def _collect(it: AsyncIterator[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [pair async for pair in it]


def _expected_scan(
    data: dict[bytes, bytes], start: bytes, end: bytes, reverse: bool, limit: int | None
) -> list[tuple[bytes, bytes]]:
    pairs = sorted((k, v) for k, v in data.items() if start <= k < end)
    if reverse:
        pairs.reverse()
    return pairs if limit is None else pairs[:limit]


# Keys at the edges of bytewise order: length-only differences, the sign bit, 0x00 and 0xFF
# runs. (The empty key itself is not a valid stored key: LMDB refuses it, and every key the
# service writes has a space prefix; the empty bytes string is tested as a scan bound.)
EDGE_KEYS = [
    b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\xff", b"\x01", b"\x7f", b"\x7f\xff", b"\x80",
    b"\x80\x00", b"a", b"a\x00", b"a\x00\x00", b"a\x01", b"a\xff", b"ab", b"b", b"\xfe",
    b"\xfe\xff", b"\xff", b"\xff\x00", b"\xff\xfe", b"\xff\xff", b"\xff\xff\x00",
    b"\xff\xff\xff", b"\xff\xff\xff\xff",
]
EDGE_BOUNDS = [
    b"", b"\x00", b"\x00\x00", b"\x00\x00\x00", b"\x7f\xff", b"\x80", b"a", b"a\x00",
    b"a\xff\xff", b"\xfe\xff\xff", b"\xff", b"\xff\xff", b"\xff\xff\xff\xff",
    b"\xff\xff\xff\xff\x00", b"\xff" * 8,
]
_END = b"\xff" * 8  # above every key the suites write
# The longest metadata key the service writes: a keyvalue data key holds a key of up to
# 4096 bytes (keyvalue's MAX_KEY_BYTES), its terminator, and 9 bytes of space, instance and
# version.
LONG_KEY_BYTES = 4096 + 1 + 9


class MetaStoreTests(_Suite):
    """Conformance of a :class:`~dvidql.storage.base.MetaStore`."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[MetaStore]:
        """A fresh, empty store, closed (and its medium removed) afterwards."""
        raise NotImplementedError("a backend's subclass provides the store fixture")
        yield  # pragma: no cover

    def raw_put(self, store: MetaStore, key: bytes, value: bytes) -> None:
        """Write one key on the medium directly, bypassing the store's code."""
        raise NotImplementedError

    def raw_get(self, store: MetaStore, key: bytes) -> bytes | None:
        """Read one key from the medium directly, bypassing the store's code."""
        raise NotImplementedError

    @staticmethod
    async def _write(store: MetaStore, writes: dict[bytes, bytes | None]) -> None:
        async with store.transaction() as txn:
            for key, value in writes.items():
                if value is None:
                    txn.delete(key)
                else:
                    txn.put(key, value)

    # ----- point reads and writes --------------------------------------------------------

    async def test_missing_keys_read_as_none(self, store: MetaStore) -> None:
        assert await store.get(b"missing") is None
        assert await store.get_many([]) == []
        assert await store.get_many([b"x", b"y"]) == [None, None]
        assert await _collect(store.scan(b"", _END)) == []
        assert await store.scan_many([(b"", _END), (b"a", b"b")]) == [[], []]

    async def test_transaction_writes_reach_the_medium(self, store: MetaStore) -> None:
        values = {b"k1": b"one", b"k2": b"", b"\x00": b"\x00" * 3, b"\xff\xff": bytes(range(256))}
        await self._write(store, dict(values))
        for key, value in values.items():
            assert self.raw_get(store, key) == value
            assert await store.get(key) == value
        assert self.raw_get(store, b"k3") is None

    async def test_reads_see_what_is_on_the_medium(self, store: MetaStore) -> None:
        values = {b"r1": b"one", b"r2": b"", b"r3": b"\xff" * 100}
        for key, value in values.items():
            self.raw_put(store, key, value)
        for key, value in values.items():
            assert await store.get(key) == value
        assert await store.get_many(list(values)) == list(values.values())
        assert await _collect(store.scan(b"r", b"s")) == sorted(values.items())

    async def test_empty_and_multi_mib_values_round_trip(self, store: MetaStore) -> None:
        big = random.Random(7).randbytes(3 * MIB + 5)
        await self._write(store, {b"empty": b"", b"big": big})
        assert await store.get(b"empty") == b""
        assert await store.get(b"big") == big
        assert self.raw_get(store, b"big") == big
        assert await store.get_many([b"big", b"empty", b"none"]) == [big, b"", None]
        raw_big = random.Random(8).randbytes(2 * MIB)
        self.raw_put(store, b"raw-big", raw_big)
        assert await store.get(b"raw-big") == raw_big

    async def test_overwrite_and_delete(self, store: MetaStore) -> None:
        await self._write(store, {b"k": b"first", b"d": b"doomed"})
        await self._write(store, {b"k": b"second", b"d": None, b"never-there": None})
        assert await store.get(b"k") == b"second"
        assert await store.get(b"d") is None
        assert self.raw_get(store, b"d") is None
        assert await store.get(b"never-there") is None
        assert await _collect(store.scan(b"", _END)) == [(b"k", b"second")]
        await self._write(store, {b"d": b"back"})
        assert await store.get(b"d") == b"back"

    async def test_long_keys(self, store: MetaStore) -> None:
        limit = store.max_key_bytes
        n = LONG_KEY_BYTES if limit is None else min(LONG_KEY_BYTES, limit)
        mid = min(600, n - 1)
        data = {
            b"L" * n: b"longest",
            b"L" * (n - 1) + b"\x00": b"zero",
            b"L" * (n - 1): b"shorter",
            b"L" * (n - 1) + b"\xff": b"ff",
            b"L" * mid: b"mid",
            b"L": b"short",
        }
        assert await store.get(b"M" * n) is None
        await self._write(store, dict(data))
        for key, value in data.items():
            assert self.raw_get(store, key) == value
            assert await store.get(key) == value
        assert await _collect(store.scan(b"L", b"M")) == sorted(data.items())
        assert await _collect(store.scan(b"L" * (mid + 1), b"M", reverse=True)) == sorted(
            (k, v) for k, v in data.items() if k >= b"L" * (mid + 1))[::-1]
        if limit is not None:  # longer keys are refused clearly, and read as absent
            too_long = b"L" * (limit + 1)
            with pytest.raises(BadRequest, match="at most"):
                await self._write(store, {too_long: b"x"})
            assert await store.get(too_long) is None
            assert await store.get_many([too_long, b"L"]) == [None, b"short"]
            assert await _collect(store.scan(too_long, b"M")) == [
                (k, v) for k, v in sorted(data.items()) if k >= too_long]
            assert await _collect(store.scan(b"L", too_long, reverse=True)) == sorted(
                (k, v) for k, v in data.items() if k < too_long)[::-1]
        assert await store.get(b"") is None

    async def test_get_many_keeps_order_duplicates_and_misses(self, store: MetaStore) -> None:
        for key in (b"a", b"b", b"c"):
            self.raw_put(store, key, key * 2)
        keys = [b"c", b"missing", b"a", b"c", b"b", b"a", b"\x00", b"zz", b"c"]
        assert await store.get_many(keys) == [
            b"cc", None, b"aa", b"cc", b"bb", b"aa", None, None, b"cc"
        ]

    # ----- scans -------------------------------------------------------------------------

    async def test_scan_order_at_the_edges(self, store: MetaStore) -> None:
        data = {key: b"v" + key[::-1] + bytes([len(key)]) for key in EDGE_KEYS}
        shuffled = list(data.items())
        random.Random(1).shuffle(shuffled)
        for key, value in shuffled:
            self.raw_put(store, key, value)
        assert await _collect(store.scan(b"", _END)) == sorted(data.items())
        for start in EDGE_BOUNDS:
            for end in EDGE_BOUNDS:
                for reverse in (False, True):
                    for limit in (None, 0, 1, 3):
                        got = await _collect(store.scan(start, end, reverse=reverse, limit=limit))
                        want = _expected_scan(data, start, end, reverse, limit)
                        assert got == want, (start, end, reverse, limit)

    async def test_scan_sees_transaction_writes_in_order(self, store: MetaStore) -> None:
        data = {key: key + b"!" for key in EDGE_KEYS}
        await self._write(store, dict(data))
        assert await _collect(store.scan(b"", _END)) == sorted(data.items())
        got = await _collect(store.scan(b"", _END, reverse=True))
        assert got == sorted(data.items(), reverse=True)

    async def test_scans_longer_than_one_batch(self, store: MetaStore) -> None:
        n = 2 * SCAN_BATCH + 123
        data = {b"n" + i.to_bytes(3, "big"): i.to_bytes(3, "big") * 3 for i in range(n)}
        # Keys right after a batch's last key (its successor plus 0x00) must not be skipped.
        for i in (SCAN_BATCH - 2, SCAN_BATCH - 1, SCAN_BATCH, 2 * SCAN_BATCH - 1, n - 1):
            data[b"n" + i.to_bytes(3, "big") + b"\x00"] = b"successor"
        outside = {b"m\xff\xff\xff\xff": b"below", b"o": b"above"}
        await self._write(store, {**data, **outside})
        everything = {**data, **outside}
        ordered = sorted(data.items())
        assert await _collect(store.scan(b"n", b"o")) == ordered
        assert await _collect(store.scan(b"n", b"o", reverse=True)) == ordered[::-1]
        for limit in (SCAN_BATCH - 1, SCAN_BATCH, SCAN_BATCH + 1, 2 * SCAN_BATCH + 1, n + 50):
            for reverse in (False, True):
                got = await _collect(store.scan(b"n", b"o", reverse=reverse, limit=limit))
                assert got == _expected_scan(data, b"n", b"o", reverse, limit), (limit, reverse)
        start, end = ordered[100][0], ordered[-100][0]
        for reverse in (False, True):
            got = await _collect(store.scan(start, end, reverse=reverse))
            assert got == _expected_scan(everything, start, end, reverse, None)
        assert await _collect(store.scan(b"", _END)) == sorted(everything.items())

    async def test_scan_many(self, store: MetaStore) -> None:
        data = {key: key * 2 for key in EDGE_KEYS}
        for key, value in data.items():
            self.raw_put(store, key, value)
        ranges = [
            (b"", _END), (b"a", b"b"), (b"b", b"a"), (b"a", b"a"), (b"a\x00", b"a\xff"),
            (b"\xff", _END), (b"", b"\x00"), (b"", b"\x00\x01"), (b"a", b"b"), (b"q", b"r"),
        ]
        got = await store.scan_many(ranges)
        assert got == [_expected_scan(data, s, e, False, None) for s, e in ranges]
        assert await store.scan_many([]) == []

    # ----- transactions ------------------------------------------------------------------

    async def test_exception_in_transaction_leaves_nothing(self, store: MetaStore) -> None:
        await self._write(store, {b"keep": b"old", b"gone": b"still here"})
        boom = _Boom("abort")
        with pytest.raises(_Boom) as raised:
            async with store.transaction() as txn:
                txn.put(b"new", b"x")
                txn.put(b"keep", b"changed")
                txn.delete(b"gone")
                assert await txn.get(b"keep") == b"changed"
                raise boom
        assert raised.value is boom
        assert await store.get(b"new") is None
        assert self.raw_get(store, b"new") is None
        assert await store.get(b"keep") == b"old"
        assert self.raw_get(store, b"keep") == b"old"
        assert await store.get(b"gone") == b"still here"
        assert await _collect(store.scan(b"", _END)) == [
            (b"gone", b"still here"), (b"keep", b"old")
        ]
        # The store is still usable after an aborted transaction.
        await self._write(store, {b"after": b"yes"})
        assert await store.get(b"after") == b"yes"

    async def test_transaction_reads_its_own_writes(self, store: MetaStore) -> None:
        for key in (b"t1", b"t2", b"t3", b"t5"):
            self.raw_put(store, key, b"raw-" + key)
        async with store.transaction() as txn:
            assert await txn.get(b"t1") == b"raw-t1"
            txn.put(b"t1", b"mine")
            txn.delete(b"t2")
            txn.put(b"t4", b"new")
            txn.put(b"u", b"outside range")
            txn.put(b"t6", b"")
            txn.delete(b"t6")
            txn.put(b"t7", b"twice-1")
            txn.put(b"t7", b"twice-2")
            assert await txn.get(b"t1") == b"mine"
            assert await txn.get(b"t2") is None
            assert await txn.get(b"t4") == b"new"
            assert await txn.get(b"t6") is None
            assert await txn.get(b"t7") == b"twice-2"
            expected = [(b"t1", b"mine"), (b"t3", b"raw-t3"), (b"t4", b"new"),
                        (b"t5", b"raw-t5"), (b"t7", b"twice-2")]
            assert await txn.scan(b"t", b"u") == expected
            assert await txn.scan(b"t", b"u", reverse=True) == expected[::-1]
            assert await txn.scan(b"t", b"u", limit=2) == expected[:2]
            assert await txn.scan(b"t", b"u", reverse=True, limit=2) == expected[::-1][:2]
            assert await txn.scan(b"t2", b"t4") == [(b"t3", b"raw-t3")]
            assert await txn.scan_many([(b"t2", b"t4"), (b"t", b"u"), (b"v", b"w")]) == [
                [(b"t3", b"raw-t3")], expected, []]
            # Not visible outside the transaction before it commits.
            assert await store.get(b"t4") is None
            assert await store.get(b"t1") == b"raw-t1"
        assert await store.get(b"t4") == b"new"
        assert self.raw_get(store, b"t2") is None
        assert self.raw_get(store, b"t6") is None
        assert await _collect(store.scan(b"t", b"u")) == expected

    async def test_empty_transaction(self, store: MetaStore) -> None:
        async with store.transaction() as txn:
            assert await txn.get(b"nothing") is None
            assert await txn.scan(b"", _END) == []
        assert await _collect(store.scan(b"", _END)) == []

    async def test_concurrent_writers_all_land(self, store: MetaStore) -> None:
        async def writer(i: int) -> None:
            await asyncio.sleep(0)
            async with store.transaction() as txn:
                count = await txn.get(b"count")
                await asyncio.sleep(0)  # let other writers run between read and write
                txn.put(b"count", str(int(count or b"0") + 1).encode())
                txn.put(b"w" + i.to_bytes(2, "big"), b"%d" % i)

        await asyncio.gather(*(writer(i) for i in range(100)))
        assert await store.get(b"count") == b"100"
        pairs = await _collect(store.scan(b"w", b"x"))
        assert pairs == [(b"w" + i.to_bytes(2, "big"), b"%d" % i) for i in range(100)]


class BlobStoreTests(_Suite):
    """Conformance of a :class:`~dvidql.storage.base.BlobStore`."""

    @pytest.fixture
    async def store(self) -> AsyncIterator[BlobStore]:
        """A fresh, empty blob store, closed (and its medium removed) afterwards."""
        raise NotImplementedError("a backend's subclass provides the store fixture")
        yield  # pragma: no cover

    def raw_put(self, store: BlobStore, ref: str, data: bytes) -> None:
        """Store bytes under a reference on the medium directly."""
        raise NotImplementedError

    def raw_get(self, store: BlobStore, ref: str) -> bytes | None:
        """Read a reference's bytes from the medium directly."""
        raise NotImplementedError

    @staticmethod
    async def _list(store: BlobStore, prefix: str = "") -> list[str]:
        return [ref async for ref in store.list(prefix)]

    async def test_missing_blobs(self, store: BlobStore) -> None:
        ref = content_ref(b"never stored")
        assert await store.get(ref) is None
        assert await store.get(ref, ByteRange(0, 4)) is None
        assert not await store.exists(ref)
        assert await store.get_many([ref, ref]) == [None, None]
        assert await store.get_many([]) == []
        assert await self._list(store) == []
        await store.delete(ref)  # deleting a missing blob is not an error

    async def test_round_trip_empty_small_and_multi_mib(self, store: BlobStore) -> None:
        big = random.Random(3).randbytes(6 * MIB + 1)
        for data in (b"", b"x", bytes(range(256)), big):
            ref = await store.put(data)
            assert ref == content_ref(data)
            assert self.raw_get(store, ref) == data
            assert await store.get(ref) == data
            assert await store.exists(ref)

    async def test_reads_see_what_is_on_the_medium(self, store: BlobStore) -> None:
        data = b"written around the store"
        ref = content_ref(data)
        self.raw_put(store, ref, data)
        assert await store.exists(ref)
        assert await store.get(ref) == data
        assert await store.get(ref, ByteRange(8, 14)) == b"around"
        assert await store.get_many([ref]) == [data]
        assert await self._list(store) == [ref]

    async def test_put_is_idempotent(self, store: BlobStore) -> None:
        data = b"same bytes" * 1000
        refs = [await store.put(data) for _ in range(3)]
        refs += await asyncio.gather(*(store.put(data) for _ in range(5)))
        assert set(refs) == {content_ref(data)}
        assert await self._list(store) == [content_ref(data)]
        assert await store.get(refs[0]) == data

    async def test_byte_ranges(self, store: BlobStore) -> None:
        data = bytes(range(256)) * 4
        ref = await store.put(data)
        cases = [(0, None), (0, 10), (10, 20), (255, 257), (1000, None), (1020, 2000),
                 (1024, None), (2000, None), (5, 5), (0, 0), (1023, 1024)]
        for start, stop in cases:
            assert await store.get(ref, ByteRange(start, stop)) == data[start:stop], (start, stop)
        empty = await store.put(b"")
        assert await store.get(empty, ByteRange(0, 10)) == b""
        assert await store.get(empty, ByteRange(3)) == b""

    async def test_get_many_keeps_order_duplicates_and_misses(self, store: BlobStore) -> None:
        blobs = [b"one", b"two", b"", b"three" * 1000]
        refs = [await store.put(b) for b in blobs]
        missing = content_ref(b"missing")
        order = [refs[3], missing, refs[0], refs[3], refs[2], missing, refs[1], refs[0]]
        want = [blobs[3], None, blobs[0], blobs[3], blobs[2], None, blobs[1], blobs[0]]
        assert await store.get_many(order) == want

    async def test_visit_many_sees_each_stored_blob_once(self, store: BlobStore) -> None:
        blobs = [b"one", b"", b"three" * 1000, random.Random(3).randbytes(MIB)]
        refs = [await store.put(b) for b in blobs]
        missing = content_ref(b"missing")
        order = [refs[2], missing, refs[0], refs[3], refs[1], refs[2], missing]
        seen: dict[int, bytes] = {}

        def visit(i: int, data: object) -> None:
            assert i not in seen
            seen[i] = bytes(data)  # type: ignore[call-overload]

        found = await store.visit_many(order, visit)
        assert found == [True, False, True, True, True, True, False]
        assert seen == {i: blobs[refs.index(r)] for i, r in enumerate(order) if r != missing}
        assert await store.visit_many([], visit) == []

        def fail(i: int, data: object) -> None:
            raise _Boom

        with pytest.raises(_Boom):
            await store.visit_many(refs, fail)

    async def test_exists_delete_and_list(self, store: BlobStore) -> None:
        datas = {content_ref(b"blob %d" % i): b"blob %d" % i for i in range(40)}
        refs = {await store.put(data) for data in datas.values()}
        assert refs == set(datas)
        listed = await self._list(store)
        assert len(listed) == len(set(listed)) == 40
        assert set(listed) == refs
        assert listed == sorted(listed)
        for prefix in {r[:1] for r in refs} | {r[:2] for r in refs}:
            want = sorted(r for r in refs if r.startswith(prefix))
            assert await self._list(store, prefix) == want, prefix
        assert await self._list(store, "zz") == []  # hex references never start with z
        victim, neighbour = sorted(refs)[7:9]
        await store.delete(victim)
        assert not await store.exists(victim)
        assert await store.get(victim) is None
        assert self.raw_get(store, victim) is None
        assert victim not in await self._list(store)
        assert await store.exists(neighbour)
        assert await store.get(neighbour) == datas[neighbour]
        await store.delete(victim)  # twice is fine
        assert await store.put(datas[victim]) == victim
        assert await store.get(victim) == datas[victim]

    async def test_concurrent_puts_all_land(self, store: BlobStore) -> None:
        datas = [b"concurrent %d" % i * (i + 1) for i in range(100)]
        refs = await asyncio.gather(*(store.put(d) for d in datas))
        assert refs == [content_ref(d) for d in datas]
        assert await store.get_many(refs) == datas
        assert set(await self._list(store)) == set(refs)


# ----- versioned key-value ---------------------------------------------------------------


class VersionedWorld:
    """One repo with versioned instances ``a`` and ``b`` over a (MetaStore, BlobStore) pair,
    driven the way the service drives it: DAG changes through :class:`RepoManager`, data
    writes inside a metadata transaction that first checks the version is writable."""

    INSTANCES = ("a", "b")

    def __init__(self, meta: MetaStore, blobs: BlobStore, *, inline_limit: int = 16) -> None:
        self.meta = meta
        self.blobs = blobs
        self.kv = VersionedKV(meta, blobs, inline_limit=inline_limit, cache_bytes=1 << 20)
        self.repos = RepoManager(meta, self.kv)
        self.repo_id = 0
        self.ids: dict[str, int] = {}

    async def start(self) -> Node:
        """Create the repo and its instances; returns the (uncommitted) root."""
        repo = await self.repos.create_repo(alias="conformance")
        self.repo_id = repo.repo_id
        for name in self.INSTANCES:
            instance = await self.repos.add_instance(
                self.repo,
                lambda i, name=name: Instance(name=name, type_name="keyvalue",
                                              data_uuid=new_uuid(), instance_id=i),
            )
            self.ids[name] = instance.instance_id
        return self.root

    @property
    def repo(self) -> Repo:
        """The current repo document (DAG operations replace it)."""
        return self.repos.repos[self.repo_id]

    @property
    def root(self) -> Node:
        return self.repo.nodes[self.repo.root_version]

    def node(self, version: int) -> Node:
        return self.repo.nodes[version]

    def lineage(self, node: Node) -> Lineage:
        return self.repos.lineage(self.repo, node.version_id)

    # ----- data --------------------------------------------------------------------------

    async def put(self, node: Node, instance: str, tkey: bytes, value: bytes | None) -> None:
        """Write (or, for None, delete) one key at ``node``; Locked if it is committed."""
        async with self.meta.transaction() as txn:
            await self.repos.assert_writable(txn, node)
            if value is None:
                self.kv.delete(txn, self.ids[instance], tkey, node.version_id)
            else:
                await self.kv.put(txn, self.ids[instance], tkey, node.version_id, value)

    async def delete(self, node: Node, instance: str, tkey: bytes) -> None:
        await self.put(node, instance, tkey, None)

    async def get(self, node: Node, instance: str, tkey: bytes) -> bytes | None:
        return await self.kv.get(self.ids[instance], tkey, self.lineage(node))

    async def get_many(
        self, node: Node, instance: str, tkeys: Sequence[bytes]
    ) -> list[bytes | None]:
        return await self.kv.get_many(self.ids[instance], tkeys, self.lineage(node))

    async def scan(
        self,
        node: Node,
        instance: str,
        lo: bytes = b"",
        hi: bytes | None = None,
        *,
        keys_only: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        it = self.kv.scan(self.ids[instance], self.lineage(node), lo, hi, keys_only=keys_only)
        return [pair async for pair in it]

    # ----- the DAG -----------------------------------------------------------------------

    async def commit(self, node: Node) -> Node:
        return await self.repos.commit(self.repo, node)

    async def new_version(self, node: Node) -> Node:
        return await self.repos.new_version(self.repo, node)

    async def branch(self, node: Node, name: str) -> Node:
        return await self.repos.branch(self.repo, node, name)

    async def advance(self, node: Node) -> Node:
        """Commit ``node`` if needed and return a new child version on its branch."""
        if not self.node(node.version_id).locked:
            await self.commit(node)
        return await self.new_version(node)

    async def merge(
        self, parents: Iterable[Node], *, priority_for: Iterable[str] | None = None
    ) -> MergeOutcome:
        priority = None if priority_for is None else frozenset(priority_for)
        return await self.repos.merge(self.repo, list(parents), priority_for=priority)


class VersionedKVTests(_Suite):
    """Conformance of :class:`VersionedKV` and merges over a backend's two stores."""

    INLINE_LIMIT = 16

    @pytest.fixture
    async def store(self) -> AsyncIterator[tuple[MetaStore, BlobStore]]:
        """A fresh, empty (MetaStore, BlobStore) pair, closed afterwards."""
        raise NotImplementedError("a backend's subclass provides the store fixture")
        yield  # pragma: no cover

    @pytest.fixture
    async def world(self, store: tuple[MetaStore, BlobStore]) -> VersionedWorld:
        meta, blobs = store
        world = VersionedWorld(meta, blobs, inline_limit=self.INLINE_LIMIT)
        await world.start()
        return world

    async def test_reads_fall_through_to_ancestors(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        await w.put(root, "a", b"k1", b"one")
        await w.put(root, "a", b"k2", b"two")
        v2 = await w.advance(root)
        assert await w.get(v2, "a", b"k1") == b"one"
        await w.put(v2, "a", b"k1", b"uno")
        v3 = await w.advance(v2)
        v4 = await w.advance(v3)
        assert await w.get(v4, "a", b"k1") == b"uno"
        assert await w.get(v4, "a", b"k2") == b"two"
        assert await w.get(v2, "a", b"k1") == b"uno"
        assert await w.get(root, "a", b"k1") == b"one"
        assert await w.get(v4, "a", b"k3") is None
        assert await w.get(v4, "b", b"k1") is None  # instances are separate

    async def test_tombstones(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        big = b"B" * (self.INLINE_LIMIT * 4)
        await w.put(root, "a", b"k1", big)
        await w.put(root, "a", b"k2", b"two")
        v2 = await w.advance(root)
        await w.delete(v2, "a", b"k1")
        await w.delete(v2, "a", b"never")
        assert await w.get(v2, "a", b"k1") is None
        assert await w.get(v2, "a", b"never") is None
        assert await w.get(root, "a", b"k1") == big
        assert await w.scan(v2, "a") == [(b"k2", b"two")]
        assert await w.scan(root, "a") == [(b"k1", big), (b"k2", b"two")]
        v3 = await w.advance(v2)
        assert await w.get(v3, "a", b"k1") is None
        await w.put(v3, "a", b"k1", b"back")
        assert await w.get(v3, "a", b"k1") == b"back"
        # A put then a delete at the same version leaves the deletion, and vice versa.
        await w.put(v3, "a", b"k2", b"changed")
        await w.delete(v3, "a", b"k2")
        assert await w.get(v3, "a", b"k2") is None
        await w.delete(v3, "a", b"k3")
        await w.put(v3, "a", b"k3", b"three")
        assert await w.get(v3, "a", b"k3") == b"three"
        assert await w.get_many(v3, "a", [b"k1", b"k2", b"k3"]) == [b"back", None, b"three"]
        assert await w.get_many(v2, "a", [b"k1", b"k2", b"k3"]) == [None, b"two", None]

    async def test_branches_are_isolated(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        await w.put(root, "a", b"k", b"root")
        await w.commit(root)
        left = await w.new_version(root)
        right = await w.branch(root, "dev")
        await w.put(left, "a", b"k", b"left")
        await w.put(right, "a", b"k", b"right")
        await w.put(right, "a", b"only-right", b"r")
        await w.delete(left, "a", b"gone-left")
        assert await w.get(left, "a", b"k") == b"left"
        assert await w.get(right, "a", b"k") == b"right"
        assert await w.get(root, "a", b"k") == b"root"
        assert await w.get(left, "a", b"only-right") is None
        assert await w.get(root, "a", b"only-right") is None
        left2 = await w.advance(left)
        right2 = await w.advance(right)
        assert await w.get(left2, "a", b"k") == b"left"
        assert await w.get(right2, "a", b"k") == b"right"
        assert await w.scan(left2, "a") == [(b"k", b"left")]
        assert await w.scan(right2, "a") == [(b"k", b"right"), (b"only-right", b"r")]

    async def test_diamond_reads_through_a_merge(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        big = b"R" * (self.INLINE_LIMIT + 1)
        await w.put(root, "a", b"root", big)
        await w.put(root, "a", b"over", b"old")
        await w.put(root, "a", b"del", b"doomed")
        await w.put(root, "b", b"root", b"in b")
        await w.commit(root)
        left = await w.new_version(root)
        right = await w.branch(root, "dev")
        await w.put(left, "a", b"left", b"l")
        await w.put(left, "a", b"over", b"new")
        await w.delete(left, "a", b"del")
        await w.put(left, "a", b"same", b"both")
        await w.put(right, "a", b"right", b"r")
        await w.put(right, "a", b"same", b"both")
        await w.commit(left)
        await w.commit(right)
        outcome = await w.merge([left, right])
        assert outcome.conflicts == []
        assert outcome.child is not None
        child = outcome.child
        assert w.node(child.version_id).parents == [left.version_id, right.version_id]
        want = {b"root": big, b"over": b"new", b"del": None, b"left": b"l", b"right": b"r",
                b"same": b"both"}
        for tkey, value in want.items():
            assert await w.get(child, "a", tkey) == value, tkey
        assert await w.get(child, "b", b"root") == b"in b"
        assert await w.get_many(child, "a", list(want)) == list(want.values())
        assert await w.scan(child, "a") == sorted((k, v) for k, v in want.items() if v)
        # The merge node is writable and its descendants read through it.
        await w.put(child, "a", b"left", b"at merge")
        after = await w.advance(child)
        assert await w.get(after, "a", b"left") == b"at merge"
        assert await w.get(after, "a", b"root") == big
        assert await w.get(after, "a", b"right") == b"r"

    async def test_inline_and_blob_sized_values(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        limit = self.INLINE_LIMIT
        values = {
            b"empty": b"",
            b"at-limit": b"i" * limit,
            b"over-limit": b"o" * (limit + 1),
            b"large": random.Random(5).randbytes(MIB + 3),
        }
        for tkey, value in values.items():
            await w.put(root, "a", tkey, value)
        blobs = {ref async for ref in w.blobs.list()}
        assert blobs == {content_ref(values[b"over-limit"]), content_ref(values[b"large"])}
        for tkey, value in values.items():
            assert await w.get(root, "a", tkey) == value
        keys = [b"large", b"missing", b"empty", b"at-limit", b"over-limit", b"large"]
        assert await w.get_many(root, "a", keys) == [values.get(k) for k in keys]
        assert await w.scan(root, "a") == sorted(values.items())
        # The same large value written again (another version, another key) is one blob.
        v2 = await w.advance(root)
        await w.put(v2, "a", b"copy", values[b"large"])
        await w.put(v2, "b", b"large", values[b"large"])
        assert {ref async for ref in w.blobs.list()} == blobs
        assert await w.get(v2, "b", b"large") == values[b"large"]

    async def test_decoded_blobs_are_decoded_once(self, world: VersionedWorld) -> None:
        """What is decoded from a blob is kept by content: the same blob read again, at
        another key or version, is neither fetched nor decoded; inline values always are."""
        w = world
        big, other = b"B" * (self.INLINE_LIMIT * 4), b"C" * (self.INLINE_LIMIT * 4)
        await w.put(w.root, "a", b"k1", big)
        await w.put(w.root, "a", b"k2", b"small")
        v2 = await w.advance(w.root)
        await w.put(v2, "a", b"k1", other)
        await w.put(v2, "a", b"k3", big)
        decoded: list[bytes] = []

        def reverse(data: Buffer) -> bytes:
            decoded.append(bytes(data))
            return bytes(data)[::-1]

        async def read(node: Node, tkeys: list[bytes], kind: str = "reversed") -> list[bytes]:
            raws = await w.kv.get_raw_many(w.ids["a"], tkeys, w.lineage(node))
            return await w.kv.decoded([r for r in raws if r is not None], kind, reverse, len)

        assert await read(w.root, [b"k1", b"k2"]) == [big[::-1], b"llams"]
        assert await read(v2, [b"k1", b"k2", b"k3"]) == [other[::-1], b"llams", big[::-1]]
        assert await read(v2, [b"k3", b"k1"]) == [big[::-1], other[::-1]]
        assert sorted(decoded) == sorted([big, other, b"small", b"small"])
        assert await read(w.root, [b"k1"], "another decoding") == [big[::-1]]
        assert decoded.count(big) == 2

    async def test_scan_bounds_and_keys_only(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        # A fixed-length (two byte) tkey family, with the extremes of the byte range.
        tkeys = [b"\x00\x00", b"\x00\xff"] + [b"a%d" % i for i in range(10)] + [
            b"\xff\x00", b"\xff\xff"]
        big = b"X" * (self.INLINE_LIMIT + 5)
        for i, tkey in enumerate(tkeys):
            await w.put(root, "a", tkey, b"v%d" % i)
            await w.put(root, "b", tkey, b"other instance")
        v2 = await w.advance(root)
        await w.delete(v2, "a", b"a3")
        await w.put(v2, "a", b"a5", big)
        await w.delete(v2, "a", b"\xff\xff")
        at_root = {t: b"v%d" % i for i, t in enumerate(tkeys)}
        at_v2 = {t: v for t, v in at_root.items() if t not in (b"a3", b"\xff\xff")}
        at_v2[b"a5"] = big
        bounds: list[tuple[bytes, bytes | None]] = [
            (b"", None), (b"a3", b"a6"), (b"a3", b"a3"), (b"a5", b"a5"), (b"a6", b"a3"),
            (b"", b"\x00\x00"), (b"\x00\x00", b"\x00\x00"), (b"\xff\xff", None),
            (b"\xff\xff", b"\xff\xff"), (b"a", b"a9"), (b"a", None), (b"", b"a"),
            (b"a9", b"\xff\x00"), (b"b", None), (b"", b"\xff\xff"),
        ]
        for node, visible in ((root, at_root), (v2, at_v2)):
            for lo, hi in bounds:
                want = sorted(
                    (t, v) for t, v in visible.items() if lo <= t and (hi is None or t <= hi)
                )
                assert await w.scan(node, "a", lo, hi) == want, (lo, hi)
                keys = await w.scan(node, "a", lo, hi, keys_only=True)
                assert keys == [(t, b"") for t, _ in want], (lo, hi)

    async def test_scan_with_many_keys_and_blobs(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        want = {}
        for i in range(600):
            tkey = i.to_bytes(2, "big")
            value = (b"%d" % i) * (1 if i % 7 else self.INLINE_LIMIT)
            want[tkey] = value
        async with w.meta.transaction() as txn:
            for tkey, value in want.items():
                await w.kv.put(txn, w.ids["a"], tkey, root.version_id, value)
        v2 = await w.advance(root)
        async with w.meta.transaction() as txn:
            for i in range(0, 600, 3):
                w.kv.delete(txn, w.ids["a"], i.to_bytes(2, "big"), v2.version_id)
                del want[i.to_bytes(2, "big")]
        assert await w.scan(v2, "a") == sorted(want.items())
        assert await w.scan(v2, "a", keys_only=True) == [(k, b"") for k in sorted(want)]
        assert await w.get_many(v2, "a", sorted(want)) == [want[k] for k in sorted(want)]

    async def test_get_many(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        big = b"G" * (self.INLINE_LIMIT * 2)
        await w.put(root, "a", b"x", b"1")
        await w.put(root, "a", b"y", big)
        await w.put(root, "a", b"z", b"3")
        v2 = await w.advance(root)
        await w.put(v2, "a", b"x", b"one")
        await w.delete(v2, "a", b"z")
        keys = [b"z", b"y", b"x", b"none", b"y", b"x"]
        assert await w.get_many(v2, "a", keys) == [None, big, b"one", None, big, b"one"]
        assert await w.get_many(root, "a", keys) == [b"3", big, b"1", None, big, b"1"]
        assert await w.get_many(root, "a", []) == []
        assert await w.get_many(root, "b", keys) == [None] * len(keys)

    async def test_visit_inline_and_blob_entries(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        values = {b"small": b"s", b"empty": b"", b"big": b"B" * (self.INLINE_LIMIT * 3),
                  b"bigger": b"C" * (self.INLINE_LIMIT * 9)}
        for tkey, value in values.items():
            await w.put(root, "a", tkey, value)
        keys = [b"bigger", b"none", b"small", b"big", b"empty", b"big"]
        raws = await w.kv.get_raw_many(w.ids["a"], keys, w.lineage(root))
        assert raws[1] is None
        present = [r for r in raws if r is not None]
        seen: dict[int, bytes] = {}
        await w.kv.visit(present, lambda i, data: seen.__setitem__(i, bytes(data)))
        assert seen == dict(enumerate(values[k] for k in keys if k != b"none"))

    async def test_merge_conflicts_are_reported_and_refused(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        await w.put(root, "a", b"k1", b"base")
        await w.put(root, "a", b"k2", b"base")
        await w.put(root, "b", b"k1", b"base")
        await w.commit(root)
        left = await w.new_version(root)
        right = await w.branch(root, "dev")
        await w.put(left, "a", b"k1", b"left")       # value vs value
        await w.put(right, "a", b"k1", b"right")
        await w.delete(left, "a", b"k2")             # tombstone vs value
        await w.put(right, "a", b"k2", b"right")
        await w.put(left, "a", b"k3", b"same")       # the same value: no conflict
        await w.put(right, "a", b"k3", b"same")
        await w.put(right, "b", b"k1", b"right")     # one side only: no conflict
        await w.put(left, "b", b"k9", b"x" * 40)     # blob vs absent on the other side
        await w.commit(left)
        await w.commit(right)
        nodes_before = set(w.repo.nodes)
        leaves_before = dict(w.repo.branch_leaves)
        outcome = await w.merge([left, right])
        assert outcome.child is None
        assert outcome.conflicts == [("a", b"k1"), ("a", b"k2")]
        assert set(w.repo.nodes) == nodes_before
        assert w.repo.branch_leaves == leaves_before
        assert w.node(left.version_id).children == []
        # A second refusal reports the same and still creates nothing.
        assert (await w.merge([right, left])).conflicts == [("a", b"k1"), ("a", b"k2")]
        assert set(w.repo.nodes) == nodes_before
        # Priority for an instance without the conflicts does not help.
        refused = await w.merge([left, right], priority_for=["b"])
        assert refused.child is None
        assert refused.conflicts == [("a", b"k1"), ("a", b"k2")]
        assert set(w.repo.nodes) == nodes_before

    async def test_priority_resolution(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        big_left = b"L" * (self.INLINE_LIMIT + 1)
        await w.put(root, "a", b"k1", b"base")
        await w.put(root, "a", b"k2", b"base")
        await w.put(root, "a", b"k4", b"base")
        await w.commit(root)
        left = await w.new_version(root)
        right = await w.branch(root, "dev")
        await w.put(left, "a", b"k1", big_left)
        await w.put(right, "a", b"k1", b"right")
        await w.delete(left, "a", b"k2")
        await w.put(right, "a", b"k2", b"right")
        await w.put(left, "a", b"k3", b"left only")
        await w.put(right, "a", b"k4", b"right only")
        await w.put(left, "b", b"k1", b"left")
        await w.put(right, "b", b"k1", b"right")
        await w.commit(left)
        await w.commit(right)
        expected = [("a", b"k1"), ("a", b"k2"), ("b", b"k1")]
        assert (await w.merge([left, right], priority_for=["a"])).child is None
        first = await w.merge([left, right], priority_for=["a", "b"])
        assert first.conflicts == expected
        assert first.child is not None
        m1 = first.child
        assert w.node(m1.version_id).parents == [left.version_id, right.version_id]
        assert w.node(m1.version_id).branch == w.node(left.version_id).branch
        assert await w.get(m1, "a", b"k1") == big_left
        assert await w.get(m1, "a", b"k2") is None
        assert await w.get(m1, "a", b"k3") == b"left only"
        assert await w.get(m1, "a", b"k4") == b"right only"
        assert await w.get(m1, "b", b"k1") == b"left"
        second = await w.merge([right, left], priority_for=["a", "b"])
        assert second.conflicts == expected
        assert second.child is not None
        m2 = second.child
        assert w.node(m2.version_id).branch == "dev"
        assert await w.get(m2, "a", b"k1") == b"right"
        assert await w.get(m2, "a", b"k2") == b"right"
        assert await w.get(m2, "a", b"k3") == b"left only"
        assert await w.get(m2, "b", b"k1") == b"right"
        # The two resolutions conflict with each other in turn.
        await w.commit(m1)
        await w.commit(m2)
        again = await w.merge([m1, m2])
        assert again.child is None
        assert again.conflicts == expected

    async def test_writes_to_committed_versions_are_refused(self, world: VersionedWorld) -> None:
        w = world
        root = w.root
        await w.put(root, "a", b"k", b"v")
        await w.commit(root)
        with pytest.raises(Locked):
            await w.put(root, "a", b"k", b"changed")
        with pytest.raises(Locked):
            await w.delete(root, "a", b"k")
        with pytest.raises(Locked):
            await w.put(root, "a", b"new", b"n" * 100)
        assert await w.get(root, "a", b"k") == b"v"
        assert await w.scan(root, "a") == [(b"k", b"v")]
        assert [ref async for ref in w.blobs.list()] == []

    async def test_ambiguous_reads_raise(self, store: tuple[MetaStore, BlobStore]) -> None:
        meta, blobs = store
        kv = VersionedKV(meta, blobs, inline_limit=self.INLINE_LIMIT)
        # 1 -> 2, 1 -> 3, (2, 3) -> 4, written directly, with no merge check in between.
        lineage = Lineage(4, {4: (2, 3), 2: (1,), 3: (1,), 1: ()})
        async with meta.transaction() as txn:
            await kv.put(txn, 9, b"same", 1, b"base")
            await kv.put(txn, 9, b"v-v", 2, b"two")
            await kv.put(txn, 9, b"v-v", 3, b"three")
            await kv.put(txn, 9, b"v-t", 2, b"two")
            kv.delete(txn, 9, b"v-t", 3)
            await kv.put(txn, 9, b"agree", 2, b"x" * 50)
            await kv.put(txn, 9, b"agree", 3, b"x" * 50)
        assert await kv.get(9, b"same", lineage) == b"base"
        assert await kv.get(9, b"agree", lineage) == b"x" * 50
        for tkey in (b"v-v", b"v-t"):
            with pytest.raises(KeyConflict):
                await kv.get(9, tkey, lineage)
            with pytest.raises(KeyConflict):
                await kv.get_many(9, [b"same", tkey], lineage)
        assert await kv.get(9, b"v-v", lineage.at(2)) == b"two"
        assert await kv.get(9, b"v-t", lineage.at(3)) is None
        merged = Lineage(5, {5: (2, 3), 2: (1,), 3: (1,), 1: ()})
        assert await kv.merge_conflicts(merged, {9}) == [(9, b"v-t"), (9, b"v-v")]
        assert await kv.merge_conflicts(merged, {8}) == []

    async def test_unversioned_writes(self, store: tuple[MetaStore, BlobStore]) -> None:
        meta, blobs = store
        kv = VersionedKV(meta, blobs, inline_limit=self.INLINE_LIMIT)
        at_root = Lineage(1, {1: ()})
        async with meta.transaction() as txn:
            await kv.put(txn, 3, b"k", 1, b"value", versioned=False)
        assert await kv.get(3, b"k", at_root) == b"value"
        assert await kv.changed_keys([1]) == {}
        async with meta.transaction() as txn:
            kv.delete(txn, 3, b"k", 1, versioned=False)
        assert await kv.get(3, b"k", at_root) is None
        assert [kv_ async for kv_ in meta.scan(b"\x01", b"\x04")] == []
