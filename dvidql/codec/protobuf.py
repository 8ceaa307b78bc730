"""DVID's protobuf messages, built from descriptors at import time: no protoc, no generated
modules, and each message written in the codec module that uses it, close to DVID's .proto.

A message is a list of ``(field name, number, type)`` where the type is a scalar
(``string``, ``bytes``, ``int64``, ``uint64``, ``uint32``), another message of the same
package, ``repeated <type>`` or ``map<key, value>``, as in a .proto file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["build_messages"]

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {"string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES, "int64": _F.TYPE_INT64,
            "uint64": _F.TYPE_UINT64, "uint32": _F.TYPE_UINT32}

FieldSpec = tuple[str, int, str]


def _add_field(message: descriptor_pb2.DescriptorProto, package: str, path: str,
               name: str, number: int, kind: str) -> None:
    label = _F.LABEL_OPTIONAL
    if kind.startswith("map<") and kind.endswith(">"):
        key, value = (part.strip() for part in kind[4:-1].split(","))
        entry = message.nested_type.add(
            name="".join(p.capitalize() for p in name.split("_")) + "Entry")
        entry.options.map_entry = True
        _add_field(entry, package, f"{path}.{entry.name}", "key", 1, key)
        _add_field(entry, package, f"{path}.{entry.name}", "value", 2, value)
        kind, label = f"{path}.{entry.name}", _F.LABEL_REPEATED
    elif kind.startswith("repeated "):
        kind, label = kind.removeprefix("repeated "), _F.LABEL_REPEATED
    field = message.field.add(name=name, number=number, label=label)
    if kind in _SCALARS:
        field.type = _SCALARS[kind]
    else:
        field.type = _F.TYPE_MESSAGE
        field.type_name = f".{package}.{kind}"


def build_messages(package: str, messages: Mapping[str, Sequence[FieldSpec]]
                   ) -> dict[str, type]:
    """Message classes by name for a proto3 package."""
    proto = descriptor_pb2.FileDescriptorProto(
        name=f"dvidql_{package}.proto", package=package, syntax="proto3")
    for name, fields in messages.items():
        message = proto.message_type.add(name=name)
        for field_name, number, kind in fields:
            _add_field(message, package, name, field_name, number, kind)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
            for name in messages}
