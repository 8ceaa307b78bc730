"""What a segmentation mutation does to a synced annotation instance, for its mutation log.

The per-body view needs no upkeep (it is computed from the segmentation at each request), but
consumers of the log (labelsz-like tallies, dashboards, Kafka readers) want to know which
elements changed body, as DVID's ANNOTATION_MOD_ELEMENTS events tell them. The elements of
the blocks a mutation can change are looked up before and after it; those whose body differs
make one ``mod-elements`` record of the annotation instance (Del under the old body, Add under
the new, body 0 left out), which commits with the mutation or not at all (see
``labelmap.model.follow_bodies``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dvidql.codec.annotation import Element, bulk, decode_elements
from dvidql.datatypes.annotation.keys import block_tkey
from dvidql.datatypes.base import DataHandle
from dvidql.datatypes.labelmap.model import BodyChanges, Followed
from dvidql.datatypes.labelmap.ops import bodies_across
from dvidql.storage.base import Txn

__all__ = ["record_body_changes"]


def _entries(elements: list[Element], labels: np.ndarray, rows: np.ndarray
             ) -> list[dict[str, Any]]:
    return [{"Label": label, "Kind": elements[i]["Kind"], "Pos": elements[i]["Pos"]}
            for i, label in zip(rows.tolist(), labels[rows].tolist(), strict=True) if label]


async def record_body_changes(segmentation: DataHandle, h: DataHandle, txn: Txn | None,
                              changes: BodyChanges) -> Followed:
    """The record of the elements of ``h`` whose body ``changes`` alters (None if none)."""
    found = Followed(None)
    tkeys = [block_tkey(c) for c in changes.blocks]
    raws = await h.kv.get_raw_many(h.instance_id, tkeys, h.lineage, txn)
    found.reads.add(tkeys, raws)
    present = [r for r in raws if r is not None]
    if not present:
        return found
    with bulk():  # many small objects: spare the cyclic collector
        elements = [e for value in await h.kv.materialize(present)
                    for e in decode_elements(value)]
        if not elements:
            return found
        points = np.array([e["Pos"] for e in elements], np.int64)
        before, after = await bodies_across(segmentation, changes, points, txn,
                                            found.segmentation_reads)
        rows = np.nonzero(before != after)[0]
        if len(rows):
            found.record = {"Action": "mod-elements", "Add": _entries(elements, after, rows),
                            "Del": _entries(elements, before, rows)}
    return found
