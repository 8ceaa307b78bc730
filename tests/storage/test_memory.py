"""The in-memory backend against the shared storage conformance suites."""

import bisect

import pytest

from dvidql.storage.memory import MemoryBlobStore, memory_meta_store
from dvidql.testing.storage import (
    BlobStoreTests,
    MetaStoreTests,
    VersionedKVTests,
    overridden_tests,
)


class TestMemoryMetaStore(MetaStoreTests):
    @pytest.fixture
    async def store(self):
        store = memory_meta_store()
        yield store
        await store.close()

    def raw_put(self, store, key, value):
        engine = store.engine
        if key not in engine._data:
            bisect.insort(engine._keys, key)
        engine._data[key] = value

    def raw_get(self, store, key):
        return store.engine._data.get(key)


class TestMemoryBlobStore(BlobStoreTests):
    @pytest.fixture
    async def store(self):
        yield MemoryBlobStore()

    def raw_put(self, store, ref, data):
        store._blobs[ref] = data

    def raw_get(self, store, ref):
        return store._blobs.get(ref)


class TestMemoryVersionedKV(VersionedKVTests):
    @pytest.fixture
    async def store(self):
        meta, blobs = memory_meta_store(), MemoryBlobStore()
        yield meta, blobs
        await meta.close()


@pytest.mark.parametrize("suite", [TestMemoryMetaStore, TestMemoryBlobStore, TestMemoryVersionedKV])
def test_subclasses_override_no_test(suite):
    assert overridden_tests(suite) == []
