"""The embedded LMDB backend against the shared storage conformance suites."""

import pytest

from dvidql.storage.lmdb import open_embedded
from dvidql.testing.storage import (
    BlobStoreTests,
    MetaStoreTests,
    VersionedKVTests,
    overridden_tests,
)


def _put(store, key, value):
    with store.env.begin(db=store.db, write=True) as txn:
        txn.put(key, value)


def _get(store, key):
    with store.env.begin(db=store.db) as txn:
        return txn.get(key)


class TestLmdbMetaStore(MetaStoreTests):
    @pytest.fixture
    async def store(self, tmp_path):
        meta, _ = open_embedded(tmp_path / "data")
        yield meta
        await meta.close()

    def raw_put(self, store, key, value):
        _put(store.engine, key, value)

    def raw_get(self, store, key):
        return _get(store.engine, key)


class TestLmdbBlobStore(BlobStoreTests):
    @pytest.fixture
    async def store(self, tmp_path):
        meta, blobs = open_embedded(tmp_path / "data")
        yield blobs
        await meta.close()  # the metadata store owns the shared environment

    def raw_put(self, store, ref, data):
        _put(store, ref.encode(), data)

    def raw_get(self, store, ref):
        return _get(store, ref.encode())


class TestLmdbVersionedKV(VersionedKVTests):
    @pytest.fixture
    async def store(self, tmp_path):
        meta, blobs = open_embedded(tmp_path / "data")
        yield meta, blobs
        await meta.close()


@pytest.mark.parametrize("suite", [TestLmdbMetaStore, TestLmdbBlobStore, TestLmdbVersionedKV])
def test_subclasses_override_no_test(suite):
    assert overridden_tests(suite) == []
