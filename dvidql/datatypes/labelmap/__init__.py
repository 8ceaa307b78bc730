"""labelmap: uint64 segmentation, DVID's labelmap.

Blocks hold supervoxel ids (DVID's compressed label blocks) at scales 0..MaxDownresLevel; a
versioned supervoxel->body mapping, per-body label indices and max labels are ordinary
versioned entries (``keys``, ``model``). Operations: voxel reads and writes (``ops``), body
queries from the indices (``bodies``), merge/cleave/renumber (``edits``), voxel-rewriting
splits (``split``) and the log across versions (``history``).

Settings (case-insensitive): ``BlockSize`` (default 64,64,64; multiples of 8),
``VoxelSize`` (8), ``VoxelUnits`` (nanometers), ``MaxDownresLevel`` (0), ``IndexedLabels``
(true) and ``Compression``: ``gzip`` (the default, as DVID), ``lz4`` or ``none``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dvidql.datatypes.imageblk import (
    VolumeType,
    parse_block_size,
    parse_small_int,
    parse_triple,
    parse_voxel_size,
)
from dvidql.datatypes.labelmap import keys
from dvidql.errors import BadRequest
from dvidql.versions.dag import Instance

__all__ = ["LabelmapType"]

_TRUTH = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


class LabelmapType(VolumeType):
    type_name = "labelmap"
    type_url = "github.com/janelia-flyem/dvid/datatype/labelmap"
    type_version = "0.1"
    default_compression = "gzip"
    compressions = frozenset({"gzip", "lz4", "none"})  # those of LabelCodec

    def parse_settings(self, settings: Mapping[str, str], *, compression: str) -> dict[str, Any]:
        known = {"blocksize", "voxelsize", "voxelunits", "maxdownreslevel", "indexedlabels"}
        unknown = set(settings) - known
        if unknown:
            raise BadRequest(f"unknown setting(s) for labelmap: {', '.join(sorted(unknown))}; "
                             "use BlockSize, VoxelSize, VoxelUnits, MaxDownresLevel, "
                             "IndexedLabels, Compression")
        block = parse_block_size(settings.get("blocksize", "64"))
        if any(b % 8 for b in block):
            raise BadRequest(f"labelmap BlockSize values must be multiples of 8 (label blocks "
                             f"are made of 8x8x8 sub-blocks), not {block}")
        indexed = _TRUTH.get(settings.get("indexedlabels", "true").strip().lower())
        if indexed is None:
            raise BadRequest("IndexedLabels must be true or false")
        return {
            "BlockSize": block,
            "VoxelSize": parse_voxel_size(settings.get("voxelsize", "8")),
            "VoxelUnits": parse_triple(settings.get("voxelunits", "nanometers"), "VoxelUnits",
                                       str),
            "MaxDownresLevel": parse_small_int(settings.get("maxdownreslevel", "0"),
                                               "MaxDownresLevel", 255),
            "IndexedLabels": indexed,
        }

    def describe_key(self, tkey: bytes) -> str:
        return keys.describe(tkey) or super().describe_key(tkey)

    def extended(self, instance: Instance, state: Any = None) -> dict[str, Any]:
        """DVID's Extended info (the fields neuroglancer reads among them)."""
        return {"Values": [{"DataType": "uint64", "Label": "labelmap"}], "Interpolable": False,
                **self.geometry(instance, state),
                "MaxDownresLevel": instance.settings["MaxDownresLevel"],
                "IndexedLabels": instance.settings["IndexedLabels"]}
