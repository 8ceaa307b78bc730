"""labelsz operations: element counts per body, by DVID's index types, computed at the
request from the followed annotation instance, so they are right after any edit of the
elements, of the segmentation or of the ROI."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dvidql.codec.annotation import bulk
from dvidql.datatypes.annotation import AnnotationType
from dvidql.datatypes.annotation import ops as annotation_ops
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.roi import ops as roi_ops
from dvidql.errors import BadRequest
from dvidql.versions.dag import Instance

__all__ = ["INDEX_TYPES", "check_sync", "counts", "kinds_of", "ranked", "region"]

# DVID's index types and the element kinds each counts
INDEX_TYPES = {"PostSyn": ("PostSyn",), "PreSyn": ("PreSyn",), "Gap": ("Gap",),
               "Note": ("Note",), "AllSyn": ("PreSyn", "PostSyn")}


def kinds_of(index_type: str) -> tuple[str, ...]:
    kinds = INDEX_TYPES.get(index_type)
    if kinds is None:
        raise BadRequest(f"index type must be one of {', '.join(INDEX_TYPES)}, not "
                         f"{index_type!r} (voxel counts are the labelmap's size endpoint)")
    return kinds


def check_sync(instance: Instance) -> None:
    if instance.type_name != AnnotationType.type_name:
        raise BadRequest(f"labelsz follows an annotation instance; {instance.name!r} is a "
                         f"{instance.type_name}")


def region(h: DataHandle) -> DataHandle | None:
    """The roi instance the ``ROI`` setting restricts counting to, at the version it names
    (else the request's), or None without the setting."""
    setting = h.instance.settings.get("ROI", "")
    if not setting:
        return None
    name, _, ref = setting.partition(",")
    node = None
    if ref.strip():
        repo, node = h.repos.resolve(ref.strip())
        if repo.repo_id != h.repo.repo_id:
            raise BadRequest(f"the ROI setting names version {ref!r} of another repo")
    found = h.sibling(name.strip(), node)
    if found.instance.type_name != "roi":
        raise BadRequest(f"the ROI setting names {name!r}, a {found.instance.type_name}, not a "
                         "roi instance")
    return found


async def counts(h: DataHandle, labels: Sequence[int], index_type: str) -> list[int]:
    """How many elements of the index type each body holds (inside the ROI, if set)."""
    kinds = kinds_of(index_type)
    annotations = h.followed("annotation instance")
    inside = region(h)
    out = []
    for label in labels:
        with bulk():
            elements = [e for e in await annotation_ops.body_elements(annotations, label)
                        if e["Kind"] in kinds]
        if inside is not None and elements:
            points = np.array([e["Pos"] for e in elements], np.int64)
            out.append(int(np.count_nonzero(await roi_ops.contains(inside, points))))
        else:
            out.append(len(elements))
    return out


async def ranked(h: DataHandle, index_type: str, *, at_least: int = 1, offset: int = 0,
                 limit: int | None = None) -> list[tuple[int, int]]:
    """(body, count) of the bodies holding at least ``at_least`` elements of the index
    type (inside the ROI, if set), most first (see
    :func:`dvidql.datatypes.annotation.ops.ranked_bodies`)."""
    annotations = h.followed("annotation instance")
    return await annotation_ops.ranked_bodies(annotations, kinds_of(index_type),
                                              at_least=at_least, offset=offset, limit=limit,
                                              region=region(h))
