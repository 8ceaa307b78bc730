"""The mutation log of one labelmap instance seen across versions: records between two
versions, those touching a body's supervoxels, and the supervoxel splits a version sees
(DVID's ``mutations-range``, ``history`` and ``supervoxel-splits``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dvidql.datatypes.base import DataHandle
from dvidql.errors import BadRequest
from dvidql.versions.dag import Node

__all__ = ["records_between", "supervoxel_splits", "touching"]

# the fields of DVID's labelmap messages that name bodies or supervoxels
_LABEL_FIELDS = ("Target", "Labels", "OrigLabel", "CleavedLabel", "CleavedSupervoxels",
                 "NewLabel", "Supervoxel", "Body", "SplitSupervoxel", "RemainSupervoxel")


def versions_between(h: DataHandle, first: Node, last: Node) -> list[str]:
    """UUIDs from ``first`` down to ``last`` along first parents (both included)."""
    chain: list[str] = []
    version: int | None = last.version_id
    while version is not None:
        node = h.repo.nodes[version]
        chain.append(node.uuid)
        if version == first.version_id:
            return chain[::-1]
        version = node.parents[0] if node.parents else None
    raise BadRequest(f"version {first.uuid} is not an ancestor of {last.uuid} (along first "
                     "parents)")


async def records_between(h: DataHandle, first: Node, last: Node) -> list[dict[str, Any]]:
    """This instance's records made at the versions from ``first`` to ``last``, in mutation
    order."""
    return await h.records(set(versions_between(h, first, last)))


def _labels(record: dict[str, Any]) -> set[int]:
    found: set[int] = set()
    for name in _LABEL_FIELDS:
        value = record.get(name)
        values: Iterable[Any] = value if isinstance(value, list) else [value]
        found.update(v for v in values if isinstance(v, int))
    for key, parts in (record.get("SVSplits") or {}).items():
        found.add(int(key))
        found.update(v for v in parts.values() if isinstance(v, int))
    for pair in record.get("Labels") or []:
        if isinstance(pair, dict):
            found.update(v for v in pair.values() if isinstance(v, int))
    return found


def touching(records: Iterable[dict[str, Any]], labels: set[int]) -> list[dict[str, Any]]:
    """The records that name any of ``labels``."""
    return [r for r in records if _labels(r) & labels]


def _splits_of(record: dict[str, Any]) -> list[list[int]]:
    """``[mutation id, old, remain, split]`` for each supervoxel a split record splits
    (remain 0 where no voxels remained)."""
    mutation_id = record["MutationID"]
    if record.get("Action") == "split-supervoxel":
        return [[mutation_id, record["Supervoxel"], record["RemainSupervoxel"],
                 record["SplitSupervoxel"]]]
    if record.get("Action") == "split":
        return [[mutation_id, int(sv), ids["Remain"], ids["Split"]]
                for sv, ids in (record.get("SVSplits") or {}).items()]
    return []


async def supervoxel_splits(h: DataHandle) -> list[Any]:
    """DVID's ``supervoxel-splits``: every supervoxel split this version sees, as a flat list
    ``[uuid, [[mutation id, old, remain, split], ...], uuid, [...], ...]``, this version
    first and then its ancestors, nearest first (newer versions have larger ids); versions
    without splits are left out, so no splits at all is ``[]``."""
    uuids = {h.repo.nodes[v].uuid: v for v in h.lineage.members}
    by_version: dict[str, list[list[int]]] = {}
    for record in await h.records(set(uuids)):
        found = _splits_of(record)
        if found:
            by_version.setdefault(record["UUID"], []).extend(found)
    out: list[Any] = []
    for uuid in sorted(by_version, key=lambda u: uuids[u], reverse=True):
        out += [uuid, by_version[uuid]]
    return out
