"""labelsz: bodies ranked by their number of annotation elements (synapses), as DVID's labelsz
type. An instance follows one annotation instance (``POST sync``), which follows a
segmentation; ``ops`` answers from them at the request's version. The ``ROI`` setting
(``<roi>`` or ``<roi>,<uuid>``) counts only the elements inside that region.
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
        unknown = set(settings) - {"roi"}
        if unknown:
            raise BadRequest(f"unknown setting(s) for labelsz: {', '.join(sorted(unknown))}; "
                             "use ROI")
        roi = settings.get("roi", "").strip()
        name, _, ref = roi.partition(",")
        if roi and (not name.strip() or "," in ref):
            raise BadRequest(f'ROI must be "<roi instance>" or "<roi instance>,<uuid>", not '
                             f"{roi!r}")
        return {"Sync": "", "ROI": roi}

    def extended(self, instance: Instance, state: Any = None) -> dict[str, Any]:
        return {"Sync": instance.settings.get("Sync", ""), "ROI": instance.settings.get("ROI", "")}

    def describe_key(self, tkey: bytes) -> str:
        return "key"  # labelsz stores nothing of its own
