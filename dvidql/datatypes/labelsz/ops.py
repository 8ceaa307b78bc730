"""labelsz operations: element counts per body, by DVID's index types, computed at the
request from the followed annotation instance, so they are right after any edit of the
elements or of the segmentation."""

from __future__ import annotations

from collections.abc import Sequence

from dvidql.codec.annotation import bulk
from dvidql.datatypes.annotation import AnnotationType
from dvidql.datatypes.annotation import ops as annotation_ops
from dvidql.datatypes.base import DataHandle
from dvidql.errors import BadRequest
from dvidql.versions.dag import Instance

__all__ = ["INDEX_TYPES", "check_sync", "counts", "kinds_of", "ranked"]

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


async def counts(h: DataHandle, labels: Sequence[int], index_type: str) -> list[int]:
    """How many elements of the index type each body holds."""
    kinds = kinds_of(index_type)
    annotations = h.followed("annotation instance")
    out = []
    for label in labels:
        with bulk():
            elements = await annotation_ops.body_elements(annotations, label)
            out.append(sum(1 for e in elements if e["Kind"] in kinds))
    return out


async def ranked(h: DataHandle, index_type: str, *, at_least: int = 1, offset: int = 0,
                 limit: int | None = None) -> list[tuple[int, int]]:
    """(body, count) of the bodies holding at least ``at_least`` elements of the index
    type, most first (see :func:`dvidql.datatypes.annotation.ops.ranked_bodies`)."""
    annotations = h.followed("annotation instance")
    return await annotation_ops.ranked_bodies(annotations, kinds_of(index_type),
                                              at_least=at_least, offset=offset, limit=limit)
