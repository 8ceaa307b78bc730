"""annotation: points such as synapses and bookmarks, DVID's annotation datatype.

Elements (``dvidql.codec.annotation``) are kept per block of ``BlockSize`` voxels (default
64,64,64, DVID's default when no segmentation is synced), with per-block tag and
inbound-relationship denormalizations (``keys``); ``ops`` holds the operations. Instances
synced to a labelmap log the elements each of its mutations moves between bodies (``follow``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dvidql.datatypes.annotation import keys
from dvidql.datatypes.annotation.follow import record_body_changes
from dvidql.datatypes.base import Datatype
from dvidql.datatypes.imageblk import parse_block_size
from dvidql.datatypes.labelmap.model import follow_bodies
from dvidql.errors import BadRequest
from dvidql.versions.dag import Instance

__all__ = ["AnnotationType"]

follow_bodies("annotation", record_body_changes)


class AnnotationType(Datatype):
    type_name = "annotation"
    type_url = "github.com/janelia-flyem/dvid/datatype/annotation"
    type_version = "0.1"

    def parse_settings(self, settings: Mapping[str, str], *, compression: str) -> dict[str, Any]:
        unknown = set(settings) - {"blocksize"}
        if unknown:
            raise BadRequest(f"unknown setting(s) for annotation: "
                             f"{', '.join(sorted(unknown))}; use BlockSize")
        return {"BlockSize": parse_block_size(settings.get("blocksize", "64")), "Sync": ""}

    def extended(self, instance: Instance, state: Any = None) -> dict[str, Any]:
        return {"BlockSize": instance.settings["BlockSize"],
                "Sync": instance.settings.get("Sync", "")}

    def describe_key(self, tkey: bytes) -> str:
        return keys.describe(tkey)
