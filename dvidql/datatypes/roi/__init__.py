"""roi: a region of interest made of whole blocks, as DVID's roi type.

Settings (case-insensitive): ``BlockSize`` (default 32,32,32), the block grid the ROI's
spans count in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dvidql.datatypes.base import Datatype
from dvidql.datatypes.imageblk import parse_block_size
from dvidql.datatypes.roi.keys import RUN, decode_run
from dvidql.errors import BadRequest
from dvidql.versions.dag import Instance

__all__ = ["RoiType"]


class RoiType(Datatype):
    type_name = "roi"
    type_url = "github.com/janelia-flyem/dvid/datatype/roi"
    type_version = "0.1"

    def parse_settings(self, settings: Mapping[str, str], *, compression: str) -> dict[str, Any]:
        unknown = set(settings) - {"blocksize"}
        if unknown:
            raise BadRequest(f"unknown setting(s) for roi: {', '.join(sorted(unknown))}; "
                             "use BlockSize")
        return {"BlockSize": parse_block_size(settings.get("blocksize", "32"))}

    def extended(self, instance: Instance, state: Any = None) -> dict[str, Any]:
        return {"BlockSize": list(instance.settings["BlockSize"])}

    def describe_key(self, tkey: bytes) -> str:
        if tkey[:1] != bytes([RUN]):
            return "key"
        z, y, x0, x1 = decode_run(tkey)
        return f"blocks x {x0} to {x1} of row y {y}, z {z}"
