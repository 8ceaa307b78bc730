"""The built-in datatypes, looked up by type name. Registration is explicit and in one place."""

from __future__ import annotations

from dvidql.datatypes.annotation import AnnotationType
from dvidql.datatypes.base import Datatype
from dvidql.datatypes.imageblk import Uint8BlkType
from dvidql.datatypes.keyvalue import KeyValueType
from dvidql.datatypes.labelmap import LabelmapType
from dvidql.datatypes.labelsz import LabelszType
from dvidql.datatypes.roi import RoiType
from dvidql.errors import NotFound

__all__ = ["DATATYPES", "get_datatype"]

DATATYPES: dict[str, Datatype] = {
    t.type_name: t for t in (KeyValueType(), Uint8BlkType(), LabelmapType(), RoiType(),
                             AnnotationType(), LabelszType())}


def get_datatype(name: str) -> Datatype:
    found = DATATYPES.get(name)
    if found is None:
        raise NotFound(
            f"unknown datatype {name!r}; this server supports: {', '.join(sorted(DATATYPES))}"
        )
    return found
