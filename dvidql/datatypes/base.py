"""What a datatype is, and the handle through which its operations reach storage.

A datatype is a plug-in: it names itself, validates its instance settings, describes its keys
and extended info. Its operations (in its own package) take a :class:`DataHandle`, an instance
resolved at one version, so REST handlers and GraphQL resolvers share one implementation.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from dvidql.errors import BadRequest
from dvidql.events import log as mutation_log
from dvidql.storage.base import Txn
from dvidql.storage.versioned import Lineage, VersionedKV
from dvidql.versions.dag import Instance, Node, Repo
from dvidql.versions.repos import RepoManager

__all__ = ["NO_MOD", "DataHandle", "Datatype", "ModInfo", "Reads"]

_COMPRESSION_NAMES = {"none": "No compression", "lz4": "LZ4 compression",
                      "gzip": "gzip compression", "snappy": "Snappy compression"}

class Datatype(abc.ABC):
    """A kind of data instance (keyvalue, uint8blk, labelmap...)."""

    type_name: str
    type_url: str
    type_version: str
    default_compression: str = "none"
    compressions: frozenset[str] = frozenset({"none"})  # what the type can store

    def parse_compression(self, text: str) -> str:
        """The canonical form of a ``Compression`` setting, refused if the type cannot store
        it."""
        name = text.strip().lower()
        if name not in self.compressions:
            raise BadRequest(f"{self.type_name} instances support Compression "
                             f"{', '.join(sorted(self.compressions))}, not {text!r}")
        return name

    def describe_compression(self, compression: str) -> str:
        """The info JSON's ``Base.Compression`` text."""
        return _COMPRESSION_NAMES.get(compression, compression)

    def parse_settings(self, settings: Mapping[str, str], *, compression: str) -> dict[str, Any]:
        """Validate type-specific creation settings (keys already lowercased); the default
        type takes none and rejects unknown ones."""
        if settings:
            raise BadRequest(
                f"unknown setting(s) for {self.type_name}: {', '.join(sorted(settings))}"
            )
        return {}

    async def info_state(self, kv: VersionedKV, repo: Repo, instance: Instance) -> Any:
        """Stored state the info JSON shows (extents, for voxel types); None by default."""
        return None

    def extended(self, instance: Instance, state: Any = None) -> dict[str, Any]:
        """The ``Extended`` object of the instance's info JSON."""
        return {}

    @abc.abstractmethod
    def describe_key(self, tkey: bytes) -> str:
        """A human-readable form of a type-specific key (for conflict reports)."""


@dataclass(frozen=True)
class ModInfo:
    """Who asked for a mutation (DVID's ``u=`` and ``app=``)."""

    user: str = ""
    app: str = ""

    def fields(self) -> dict[str, str]:
        return {k: v for k, v in (("User", self.user), ("App", self.app)) if v}


NO_MOD = ModInfo()


@dataclass
class Reads:
    """Raw store entries a plan was made from, to check inside its transaction."""

    tkeys: list[bytes] = field(default_factory=list)
    raws: list[bytes | None] = field(default_factory=list)

    def add(self, tkeys: Sequence[bytes], raws: Sequence[bytes | None]) -> None:
        self.tkeys.extend(tkeys)
        self.raws.extend(raws)

    async def unchanged(self, h: DataHandle, txn: Txn) -> bool:
        if not self.tkeys:
            return True
        return await h.kv.get_raw_many(h.instance_id, self.tkeys, h.lineage, txn) == self.raws


@dataclass(frozen=True)
class DataHandle:
    """A data instance at one version, as a request sees it."""

    kv: VersionedKV
    repos: RepoManager
    repo: Repo
    node: Node
    instance: Instance
    version: int  # where writes land (the root for unversioned instances)
    lineage: Lineage  # what reads see
    bypass_lock: bool = False  # admin or full-write mode
    max_request_bytes: int = 0  # the largest voxel request served (0: no limit)
    scale: int = 0  # the resolution level of block reads and writes (labelmap's scales)
    allow_split: bool = True  # the server allows labelmap splits (allow_labelmap_split)

    def at_scale(self, scale: int) -> DataHandle:
        return self if scale == self.scale else replace(self, scale=scale)

    @property
    def instance_id(self) -> int:
        return self.instance.instance_id

    def sibling(self, name: str, node: Node | None = None) -> DataHandle:
        """Another instance of the repo as this request sees it (same version unless ``node``
        names another, same rights), for datatypes that read each other, as annotations read
        their segmentation."""
        instance = self.repos.instance(self.repo, name)
        node = self.node if node is None else node
        version, lineage = self.repos.data_version(self.repo, node, instance)
        return replace(self, node=node, instance=instance, version=version, lineage=lineage,
                       scale=0)

    def followed(self, what: str) -> DataHandle:
        """The instance this one follows (its ``Sync`` setting, set by POST sync); ``what``
        names the kind it should be, for the error when it follows none."""
        name = self.instance.settings.get("Sync", "")
        if not name:
            raise BadRequest(f"{self.instance.name!r} follows no {what}: POST sync "
                             f'{{"sync": "<{what}>"}} first')
        return self.sibling(name)

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[Txn]:
        """A transaction for a mutation, refused on committed versions (unversioned
        instances are repo-wide and stay writable)."""
        async with self.kv.meta.transaction() as txn:
            await self.repos.assert_writable(
                txn, self.node, bypass=self.bypass_lock or not self.instance.versioned
            )
            yield txn

    async def records(self, versions: Collection[str] | None, since: int = 0,
                      limit: int | None = None) -> list[dict[str, Any]]:
        """This instance's log records made at ``versions`` (any if None) above mutation id
        ``since``, oldest first, at most ``limit``: a scan of the instance's log index."""
        return await mutation_log.read_instance(self.kv.meta, self.repo.repo_id,
                                                self.instance.data_uuid, since=since,
                                                limit=limit, versions=versions)

    async def log(self, txn: Txn, record: dict[str, Any]) -> int:
        """Append the mutation's record in its own transaction; returns the mutation id."""
        return await mutation_log.append(
            txn, self.repo.repo_id,
            {"UUID": self.node.uuid, "DataUUID": self.instance.data_uuid,
             "DataName": self.instance.name, **record},
        )
