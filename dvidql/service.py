"""The service core both faces call: stores, repos, access policy and repo-level operations.

REST handlers and GraphQL resolvers stay thin by calling these methods; each operation and
each policy check (read-only mode, admin token, lock bypass) is written here once.
"""

from __future__ import annotations

import hmac
import os
import platform
import re
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dvidql import __version__
from dvidql.config import Mode, Settings
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.imageblk import pyramid
from dvidql.datatypes.registry import DATATYPES, get_datatype
from dvidql.errors import BadRequest, Forbidden, Locked, ReadOnly, Unavailable
from dvidql.ids import new_uuid
from dvidql.storage.base import BlobStore, MetaStore
from dvidql.storage.lmdb import open_embedded
from dvidql.storage.versioned import VersionedKV
from dvidql.versions.dag import Instance, Node, Repo
from dvidql.versions.repos import RESERVED_NAMES, RepoManager

__all__ = ["Caller", "MergeResult", "Service"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking: only whether they proved the admin token, for now."""

    admin: bool = False


@dataclass(frozen=True)
class MergeResult:
    child: Node | None
    conflicts: list[dict[str, str]]  # {"instance": name, "key": readable key}


async def open_stores(settings: Settings) -> tuple[MetaStore, BlobStore]:
    """The embedded store in ``settings.data``, or PostgreSQL + S3 when both URLs are set."""
    if not settings.distributed:
        return open_embedded(settings.data)
    from dvidql.storage.postgres import open_postgres
    from dvidql.storage.s3 import S3BlobStore

    assert settings.meta is not None and settings.blobs is not None
    meta = await open_postgres(settings.meta, max_size=settings.pg_pool_size)
    secret = settings.s3_secret_key
    try:
        blobs = await S3BlobStore.from_url(
            settings.blobs, endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
            secret_key=None if secret is None else secret.get_secret_value(),
            region=settings.s3_region, concurrency=settings.s3_concurrency)
    except BaseException:
        await meta.close()
        raise
    return meta, blobs


async def check_stores(settings: Settings) -> None:
    """Open and close the configured stores: unreachable servers, bad credentials or a data
    directory in use are reported before the server starts."""
    meta, blobs = await open_stores(settings)
    await blobs.close()
    await meta.close()


class Service:
    def __init__(self, settings: Settings, meta: MetaStore, blobs: BlobStore) -> None:
        self.settings = settings
        self.kv = VersionedKV(meta, blobs, inline_limit=settings.inline_value_bytes,
                              cache_bytes=settings.block_cache_bytes)
        self.repos = RepoManager(meta, self.kv)
        self.started = time.time()
        self._throttled = 0
        # handles made lately, by the repo, version and instance objects they were made from
        # (a repo change installs new objects, so a stale one is never found again)
        self._handles: dict[tuple[int, int, int, bool], DataHandle] = {}

    @classmethod
    async def open(cls, settings: Settings) -> Service:
        meta, blobs = await open_stores(settings)
        service = cls(settings, meta, blobs)
        try:
            await service.repos.load()
        except BaseException:
            await service.close()
            raise
        return service

    async def close(self) -> None:
        await self.kv.blobs.close()
        await self.kv.meta.close()

    # ----- access policy -----------------------------------------------------------------

    def caller(self, token: str | None) -> Caller:
        expected = self.settings.admin_token
        return Caller(admin=bool(expected and token and hmac.compare_digest(token, expected)))

    def require_privilege(self, caller: Caller, action: str) -> None:
        """Privileged calls need the admin token when one is configured (DVID's admintoken);
        a server started without a token is a single-user server where they are open."""
        if self.settings.admin_token and not caller.admin:
            raise Forbidden(f"{action} needs the admin token (?admintoken=... or a Bearer header)")

    def require_writable(self, caller: Caller) -> None:
        if self.settings.mode is Mode.READONLY and not caller.admin:
            raise ReadOnly("this server is read-only; only GET and HEAD requests are served")

    def bypass_lock(self, caller: Caller) -> bool:
        return caller.admin or self.settings.mode is Mode.FULLWRITE

    # ----- data handles ------------------------------------------------------------------

    def handle(self, ref: str, name: str, caller: Caller, *, write: bool = False) -> DataHandle:
        """Resolve an instance at a version for a request; ``write`` applies the write policy."""
        repo, node = self.repos.resolve(ref)
        return self.handle_at(repo, node, self.repos.instance(repo, name), caller, write=write)

    def handle_at(
        self, repo: Repo, node: Node, instance: Instance, caller: Caller, *, write: bool = False
    ) -> DataHandle:
        if write:
            self.require_writable(caller)
        bypass = self.bypass_lock(caller)
        key = (id(repo), id(node), id(instance), bypass)
        found = self._handles.get(key)
        if found is not None and found.repo is repo and found.node is node and \
                found.instance is instance:  # (a cached handle keeps its ids from reuse)
            return found
        version, lineage = self.repos.data_version(repo, node, instance)
        handle = DataHandle(self.kv, self.repos, repo, node, instance, version, lineage,
                            bypass_lock=bypass,
                            max_request_bytes=self.settings.max_request_bytes,
                            allow_split=self.settings.allow_labelmap_split)
        if len(self._handles) >= 1024:
            self._handles.clear()
        self._handles[key] = handle
        return handle

    # ----- repos and instances -----------------------------------------------------------

    async def create_repo(
        self, caller: Caller, *, alias: str = "", description: str = "", root: str | None = None
    ) -> Repo:
        self.require_writable(caller)
        self.require_privilege(caller, "creating a repo")
        return await self.repos.create_repo(alias=alias, description=description, root=root)

    async def create_instance(
        self, caller: Caller, repo: Repo, node: Node, config: Mapping[str, Any]
    ) -> Instance:
        """Create an instance from DVID-style settings (keys case-insensitive):
        ``typename``, ``dataname``, ``versioned``, ``Compression``, ``Checksum``, ``Tags``
        and the type's own settings. Everything is validated before anything is written."""
        self.require_writable(caller)
        if node.locked and not self.bypass_lock(caller):
            raise Locked(f"version {node.uuid} is committed; instances are added to "
                         "uncommitted versions")
        settings: dict[str, str] = {}
        for key, value in config.items():
            if not isinstance(value, str | bool | int | float):
                raise BadRequest(f"setting {key!r} must be a string")
            settings[key.lower()] = str(value)
        type_name = settings.pop("typename", "")
        name = settings.pop("dataname", "")
        if not type_name or not name:
            raise BadRequest("creating an instance needs 'typename' and 'dataname'")
        datatype = get_datatype(type_name)
        if not _NAME.match(name) or name in RESERVED_NAMES:
            raise BadRequest(
                f"instance name {name!r} is not allowed: use letters, digits, '.', '_' or '-' "
                f"(not starting with a symbol), and none of {', '.join(sorted(RESERVED_NAMES))}"
            )
        versioned = settings.pop("versioned", "true").lower() not in ("false", "0", "no")
        compression = datatype.parse_compression(
            settings.pop("compression", datatype.default_compression))
        checksum = settings.pop("checksum", "none").lower()
        if checksum != "none":
            raise BadRequest(f"Checksum {checksum!r} is not supported; use 'none'")
        tags = _parse_tags(settings.pop("tags", ""))
        type_settings = datatype.parse_settings(settings, compression=compression)

        def make(instance_id: int) -> Instance:
            return Instance(name=name, type_name=type_name, data_uuid=new_uuid(),
                            instance_id=instance_id, versioned=versioned,
                            compression=compression, tags=tags, settings=type_settings)

        return await self.repos.add_instance(repo, make)

    async def merge(
        self,
        caller: Caller,
        repo: Repo,
        parents: Sequence[Node],
        *,
        note: str = "",
        priority_for: frozenset[str] | None = None,
    ) -> MergeResult:
        self.require_writable(caller)
        outcome = await self.repos.merge(repo, parents, note=note, priority_for=priority_for,
                                         bypass=self.bypass_lock(caller))
        latest = self.repos.repos[repo.repo_id]
        conflicts = [
            {"instance": name,
             "key": get_datatype(latest.instances[name].type_name).describe_key(tkey)}
            for name, tkey in outcome.conflicts
        ]
        return MergeResult(outcome.child, conflicts)

    # ----- DAG and provenance: the write policy applied once for both faces --------------

    async def commit(
        self, caller: Caller, repo: Repo, node: Node, *, note: str | None = None,
        log: Sequence[str] = (),
    ) -> Node:
        self.require_writable(caller)
        return await self.repos.commit(repo, node, note=note, log=log)

    async def new_version(
        self, caller: Caller, repo: Repo, node: Node, *, note: str = "", uuid: str | None = None
    ) -> Node:
        self.require_writable(caller)
        return await self.repos.new_version(repo, node, note=note, uuid=uuid,
                                            bypass=self.bypass_lock(caller))

    async def branch(
        self, caller: Caller, repo: Repo, node: Node, name: str, *, note: str = "",
        uuid: str | None = None,
    ) -> Node:
        self.require_writable(caller)
        return await self.repos.branch(repo, node, name, note=note, uuid=uuid,
                                       bypass=self.bypass_lock(caller))

    async def tag(self, caller: Caller, repo: Repo, node: Node, tag: str, *,
                  note: str = "") -> Node:
        self.require_writable(caller)
        return await self.repos.tag(repo, node, tag, note=note, bypass=self.bypass_lock(caller))

    async def set_note(self, caller: Caller, repo: Repo, node: Node, note: str) -> None:
        self.require_writable(caller)
        await self.repos.set_note(repo, node, note, bypass=self.bypass_lock(caller))

    async def append_node_log(
        self, caller: Caller, repo: Repo, node: Node, messages: Sequence[str]
    ) -> None:
        self.require_writable(caller)
        await self.repos.append_node_log(repo, node, messages, bypass=self.bypass_lock(caller))

    async def set_repo_info(
        self, caller: Caller, repo: Repo, *, alias: str | None = None,
        description: str | None = None,
    ) -> None:
        self.require_writable(caller)
        await self.repos.set_repo_info(repo, alias=alias, description=description)

    async def append_repo_log(self, caller: Caller, repo: Repo, messages: Sequence[str]) -> None:
        self.require_writable(caller)
        await self.repos.append_repo_log(repo, messages)

    async def set_instance_tags(
        self, caller: Caller, repo: Repo, name: str, tags: dict[str, str], *,
        replace: bool = False,
    ) -> dict[str, str]:
        self.require_writable(caller)
        return await self.repos.set_instance_tags(repo, name, tags, replace=replace)

    async def set_instance_settings(
        self, caller: Caller, repo: Repo, name: str, updates: dict[str, Any]
    ) -> dict[str, Any]:
        self.require_writable(caller)
        return await self.repos.set_instance_settings(repo, name, updates)

    async def build_pyramid(
        self, caller: Caller, h: DataHandle, *, levels: int | None = None
    ) -> dict[str, Any]:
        """Build or update a grayscale instance's lower-resolution levels at its version."""
        self.require_writable(caller)

        async def handle_for(name: str, settings: dict[str, str]) -> DataHandle:
            repo = self.repos.repos[h.repo.repo_id]
            if name not in repo.instances:
                await self.create_instance(caller, repo, h.node, settings)
                repo = self.repos.repos[h.repo.repo_id]
            return self.handle_at(repo, h.node, repo.instances[name], caller, write=True)

        return await pyramid.build(h, levels, handle_for)

    @asynccontextmanager
    async def throttle(self, enabled: bool) -> AsyncIterator[None]:
        """DVID's ``throttle=true``: at most ``max_throttled_ops`` such requests at once;
        others get 503 at once rather than queueing."""
        if not enabled:
            yield
            return
        if self._throttled >= self.settings.max_throttled_ops:
            raise Unavailable("the server is busy with other throttled requests; retry later")
        self._throttled += 1
        try:
            yield
        finally:
            self._throttled -= 1

    # ----- DVID JSON shapes --------------------------------------------------------------

    async def instance_info(self, repo: Repo, instance: Instance) -> dict[str, Any]:
        datatype = get_datatype(instance.type_name)
        state = await datatype.info_state(self.kv, repo, instance)
        info = {
            "Base": {
                "TypeName": instance.type_name,
                "TypeURL": datatype.type_url,
                "TypeVersion": datatype.type_version,
                "DataUUID": instance.data_uuid,
                "Name": instance.name,
                "RepoUUID": repo.root,
                "Compression": datatype.describe_compression(instance.compression),
                "Checksum": "No checksum",
                "Syncs": [],
                "Versioned": instance.versioned,
                "KVStore": "embedded LMDB",
                "LogStore": "embedded LMDB",
                "Tags": instance.tags,
            },
            "Extended": datatype.extended(instance, state),
        }
        if state is not None and "MinPoint" in state:
            info["Extents"] = state
        return info

    async def repo_info(self, repo: Repo) -> dict[str, Any]:
        mutation_id = await self.repos.mutation_id(repo)
        return {
            "Root": repo.root,
            "Alias": repo.alias,
            "Description": repo.description,
            "Log": repo.log,
            "Properties": repo.properties,
            "DataInstances": {
                name: await self.instance_info(repo, inst)
                for name, inst in repo.instances.items()
            },
            "DAG": {
                "Root": repo.root,
                "Nodes": {
                    node.uuid: {
                        "Branch": node.branch,
                        "Note": node.note,
                        "Log": node.log,
                        "UUID": node.uuid,
                        "VersionID": node.version_id,
                        "Locked": node.locked,
                        "Parents": node.parents,
                        "Children": node.children,
                        "Created": node.created,
                        "Updated": node.updated,
                    }
                    for node in repo.nodes.values()
                },
            },
            "MutationID": mutation_id,
            "SavedMutationID": mutation_id,
            "Created": repo.created,
            "Updated": repo.updated,
        }

    def server_info(self) -> dict[str, str]:
        uptime = int(time.time() - self.started)
        return {
            "Cores": str(os.cpu_count() or 1),
            "Maximum Cores": str(os.cpu_count() or 1),
            "Datastore Version": "1",
            "DVID Version": f"v{__version__}-dvidql",
            "Server": f"dvidql {__version__} (Python {platform.python_version()})",
            "Storage backend": self.settings.describe_store(),
            "Server time": datetime.now(UTC).isoformat(),
            "Server uptime": f"{uptime // 3600}h{uptime // 60 % 60}m{uptime % 60}s",
            "RPC Address": "",
            "Host": f"{self.settings.host}:{self.settings.port}",
            "Note": self.settings.note,
            "TOML location": str(self.settings.config_file or ""),
            "Mode": self.settings.mode.value,
            "Kafka Servers": "",
            "Kafka Activity Topic": "",
            "Kafka Topic Prefix": "",
            "Max Open Files": "",
        }

    @staticmethod
    def types() -> dict[str, str]:
        return {name: t.type_url for name, t in DATATYPES.items()}


def _parse_tags(text: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise BadRequest(f"tag {item!r} must look like key=value (Tags=\"k=v,k2=v2\")")
        tags[key.strip()] = value.strip()
    return tags
