"""Pure model of repos and their version DAGs: no storage, no I/O.

A repo document holds the DAG, the data instances and the repo's provenance; it is stored as
one JSON value and rewritten by each DAG operation (those are rare next to data writes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dvidql.errors import BadRequest, Conflict
from dvidql.ids import now
from dvidql.storage.versioned import Lineage

__all__ = ["MASTER", "Instance", "Node", "Repo", "stamp"]

MASTER = ""  # the master branch is stored as the empty name, as in DVID


def stamp(message: str) -> str:
    """A log entry as DVID stores it: timestamp, two spaces, message."""
    return f"{now()}  {message}"


@dataclass
class Node:
    uuid: str
    version_id: int
    parents: list[int]
    children: list[int] = field(default_factory=list)
    branch: str = MASTER
    note: str = ""
    log: list[str] = field(default_factory=list)
    locked: bool = False
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)


@dataclass
class Instance:
    name: str
    type_name: str
    data_uuid: str
    instance_id: int
    versioned: bool = True
    compression: str = ""
    checksum: str = "none"
    tags: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=now)


@dataclass
class Repo:
    repo_id: int
    root: str
    alias: str = ""
    description: str = ""
    log: list[str] = field(default_factory=list)
    properties: dict[str, Any] = field(default_factory=dict)
    nodes: dict[int, Node] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    branch_leaves: dict[str, int] = field(default_factory=dict)
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)

    # ----- (de)serialization ------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["nodes"] = {str(k): v for k, v in data["nodes"].items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Repo:
        nodes = {int(k): Node(**v) for k, v in data.pop("nodes").items()}
        instances = {k: Instance(**v) for k, v in data.pop("instances").items()}
        return cls(nodes=nodes, instances=instances, **data)

    # ----- queries -----------------------------------------------------------------------

    @property
    def root_version(self) -> int:
        return min(self.nodes)

    def node_by_uuid(self, uuid: str) -> Node:
        for node in self.nodes.values():
            if node.uuid == uuid:
                return node
        raise KeyError(uuid)

    def lineage(self, version: int) -> Lineage:
        """The version's whole ancestry, for versioned reads."""
        parents: dict[int, tuple[int, ...]] = {}
        stack = [version]
        while stack:
            v = stack.pop()
            if v in parents:
                continue
            parents[v] = tuple(self.nodes[v].parents)
            stack.extend(parents[v])
        return Lineage(version, parents)

    def branch_names(self) -> set[str]:
        return {node.branch for node in self.nodes.values()}

    def branch_versions(self, branch: str) -> list[str]:
        """UUIDs from the branch leaf back to the root; at a merge node the non-first parents
        are listed too and the walk goes on up the first parent."""
        leaf = self.branch_leaves.get(branch)
        if leaf is None:
            raise KeyError(branch)
        out: list[str] = []
        version: int | None = leaf
        while version is not None:
            node = self.nodes[version]
            out.append(node.uuid)
            out.extend(self.nodes[p].uuid for p in node.parents[1:])
            version = node.parents[0] if node.parents else None
        return out

    # ----- mutations (the caller persists the document) ----------------------------------

    def add_child(
        self,
        parents: list[int],
        version_id: int,
        uuid: str,
        *,
        branch: str,
        note: str = "",
        locked: bool = False,
    ) -> Node:
        """Attach a new node under ``parents``; it becomes the leaf of its branch."""
        node = Node(uuid=uuid, version_id=version_id, parents=list(parents), branch=branch,
                    note=note, locked=locked)
        for parent in parents:
            self.nodes[parent].children.append(version_id)
            self.nodes[parent].updated = node.created
        self.nodes[version_id] = node
        self.branch_leaves[branch] = version_id
        self.updated = node.created
        return node

    def check_new_branch_name(self, branch: str) -> None:
        if not branch or branch == "master":
            raise BadRequest("a new branch needs a name other than 'master'")
        if any(c in branch for c in ":~/"):
            raise BadRequest(f"branch name {branch!r} may not contain ':', '~' or '/'")
        if branch in self.branch_names():
            raise Conflict(f"branch name {branch!r} is already used in this repo")
