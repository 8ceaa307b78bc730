"""Test support shipped with dvidql: conformance suites that every storage backend must pass.

See :mod:`dvidql.testing.storage`.
"""

from dvidql.testing.storage import (
    BlobStoreTests,
    MetaStoreTests,
    VersionedKVTests,
    VersionedWorld,
    overridden_tests,
)

__all__ = [
    "BlobStoreTests",
    "MetaStoreTests",
    "VersionedKVTests",
    "VersionedWorld",
    "overridden_tests",
]
