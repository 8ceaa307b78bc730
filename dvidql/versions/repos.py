"""Repos and versions through the metadata store: creation, DAG operations, UUID resolution.

Each DAG operation reads the repo document inside a transaction, changes it and writes it
back with its mutation-log record, so operations on one repo serialize in the store. The
in-memory copy serves lookups (UUID prefixes, lineages) on the hot path. Each version's lock
flag is also its own key, which data writes read inside their transaction: a write that races
a commit is refused rather than landing in a committed version.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from dvidql.errors import BadRequest, Conflict, InvalidRef, Locked, NotFound
from dvidql.events import log as mutation_log
from dvidql.ids import new_uuid, now, validate_uuid
from dvidql.storage import keys as K
from dvidql.storage.base import MetaStore, Txn
from dvidql.storage.versioned import Lineage, VersionedKV
from dvidql.versions.dag import MASTER, Instance, Node, Repo, stamp
from dvidql.versions.refs import parse_ref

__all__ = ["MergeOutcome", "RepoManager"]

T = TypeVar("T")

RESERVED_NAMES = frozenset(
    {"log", "branch", "note", "commit", "newversion", "tag", "status", "merge", "resolve",
     "info", "instance", "branch-versions"}
)


_TAG = re.compile(r"^[A-Za-z0-9._-]{1,128}$")  # the same characters a version ref allows


@dataclass(frozen=True)
class MergeOutcome:
    child: Node | None  # None when refused for conflicts
    conflicts: list[tuple[str, bytes]]  # (instance name, tkey)


def _repo_key(repo_id: int) -> bytes:
    return K.meta_key(f"repo/{repo_id:010d}")


def _locked_key(version: int) -> bytes:
    return K.meta_key(f"locked/{version:010d}")


def _uuid_key(uuid: str) -> bytes:
    return K.meta_key(f"uuid/{uuid}")


_CATALOG = "catalog"  # counter bumped by every change of a repo document


class RepoManager:
    def __init__(self, meta: MetaStore, kv: VersionedKV) -> None:
        self.meta = meta
        self.kv = kv
        self.repos: dict[int, Repo] = {}
        self._uuids: dict[str, tuple[int, int]] = {}  # uuid -> (repo id, version id)
        self._sorted_uuids: list[str] = []
        self._lineages: dict[int, Lineage] = {}
        self._catalog: bytes | None = None  # the counter value the copy reflects

    async def load(self) -> None:
        """Read every repo document; start-up cost grows with repos, not with mutations."""
        catalog = await self.meta.get(K.meta_key(f"next/{_CATALOG}"))  # before the documents
        start, end = K.meta_key("repo/"), K.meta_key("repo0")
        async for _, raw in self.meta.scan(start, end):
            self._install(Repo.from_dict(orjson.loads(raw)))
        self._catalog = catalog

    async def catch_up(self) -> None:
        """Bring the in-memory copy up to date with repo changes made by other processes
        sharing the store: one small read per request, so a repo, version or instance made
        through one process is visible to the next request on any other."""
        if not self.meta.supports_concurrent_writers:
            return  # this process makes every change and installs it as it commits
        if await self.meta.get(K.meta_key(f"next/{_CATALOG}")) != self._catalog:
            await self.load()

    def _install(self, repo: Repo) -> None:
        self.repos[repo.repo_id] = repo
        for node in repo.nodes.values():
            if node.uuid not in self._uuids:
                bisect.insort(self._sorted_uuids, node.uuid)
            self._uuids[node.uuid] = (repo.repo_id, node.version_id)

    # ----- lookups -----------------------------------------------------------------------

    def resolve(self, text: str) -> tuple[Repo, Node]:
        """The repo and version a URL reference names (prefix, ``uuid:branch~N``, ``:branch``)."""
        exact = self._uuids.get(text)
        if exact is not None:  # a whole UUID, as most requests give: no parsing needed
            repo = self.repos[exact[0]]
            return repo, repo.nodes[exact[1]]
        ref = parse_ref(text)
        if ref.prefix:
            repo, node = self._by_prefix(ref.prefix, text)
        elif ref.branch is None:
            raise InvalidRef("empty version reference")
        elif len(self.repos) == 1:
            repo = next(iter(self.repos.values()))
            node = repo.nodes[repo.root_version]
        else:
            raise InvalidRef(
                f"{text!r} names a branch without a UUID prefix, which is only allowed when "
                f"the server has exactly one repo (it has {len(self.repos)})"
            )
        if ref.branch is None:
            return repo, node
        name = MASTER if ref.branch == "master" else ref.branch
        leaf = repo.branch_leaves.get(name)
        if leaf is None:
            raise NotFound(f"branch {ref.branch!r} not found in repo {repo.root}")
        node = repo.nodes[leaf]
        for _ in range(ref.back):
            if not node.parents:
                raise NotFound(f"{text!r} goes back past the root of branch {ref.branch!r}")
            node = repo.nodes[node.parents[0]]
        return repo, node

    def _by_prefix(self, prefix: str, text: str) -> tuple[Repo, Node]:
        exact = self._uuids.get(prefix)
        if exact is None:
            prefix = prefix.lower()
            exact = self._uuids.get(prefix)
        if exact is None:
            i = bisect.bisect_left(self._sorted_uuids, prefix)
            matches = []
            while i < len(self._sorted_uuids) and self._sorted_uuids[i].startswith(prefix):
                matches.append(self._sorted_uuids[i])
                i += 1
                if len(matches) > 1:
                    raise InvalidRef(f"version reference {text!r} is ambiguous: it matches "
                                     "more than one version; give more characters")
            if not matches:
                raise NotFound(f"no version matches {text!r}")
            exact = self._uuids[matches[0]]
        repo = self.repos[exact[0]]
        return repo, repo.nodes[exact[1]]

    def repo_of(self, text: str) -> Repo:
        return self.resolve(text)[0]

    def lineage(self, repo: Repo, version: int) -> Lineage:
        """Cached forever: a version's ancestry never changes."""
        found = self._lineages.get(version)
        if found is None:
            found = self._lineages[version] = repo.lineage(version)
        return found

    def data_version(self, repo: Repo, node: Node, instance: Instance) -> tuple[int, Lineage]:
        """Where an instance's data lives for a request at ``node``: unversioned instances
        keep one copy at the repo root."""
        if instance.versioned:
            return node.version_id, self.lineage(repo, node.version_id)
        root = repo.root_version
        return root, Lineage(root, {root: ()})

    def instance(self, repo: Repo, name: str) -> Instance:
        found = repo.instances.get(name)
        if found is None:
            raise NotFound(f"no data instance named {name!r} in repo {repo.root}")
        return found

    async def assert_writable(self, txn: Txn, node: Node, *, bypass: bool = False) -> None:
        """Refuse data writes to a committed version (read inside the write's transaction)."""
        if not bypass and await txn.get(_locked_key(node.version_id)) is not None:
            raise Locked(f"version {node.uuid} is committed (locked) and cannot be changed; "
                         "create a new version with newversion or branch")

    # ----- the one write path for repo documents -----------------------------------------

    async def _mutate(self, repo_id: int, change: Callable[[Repo, Txn], Awaitable[T]]) -> T:
        try:
            async with self.meta.transaction() as txn:
                raw = await txn.get(_repo_key(repo_id))
                if raw is None:
                    raise NotFound(f"repo {repo_id} not found")
                repo = Repo.from_dict(orjson.loads(raw))
                result = await change(repo, txn)
                repo.updated = now()
                await self._next_id(txn, _CATALOG)
                txn.put(_repo_key(repo_id), orjson.dumps(repo.to_dict()))
                self._install(repo)  # before the transaction lock is released
        except BaseException:
            raw = await self.meta.get(_repo_key(repo_id))
            if raw is not None:
                self._install(Repo.from_dict(orjson.loads(raw)))
            raise
        return result

    @staticmethod
    async def _next_id(txn: Txn, name: str) -> int:
        key = K.meta_key(f"next/{name}")
        current = await txn.get(key)
        value = (int(current) if current else 0) + 1
        txn.put(key, str(value).encode())
        return value

    @staticmethod
    async def _claim_uuid(txn: Txn, uuid: str) -> None:
        """Reserve a version UUID in the store, so processes sharing it never reuse one."""
        if await txn.get(_uuid_key(uuid)) is not None:
            raise Conflict(f"uuid {uuid} is already used by another version")
        txn.put(_uuid_key(uuid), b"1")

    def _check_new_uuid(self, uuid: str | None) -> str:
        if not uuid:
            return new_uuid()
        uuid = validate_uuid(uuid)
        if uuid in self._uuids:
            raise Conflict(f"uuid {uuid} is already used by another version")
        return uuid

    # ----- repos -------------------------------------------------------------------------

    async def create_repo(
        self, *, alias: str = "", description: str = "", root: str | None = None
    ) -> Repo:
        root_uuid = self._check_new_uuid(root)
        async with self.meta.transaction() as txn:
            await self._claim_uuid(txn, root_uuid)
            repo_id = await self._next_id(txn, "repo")
            version_id = await self._next_id(txn, "version")
            await self._next_id(txn, _CATALOG)
            repo = Repo(repo_id=repo_id, root=root_uuid, alias=alias, description=description)
            repo.add_child([], version_id, root_uuid, branch=MASTER)
            txn.put(_repo_key(repo_id), orjson.dumps(repo.to_dict()))
            await mutation_log.append(txn, repo_id, {"Action": "newrepo", "UUID": root_uuid,
                                                     "Alias": alias})
            self._install(repo)
        return repo

    async def set_repo_info(
        self, repo: Repo, *, alias: str | None = None, description: str | None = None
    ) -> None:
        async def change(r: Repo, txn: Txn) -> None:
            if alias is not None:
                r.alias = alias
            if description is not None:
                r.description = description

        await self._mutate(repo.repo_id, change)

    async def append_repo_log(self, repo: Repo, messages: Sequence[str]) -> None:
        async def change(r: Repo, txn: Txn) -> None:
            r.log.extend(stamp(m) for m in messages)

        await self._mutate(repo.repo_id, change)

    async def add_instance(self, repo: Repo, make: Callable[[int], Instance]) -> Instance:
        """Add the instance built by ``make(instance_id)`` under a fresh server-wide id."""

        async def change(r: Repo, txn: Txn) -> Instance:
            instance = make(await self._next_id(txn, "instance"))
            if instance.name in r.instances:
                raise Conflict(f"data instance {instance.name!r} already exists in repo {r.root}")
            r.instances[instance.name] = instance
            r.log.append(stamp(f"added data instance {instance.name!r} [{instance.type_name}]"))
            await mutation_log.append(txn, r.repo_id, {
                "Action": "newinstance", "UUID": r.root, "Typename": instance.type_name,
                "Dataname": instance.name})
            return instance

        return await self._mutate(repo.repo_id, change)

    async def set_instance_tags(
        self, repo: Repo, name: str, tags: dict[str, str], *, replace: bool = False
    ) -> dict[str, str]:
        async def change(r: Repo, txn: Txn) -> dict[str, str]:
            instance = self.instance(r, name)
            instance.tags = dict(tags) if replace else {**instance.tags, **tags}
            return instance.tags

        return await self._mutate(repo.repo_id, change)

    async def set_instance_settings(
        self, repo: Repo, name: str, updates: dict[str, Any]
    ) -> dict[str, Any]:
        """Change type settings of an instance (already validated by its datatype)."""

        async def change(r: Repo, txn: Txn) -> dict[str, Any]:
            instance = self.instance(r, name)
            instance.settings = {**instance.settings, **updates}
            r.log.append(stamp(f"changed {', '.join(sorted(updates))} of {name!r}"))
            return instance.settings

        return await self._mutate(repo.repo_id, change)

    # ----- nodes -------------------------------------------------------------------------

    async def set_note(self, repo: Repo, node: Node, note: str, *, bypass: bool = False) -> None:
        async def change(r: Repo, txn: Txn) -> None:
            target = self._unlocked(r, node, bypass, "its note cannot change")
            target.note = note
            target.updated = now()
            await mutation_log.append(txn, r.repo_id, {"Action": "nodenote", "UUID": node.uuid,
                                                       "Note": note})

        await self._mutate(repo.repo_id, change)

    async def append_node_log(
        self, repo: Repo, node: Node, messages: Sequence[str], *, bypass: bool = False
    ) -> None:
        async def change(r: Repo, txn: Txn) -> None:
            target = self._unlocked(r, node, bypass, "its log cannot change")
            target.log.extend(stamp(m) for m in messages)
            target.updated = now()
            await mutation_log.append(txn, r.repo_id, {"Action": "nodelog", "UUID": node.uuid,
                                                       "Log": list(messages)})

        await self._mutate(repo.repo_id, change)

    @staticmethod
    def _unlocked(repo: Repo, node: Node, bypass: bool, consequence: str) -> Node:
        target = repo.nodes[node.version_id]
        if target.locked and not bypass:
            raise Locked(f"version {node.uuid} is committed, so {consequence}")
        return target

    async def commit(
        self, repo: Repo, node: Node, *, note: str | None = None, log: Sequence[str] = ()
    ) -> Node:
        async def change(r: Repo, txn: Txn) -> Node:
            target = r.nodes[node.version_id]
            if target.locked:
                raise Conflict(f"version {node.uuid} is already committed")
            target.locked = True
            if note is not None:
                target.note = note
            target.log.extend(stamp(m) for m in log)
            target.updated = now()
            txn.put(_locked_key(target.version_id), b"1")
            await mutation_log.append(txn, r.repo_id, {"Action": "commit", "UUID": node.uuid,
                                                       "Note": target.note, "Log": list(log)})
            return target

        return await self._mutate(repo.repo_id, change)

    @staticmethod
    def _parent_ready(parent: Node, bypass: bool, action: str) -> None:
        if not parent.locked and not bypass:
            raise Locked(f"version {parent.uuid} must be committed before {action}")

    async def new_version(
        self, repo: Repo, node: Node, *, note: str = "", uuid: str | None = None,
        bypass: bool = False,
    ) -> Node:
        child_uuid = self._check_new_uuid(uuid)

        async def change(r: Repo, txn: Txn) -> Node:
            parent = r.nodes[node.version_id]
            self._parent_ready(parent, bypass, "making a new version from it")
            same_branch = [c for c in parent.children if r.nodes[c].branch == parent.branch]
            if same_branch and not bypass:
                raise Conflict(
                    f"version {parent.uuid} already has a child on its branch "
                    f"({r.nodes[same_branch[0]].uuid}); branches are linear, so start a new "
                    "branch with /branch instead"
                )
            await self._claim_uuid(txn, child_uuid)
            child = r.add_child([parent.version_id], await self._next_id(txn, "version"),
                                child_uuid, branch=parent.branch, note=note)
            await mutation_log.append(txn, r.repo_id, {
                "Action": "newversion", "Parent": parent.uuid, "Child": child.uuid,
                "Note": note})
            return child

        return await self._mutate(repo.repo_id, change)

    async def branch(
        self, repo: Repo, node: Node, name: str, *, note: str = "", uuid: str | None = None,
        bypass: bool = False,
    ) -> Node:
        child_uuid = self._check_new_uuid(uuid)

        async def change(r: Repo, txn: Txn) -> Node:
            parent = r.nodes[node.version_id]
            self._parent_ready(parent, bypass, f"branching {name!r} from it")
            r.check_new_branch_name(name)
            await self._claim_uuid(txn, child_uuid)
            child = r.add_child([parent.version_id], await self._next_id(txn, "version"),
                                child_uuid, branch=name, note=note)
            await mutation_log.append(txn, r.repo_id, {
                "Action": "branch", "Parent": parent.uuid, "Child": child.uuid, "Branch": name,
                "Note": note})
            return child

        return await self._mutate(repo.repo_id, change)

    async def tag(
        self, repo: Repo, node: Node, tag: str, *, note: str = "", bypass: bool = False
    ) -> Node:
        """DVID's tag: a committed child whose UUID is the tag text, on branch ``tag-<tag>``."""
        if not _TAG.match(tag):
            raise BadRequest(f"tag {tag!r} must be letters, digits, '.', '_' or '-', so that it "
                             "can stand wherever a UUID can")
        if tag in self._uuids:
            raise Conflict(f"tag {tag!r} is already used as a version UUID or tag")

        async def change(r: Repo, txn: Txn) -> Node:
            parent = r.nodes[node.version_id]
            self._parent_ready(parent, bypass, f"tagging it {tag!r}")
            r.check_new_branch_name(f"tag-{tag}")
            await self._claim_uuid(txn, tag)
            child = r.add_child(
                [parent.version_id], await self._next_id(txn, "version"), tag,
                branch=f"tag-{tag}", note=note or f"Tag of version {parent.uuid} with {tag}",
                locked=True)
            txn.put(_locked_key(child.version_id), b"1")
            await mutation_log.append(txn, r.repo_id, {
                "Action": "tag", "Parent": parent.uuid, "Child": child.uuid, "Note": child.note})
            return child

        return await self._mutate(repo.repo_id, change)

    async def merge(
        self,
        repo: Repo,
        parents: Sequence[Node],
        *,
        note: str = "",
        priority_for: frozenset[str] | None = None,
        uuid: str | None = None,
        bypass: bool = False,
    ) -> MergeOutcome:
        """Merge committed versions into a new child of all of them.

        Keys the parents changed differently are conflicts. With ``priority_for`` (instance
        names), conflicts in those instances take the first parent's value at the child;
        any other conflict refuses the merge and nothing is written."""
        repo = self.repos[repo.repo_id]  # the caller's copy may predate recent changes
        if len(parents) < 2:
            raise BadRequest("a merge needs at least two parent versions")
        if len({p.version_id for p in parents}) != len(parents):
            raise BadRequest("a merge lists the same parent version twice")
        for parent in parents:
            if parent.version_id not in repo.nodes:
                raise BadRequest(f"version {parent.uuid} is not in repo {repo.root}")
        child_uuid = self._check_new_uuid(uuid)
        unknown = (priority_for or frozenset()) - set(repo.instances)
        if unknown:
            raise NotFound(f"no data instance named {sorted(unknown)[0]!r} in repo {repo.root}")

        async def change(r: Repo, txn: Txn) -> MergeOutcome:
            nodes = [r.nodes[p.version_id] for p in parents]
            for parent in nodes:
                self._parent_ready(parent, bypass, "merging it")
            version = await self._next_id(txn, "version")
            ancestry: dict[int, tuple[int, ...]] = {version: tuple(p.version_id for p in nodes)}
            for parent in nodes:
                ancestry.update(self.lineage(r, parent.version_id).parents)
            merged = Lineage(version, ancestry)
            names = {i.instance_id: i.name for i in r.instances.values() if i.versioned}
            found = await self.kv.merge_conflicts(merged, names)
            conflicts = [(names[i], tkey) for i, tkey in found]
            resolvable = [(i, t) for i, t in found if names[i] in (priority_for or ())]
            if len(resolvable) < len(found):
                raise _Refused(conflicts)
            await self.kv.resolve_by_priority(txn, merged, resolvable)
            await self._claim_uuid(txn, child_uuid)
            child = r.add_child([p.version_id for p in nodes], version, child_uuid,
                                branch=nodes[0].branch, note=note)
            await mutation_log.append(txn, r.repo_id, {
                "Action": "merge", "Parents": [p.uuid for p in nodes], "Child": child.uuid,
                "Note": note, "Resolved": len(resolvable)})
            return MergeOutcome(child, conflicts)

        try:
            return await self._mutate(repo.repo_id, change)
        except _Refused as refused:
            return MergeOutcome(None, refused.conflicts)

    # ----- provenance --------------------------------------------------------------------

    async def mutation_id(self, repo: Repo) -> int:
        return await mutation_log.last_id(self.meta, repo.repo_id)

    async def mutations(self, repo: Repo, since: int = 0) -> list[dict[str, Any]]:
        return await mutation_log.read(self.meta, repo.repo_id, since)


class _Refused(Exception):
    """Internal: aborts the merge transaction so nothing is written."""

    def __init__(self, conflicts: list[tuple[str, bytes]]) -> None:
        super().__init__("merge refused")
        self.conflicts = conflicts
