"""labelsz: bodies ranked by their number of annotation elements (synapses), as DVID's labelsz
type. An instance follows one annotation instance (``POST sync``), which follows a
segmentation; ``ops`` answers from them at the request's version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dvidql.datatypes.base import Datatype
from dvidql.errors import BadRequest
from dvidql.versions.dag import Instance

__all__ = ["LabelszType"]


class LabelszType(Datatype):
    type_name = "labelsz"
    type_url = "github.com/janelia-flyem/dvid/datatype/labelsz"
    type_version = "0.1"

    def parse_settings(self, settings: Mapping[str, str], *, compression: str) -> dict[str, Any]:
        if "roi" in settings:
            raise BadRequest("labelsz counts every element so far: the ROI setting (counting "
                             "only inside a region) is not supported yet")
        if settings:
            raise BadRequest(f"unknown setting(s) for labelsz: {', '.join(sorted(settings))}")
        return {"Sync": ""}

    def extended(self, instance: Instance, state: Any = None) -> dict[str, Any]:
        return {"Sync": instance.settings.get("Sync", "")}

    def describe_key(self, tkey: bytes) -> str:
        return "key"  # labelsz stores nothing of its own
