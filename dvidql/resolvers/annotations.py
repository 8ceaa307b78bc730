"""Annotations (synapses and other points) for GraphQL: reads and edits through the
datatype's operations, elements validated by the same codec as REST's element JSON."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dvidql.codec.annotation import Element, bulk, decode_elements, parse_element
from dvidql.datatypes.annotation import AnnotationType, ops
from dvidql.datatypes.base import DataHandle, ModInfo
from dvidql.datatypes.labelsz.ops import kinds_of
from dvidql.datatypes.roi import RoiType
from dvidql.datatypes.voxels import Box, Point
from dvidql.errors import BadRequest
from dvidql.resolvers.grayscale import open_instance

if TYPE_CHECKING:
    from dvidql.schema.context import Context

__all__ = ["body_partners", "body_synapses", "delete", "elements_in", "in_body", "in_roi",
           "move", "open_annotations", "post", "tagged", "top_bodies"]


def open_annotations(ctx: Context, ref: str, name: str, *, write: bool = False) -> DataHandle:
    """The annotation instance ``name`` at version ``ref``, with the write policy if
    ``write``."""
    handle = ctx.service.handle(ref, name, ctx.caller, write=write)
    if handle.instance.type_name != AnnotationType.type_name:
        raise BadRequest(f"data instance {name!r} is a {handle.instance.type_name} instance, "
                         f"not {AnnotationType.type_name}")
    return handle


def _point(value: Sequence[int], what: str) -> Point:
    if len(value) != 3:
        raise BadRequest(f"{what} needs three integers [x, y, z], not {list(value)}")
    return value[0], value[1], value[2]


async def elements_in(handle: DataHandle, offset: Sequence[int], size: Sequence[int]
                      ) -> list[Element]:
    box = Box(_point(offset, "offset"), _point(size, "size"))
    return decode_elements(await ops.elements_in(handle, box))


async def tagged(handle: DataHandle, tag: str, relationships: bool) -> list[Element]:
    return decode_elements(await ops.tagged(handle, tag, relationships=relationships))


async def in_body(handle: DataHandle, body: int, relationships: bool) -> list[Element]:
    return decode_elements(await ops.in_body(handle, body, relationships=relationships))


def _following(segmentation: DataHandle, name: str) -> DataHandle:
    """The annotation instance ``name``, which must follow ``segmentation``."""
    handle = segmentation.sibling(name)
    if handle.instance.type_name != AnnotationType.type_name:
        raise BadRequest(f"data instance {name!r} is a {handle.instance.type_name} instance, "
                         f"not {AnnotationType.type_name}")
    if handle.instance.settings.get("Sync", "") != segmentation.instance.name:
        raise BadRequest(f"annotation instance {name!r} does not follow "
                         f"{segmentation.instance.name!r}; POST sync to it first")
    return handle


async def body_synapses(segmentation: DataHandle, name: str, body: int, kind: str | None,
                        relationships: bool) -> list[Element]:
    """A body's elements in the annotation instance ``name`` (of one kind if given)."""
    found = await in_body(_following(segmentation, name), body, relationships)
    return [e for e in found if kind is None or e["Kind"] == kind]


async def body_partners(segmentation: DataHandle, name: str, body: int
                        ) -> list[tuple[int, int, int]]:
    return await ops.partners(_following(segmentation, name), body)


async def in_roi(ctx: Context, handle: DataHandle, roi: str, ref: str | None) -> list[Element]:
    """The elements inside the roi instance ``roi``, at the annotation's version or ``ref``."""
    region = open_instance(ctx, ref or handle.node.uuid, roi, RoiType.type_name)
    if region.repo.repo_id != handle.repo.repo_id:
        raise BadRequest(f"version {ref!r} is in another repo than the annotations")
    return decode_elements(await ops.elements_in_roi(handle, region))


async def post(ctx: Context, ref: str, name: str, elements: Sequence[Mapping[str, Any]],
               user: str, app: str) -> int:
    """Add or replace elements (validated all before anything is written)."""
    handle = open_annotations(ctx, ref, name, write=True)
    with bulk():
        parsed = [parse_element(dict(e), i) for i, e in enumerate(elements)]
    return await ops.post_elements(handle, parsed, ModInfo(user, app))


async def delete(ctx: Context, ref: str, name: str, pos: Sequence[int], user: str,
                 app: str) -> int:
    handle = open_annotations(ctx, ref, name, write=True)
    return await ops.delete_element(handle, _point(pos, "pos"), ModInfo(user, app))


async def move(ctx: Context, ref: str, name: str, src: Sequence[int], dst: Sequence[int],
               user: str, app: str) -> int:
    handle = open_annotations(ctx, ref, name, write=True)
    return await ops.move_element(handle, _point(src, "from"), _point(dst, "to"),
                                  ModInfo(user, app))


async def top_bodies(handle: DataHandle, index_type: str, n: int) -> list[tuple[int, int]]:
    """The ``n`` bodies with the most elements of a labelsz index type (PreSyn, PostSyn,
    Gap, Note, AllSyn), most first."""
    if n < 0:
        raise BadRequest(f"n must be at least 0, not {n}")
    return await ops.ranked_bodies(handle, kinds_of(index_type), limit=n)
