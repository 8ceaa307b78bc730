"""Object types. Each wraps a domain object (repo document, DAG node, instance, data handle)
and exposes it; nested fields that need the service delegate to :mod:`dvidql.resolvers`."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

import strawberry
from strawberry.types import Info

from dvidql.codec.labelindex import LabelIndex
from dvidql.datatypes.base import DataHandle
from dvidql.resolvers import annotations as annotation_resolvers
from dvidql.resolvers import bodies as body_resolvers
from dvidql.resolvers import grayscale as gray_resolvers
from dvidql.resolvers import instances as instance_resolvers
from dvidql.resolvers import keyvalue as kv_resolvers
from dvidql.resolvers import repos as repo_resolvers
from dvidql.resolvers import segmentation as seg_resolvers
from dvidql.schema.args import arg
from dvidql.schema.context import Context
from dvidql.schema.scalars import JSON, Base64, UInt64
from dvidql.service import MergeResult as ServiceMergeResult
from dvidql.versions import dag

__all__ = [
    "Body",
    "Branch",
    "CleaveBodyResult",
    "DataInstance",
    "DatatypeInfo",
    "Extents",
    "Grayscale",
    "GrayscaleScale",
    "KeyMutationResult",
    "KeyValueEntry",
    "KeyValueInstance",
    "LastModification",
    "MergeBodiesResult",
    "MergeConflictEntry",
    "MergeResolution",
    "MergeResult",
    "MutationRecord",
    "Plane",
    "RenumberBodiesResult",
    "RenumberPair",
    "Repo",
    "Segmentation",
    "ServerInfo",
    "SplitRun",
    "SplitSupervoxelResult",
    "Supervoxel",
    "SupervoxelSize",
    "Tag",
    "Version",
    "branch_name",
]

MASTER_NAME = "master"


def branch_name(stored: str) -> str:
    """The master branch is stored as the empty name (as in DVID) and shown as 'master'."""
    return MASTER_NAME if stored == dag.MASTER else stored


# ----- server ------------------------------------------------------------------------------


@strawberry.type(description="A datatype this server supports.")
class DatatypeInfo:
    name: str = strawberry.field(description="Type name used to create instances, e.g. "
                                             "'keyvalue'.")
    url: str = strawberry.field(description="DVID's type URL for the datatype.")


@strawberry.type(description="The server's version, configuration and state.")
class ServerInfo:
    version: str = strawberry.field(description="DVID-compatible version string.")
    server: str = strawberry.field(description="Server software and Python version.")
    mode: str = strawberry.field(description="Write mode: readwrite, readonly or fullwrite.")
    storage_backend: str = strawberry.field(description="Where the data is stored.")
    uptime: str = strawberry.field(description="Time since the server started, e.g. 1h2m3s.")
    server_time: str = strawberry.field(description="Current server time (RFC 3339).")
    host: str = strawberry.field(description="Address and port the server listens on.")
    note: str = strawberry.field(description="Free-text note from the server configuration.")
    cores: int = strawberry.field(description="CPU cores available to the server.")
    datatypes: list[DatatypeInfo] = strawberry.field(
        description="Datatypes that instances can be created with.")

    @classmethod
    def build(cls, info: dict[str, str], types: dict[str, str]) -> ServerInfo:
        return cls(
            version=info["DVID Version"], server=info["Server"], mode=info["Mode"],
            storage_backend=info["Storage backend"], uptime=info["Server uptime"],
            server_time=info["Server time"], host=info["Host"], note=info["Note"],
            cores=int(info["Cores"]),
            datatypes=[DatatypeInfo(name=n, url=u) for n, u in sorted(types.items())],
        )


# ----- repos and versions ------------------------------------------------------------------


@strawberry.type(description="One version (node) of a repo's version DAG.")
class Version:
    doc: strawberry.Private[dag.Repo]
    node: strawberry.Private[dag.Node]

    @classmethod
    def of(cls, located: tuple[dag.Repo, dag.Node]) -> Version:
        return cls(doc=located[0], node=located[1])

    @strawberry.field(description="The version's UUID (32 hex digits, or the tag text for "
                                  "tag versions).")
    def uuid(self) -> str:
        return self.node.uuid

    @strawberry.field(description="Server-wide numeric id of the version.")
    def version_id(self) -> int:
        return self.node.version_id

    @strawberry.field(description="Branch of the version; 'master' for the master branch.")
    def branch(self) -> str:
        return branch_name(self.node.branch)

    @strawberry.field(description="Free-text note on the version.")
    def note(self) -> str:
        return self.node.note

    @strawberry.field(description="Log entries of the version, oldest first, each "
                                  "'timestamp  message'.")
    def log(self) -> list[str]:
        return list(self.node.log)

    @strawberry.field(description="True once the version is committed; its data is then "
                                  "read-only and new versions grow from it.")
    def committed(self) -> bool:
        return self.node.locked

    @strawberry.field(description="DVID's name for committed: the version is locked.")
    def locked(self) -> bool:
        return self.node.locked

    @strawberry.field(description="When the version was created (RFC 3339).")
    def created(self) -> str:
        return self.node.created

    @strawberry.field(description="When the version last changed (RFC 3339).")
    def updated(self) -> str:
        return self.node.updated

    @strawberry.field(description="Parent versions; a merge has several, first parent first.")
    def parents(self) -> list[Version]:
        return [Version(doc=self.doc, node=self.doc.nodes[v]) for v in self.node.parents]

    @strawberry.field(description="Child versions, oldest first.")
    def children(self) -> list[Version]:
        return [Version(doc=self.doc, node=self.doc.nodes[v]) for v in self.node.children]

    @strawberry.field(description="The repo the version belongs to.")
    def repo(self) -> Repo:
        return Repo(doc=self.doc)

    @strawberry.field(description="Read a keyvalue instance as this version sees it.")
    def keyvalue(
        self,
        info: Info[Context, None],
        instance: Annotated[str, arg("Name of a keyvalue data instance.")],
    ) -> KeyValueInstance | None:
        return KeyValueInstance(
            handle=kv_resolvers.open_instance(info.context, self.node.uuid, instance))


    @strawberry.field(description="Read a grayscale (uint8blk) instance as this version sees "
                                  "it.")
    def grayscale(
        self,
        info: Info[Context, None],
        instance: Annotated[str, arg("Name of a uint8blk data instance (scale 0).")],
    ) -> Grayscale:
        return Grayscale(
            handle=gray_resolvers.open_instance(info.context, self.node.uuid, instance))


    @strawberry.field(description="Read an annotation instance (synapses and other points) "
                                  "as this version sees it.")
    def annotations(
        self,
        info: Info[Context, None],
        instance: Annotated[str, arg("Name of an annotation data instance.")],
    ) -> Annotations:
        return Annotations(handle=annotation_resolvers.open_annotations(
            info.context, self.node.uuid, instance))

    @strawberry.field(description="Read a segmentation (labelmap) instance as this version "
                                  "sees it.")
    def segmentation(
        self,
        info: Info[Context, None],
        instance: Annotated[str, arg("Name of a labelmap data instance.")],
    ) -> Segmentation:
        return Segmentation(
            handle=seg_resolvers.open_segmentation(info.context, self.node.uuid, instance))


@strawberry.type(description="A named line of versions; its head is the newest version.")
class Branch:
    doc: strawberry.Private[dag.Repo]
    stored: strawberry.Private[str]

    @strawberry.field(description="Branch name; 'master' for the master branch.")
    def name(self) -> str:
        return branch_name(self.stored)

    @strawberry.field(description="The branch's newest version (its leaf).")
    def head(self) -> Version:
        return Version(doc=self.doc, node=self.doc.nodes[self.doc.branch_leaves[self.stored]])

    @strawberry.field(description="Versions from the head back to the repo root; at a merge "
                                  "the other parents are listed too.")
    def versions(self) -> list[Version]:
        by_uuid = {node.uuid: node for node in self.doc.nodes.values()}
        return [Version(doc=self.doc, node=by_uuid[u])
                for u in self.doc.branch_versions(self.stored)]


@strawberry.type(description="A tag on a data instance.")
class Tag:
    key: str = strawberry.field(description="Tag name.")
    value: str = strawberry.field(description="Tag value.")


@strawberry.type(description="A data instance of a repo: named data of one datatype.")
class DataInstance:
    doc: strawberry.Private[dag.Repo]
    model: strawberry.Private[dag.Instance]

    @strawberry.field(description="Instance name, unique in its repo.")
    def name(self) -> str:
        return self.model.name

    @strawberry.field(description="Datatype name, e.g. 'keyvalue'.")
    def type_name(self) -> str:
        return self.model.type_name

    @strawberry.field(description="UUID identifying the instance's data.")
    def data_uuid(self) -> str:
        return self.model.data_uuid

    @strawberry.field(description="False when the instance keeps one copy for all versions.")
    def versioned(self) -> bool:
        return self.model.versioned

    @strawberry.field(description="How values are compressed at rest ('none', 'lz4'...).")
    def compression(self) -> str:
        return self.model.compression

    @strawberry.field(description="Tags given when the instance was created.")
    def tags(self) -> list[Tag]:
        return [Tag(key=k, value=v) for k, v in sorted(self.model.tags.items())]

    @strawberry.field(description="When the instance was created (RFC 3339).")
    def created(self) -> str:
        return self.model.created

    @strawberry.field(description="DVID's info document for the instance ({Base, Extended}).")
    async def info(self, info: Info[Context, None]) -> JSON:
        return await instance_resolvers.instance_info(info.context, self.doc, self.model)


@strawberry.type(description="A repo: a DAG of versions and the data instances they share.")
class Repo:
    doc: strawberry.Private[dag.Repo]

    @strawberry.field(description="UUID of the root version, which identifies the repo.")
    def uuid(self) -> str:
        return self.doc.root

    @strawberry.field(description="The root version.")
    def root(self) -> Version:
        return Version(doc=self.doc, node=self.doc.nodes[self.doc.root_version])

    @strawberry.field(description="Short name of the repo.")
    def alias(self) -> str:
        return self.doc.alias

    @strawberry.field(description="Description of the repo.")
    def description(self) -> str:
        return self.doc.description

    @strawberry.field(description="Repo log entries, oldest first, each 'timestamp  message'.")
    def log(self) -> list[str]:
        return list(self.doc.log)

    @strawberry.field(description="When the repo was created (RFC 3339).")
    def created(self) -> str:
        return self.doc.created

    @strawberry.field(description="When the repo last changed (RFC 3339).")
    def updated(self) -> str:
        return self.doc.updated

    @strawberry.field(description="All versions, in creation order.")
    def versions(self) -> list[Version]:
        return [Version(doc=self.doc, node=self.doc.nodes[v]) for v in sorted(self.doc.nodes)]

    @strawberry.field(description="A version of this repo by reference: a UUID or prefix, "
                                  "'uuid:branch', 'uuid:branch~N' or ':branch'.")
    def version(
        self,
        info: Info[Context, None],
        ref: Annotated[str, arg("The version reference.")],
    ) -> Version | None:
        return Version(doc=self.doc, node=repo_resolvers.version_in(info.context, self.doc, ref))

    @strawberry.field(description="Data instances, by name.")
    def instances(self) -> list[DataInstance]:
        return [DataInstance(doc=self.doc, model=self.doc.instances[name])
                for name in sorted(self.doc.instances)]

    @strawberry.field(description="One data instance by name.")
    def instance(
        self,
        info: Info[Context, None],
        name: Annotated[str, arg("Instance name.")],
    ) -> DataInstance | None:
        return DataInstance(
            doc=self.doc, model=instance_resolvers.instance(info.context, self.doc, name))

    @strawberry.field(description="Branches, master first.")
    def branches(self) -> list[Branch]:
        names = sorted(self.doc.branch_leaves, key=lambda n: (n != dag.MASTER, n))
        return [Branch(doc=self.doc, stored=name) for name in names]

    @strawberry.field(description="Id of the repo's latest mutation (each change of data or "
                                  "versions gets the next id).")
    async def mutation_id(self, info: Info[Context, None]) -> UInt64:
        return UInt64(await repo_resolvers.mutation_id(info.context, self.doc))


# ----- grayscale -----------------------------------------------------------------------------


@strawberry.enum(description="An orthogonal plane: its columns run along the first axis "
                             "named, its rows along the second.")
class Plane(Enum):
    XY = strawberry.enum_value("XY", description="Columns along x, rows along y.")
    XZ = strawberry.enum_value("XZ", description="Columns along x, rows along z.")
    YZ = strawberry.enum_value("YZ", description="Columns along y, rows along z.")


@strawberry.type(description="A box of voxels by its first and last voxel (inclusive).")
class Extents:
    min_point: list[int] = strawberry.field(description="First voxel [x, y, z].")
    max_point: list[int] = strawberry.field(description="Last voxel [x, y, z], inclusive.")


@strawberry.type(description="One resolution of a grayscale pyramid.")
class GrayscaleScale:
    level: int = strawberry.field(description="0 is full resolution; each level halves it.")
    name: str = strawberry.field(description="The uint8blk instance holding this level.")
    voxel_size: list[float] = strawberry.field(description="Voxel size [x, y, z] at this "
                                                           "level.")
    extents: Extents | None = strawberry.field(description="Voxels written at this level, in "
                                                           "this level's coordinates.")


PlaneArg = Annotated[Plane, arg("Which plane: XY, XZ or YZ.")]
Offset = Annotated[list[int], arg("First voxel [x, y, z] (in the scale's coordinates).")]
Size2D3D = Annotated[list[int], arg("Voxels along each axis: [x, y, z] for a box; [columns, "
                                    "rows] for a plane.")]
ScaleArg = Annotated[int, arg("Pyramid level: 0 is full resolution.")]
FormatArg = Annotated[str, arg("Image format: png, or jpg with an optional quality (jpg:90).")]


@strawberry.type(description="What every block volume shows (not itself in the schema).")
class _Volume:
    handle: strawberry.Private[DataHandle]

    @strawberry.field(description="Instance name.")
    def name(self) -> str:
        return self.handle.instance.name

    @strawberry.field(description="UUID of the version being read.")
    def version(self) -> str:
        return self.handle.node.uuid

    @strawberry.field(description="Block size [x, y, z] in voxels.")
    def block_size(self) -> list[int]:
        return gray_resolvers.geometry_of(self.handle)["block_size"]  # type: ignore[return-value]

    @strawberry.field(description="Voxel size [x, y, z] in voxel units.")
    def voxel_size(self) -> list[float]:
        return gray_resolvers.geometry_of(self.handle)["voxel_size"]  # type: ignore[return-value]

    @strawberry.field(description="Units of the voxel size, per axis.")
    def voxel_units(self) -> list[str]:
        return gray_resolvers.geometry_of(self.handle)["voxel_units"]  # type: ignore[return-value]

    @strawberry.field(description="How blocks are stored: the Compression setting.")
    def compression(self) -> str:
        return gray_resolvers.geometry_of(self.handle)["compression"]  # type: ignore[return-value]

    @strawberry.field(description="Voxels written so far (all versions), or null if none.")
    async def extents(self, info: Info[Context, None]) -> Extents | None:
        return await _extents(info.context, self.handle)


@strawberry.type(description="A grayscale (uint8blk) volume as one version sees it. Small "
                             "boxes and slices come back inline (base64); larger ones are "
                             "read from the REST URLs these fields return.")
class Grayscale(_Volume):
    @strawberry.field(description="Value of voxels never written.")
    def background(self) -> int:
        return self.handle.instance.settings["Background"]  # type: ignore[no-any-return]

    @strawberry.field(description="Level 0 and the pyramid levels present (name_1, name_2...).")
    async def scales(self, info: Info[Context, None]) -> list[GrayscaleScale]:
        out = []
        for scale in gray_resolvers.scales(info.context, self.handle):
            out.append(GrayscaleScale(
                level=scale.level, name=scale.handle.instance.name,
                voxel_size=gray_resolvers.geometry_of(scale.handle)["voxel_size"],  # type: ignore[arg-type]
                extents=await _extents(info.context, scale.handle)))
        return out

    @strawberry.field(description="REST URL returning a box as packed uint8 voxels (x "
                                  "fastest, then y, then z).")
    def subvolume_url(self, info: Info[Context, None], offset: Offset, size: Size2D3D,
                      scale: ScaleArg = 0) -> str:
        return gray_resolvers.url(info.context, self.handle, scale, None, offset, size, None)

    @strawberry.field(description="REST URL returning a plane as an image.")
    def slice_url(self, info: Info[Context, None], plane: PlaneArg, offset: Offset,
                  size: Size2D3D, scale: ScaleArg = 0, format: FormatArg = "png") -> str:
        return gray_resolvers.url(info.context, self.handle, scale, plane.value, offset, size,
                                  format)

    @strawberry.field(description="A small box as packed uint8 voxels (x fastest); boxes over "
                                  "4 Mi voxels are refused with the REST URL to use.")
    async def subvolume(self, info: Info[Context, None], offset: Offset, size: Size2D3D,
                        scale: ScaleArg = 0) -> Base64:
        return Base64(await gray_resolvers.read_subvolume(info.context, self.handle, scale,
                                                          offset, size))

    @strawberry.field(description="A small plane as an image file (png or jpg); planes over "
                                  "4 Mi pixels are refused with the REST URL to use.")
    async def slice(self, info: Info[Context, None], plane: PlaneArg, offset: Offset,
                    size: Size2D3D, scale: ScaleArg = 0, format: FormatArg = "png") -> Base64:
        return Base64(await gray_resolvers.read_slice(info.context, self.handle, scale,
                                                      plane.value, offset, size, format))


async def _extents(ctx: Context, handle: DataHandle) -> Extents | None:
    found = gray_resolvers.extents_of(await ctx.service.instance_info(handle.repo,
                                                                      handle.instance))
    return None if found is None else Extents(min_point=found[0], max_point=found[1])


# ----- keyvalue ----------------------------------------------------------------------------


@strawberry.type(description="A key and its value (null when the key is absent).")
class KeyValueEntry:
    key: str = strawberry.field(description="The key.")
    value: Base64 | None = strawberry.field(description="The value, or null if absent.")


@strawberry.type(description="A keyvalue instance as one version sees it.")
class KeyValueInstance:
    handle: strawberry.Private[DataHandle]

    @strawberry.field(description="Instance name.")
    def name(self) -> str:
        return self.handle.instance.name

    @strawberry.field(description="UUID of the version being read.")
    def version(self) -> str:
        return self.handle.node.uuid

    @strawberry.field(description="The value of a key, or null if the key is absent.")
    async def value(self, key: Annotated[str, arg("The key.")]) -> Base64 | None:
        found = await kv_resolvers.value(self.handle, key)
        return None if found is None else Base64(found)

    @strawberry.field(description="The value of a key as UTF-8 text, or null if absent; "
                                  "an error (BAD_REQUEST) if the value is not UTF-8.")
    async def text(self, key: Annotated[str, arg("The key.")]) -> str | None:
        return await kv_resolvers.text(self.handle, key)

    @strawberry.field(description="Keys in sorted order, within the inclusive range "
                                  "[first, last] when given.")
    async def keys(
        self,
        first: Annotated[str | None, arg("Lowest key to list (inclusive).")] = None,
        last: Annotated[str | None, arg("Highest key to list (inclusive).")] = None,
    ) -> list[str]:
        return await kv_resolvers.keys(self.handle, first, last)

    @strawberry.field(description="Values of several keys in one read, in the order given.")
    async def entries(
        self, keys: Annotated[list[str], arg("The keys to read.")]
    ) -> list[KeyValueEntry]:
        pairs = await kv_resolvers.entries(self.handle, keys)
        return [KeyValueEntry(key=k, value=None if v is None else Base64(v)) for k, v in pairs]


# ----- annotations -------------------------------------------------------------------------


@strawberry.type(description="A relationship of an annotation element to another point.")
class Relationship:
    rel: str = strawberry.field(description="PreSynTo, PostSynTo, ConvergentTo, GroupedWith "
                                            "or UnknownRelationship.")
    to: list[int] = strawberry.field(description="The point [x, y, z] it points to.")


@strawberry.type(description="An annotation element, as DVID's element JSON: a synapse part "
                             "(PreSyn, PostSyn), a gap junction, a note...")
class AnnotationElement:
    pos: list[int] = strawberry.field(description="Its voxel [x, y, z], which identifies it.")
    kind: str = strawberry.field(description="PreSyn, PostSyn, Gap, Note or Unknown.")
    tags: list[str] = strawberry.field(description="Its tags (indexed).")
    prop: JSON = strawberry.field(description="Its properties, an object of strings.")
    rels: list[Relationship] = strawberry.field(description="Its relationships to other "
                                                            "points ([] where not asked for).")

    @classmethod
    def of(cls, element: dict[str, Any]) -> AnnotationElement:
        return cls(pos=element["Pos"], kind=element["Kind"], tags=element["Tags"],
                   prop=element["Prop"],
                   rels=[Relationship(rel=r["Rel"], to=r["To"]) for r in element.get("Rels", [])])


def _elements(found: list[dict[str, Any]]) -> list[AnnotationElement]:
    return [AnnotationElement.of(e) for e in found]


@strawberry.type(description="An annotation instance (synapses, bookmarks) as one version "
                             "sees it: elements by box, tag or region.")
class Annotations:
    handle: strawberry.Private[DataHandle]

    @strawberry.field(description="Instance name.")
    def name(self) -> str:
        return self.handle.instance.name

    @strawberry.field(description="UUID of the version read.")
    def version(self) -> str:
        return self.handle.node.uuid

    @strawberry.field(description="Edge of the blocks elements are kept in, [x, y, z] voxels.")
    def block_size(self) -> list[int]:
        return list(self.handle.instance.settings["BlockSize"])

    @strawberry.field(description="The elements (with relationships) whose position lies in "
                                  "a box.")
    async def elements(
        self,
        offset: Annotated[list[int], arg("The box's first voxel [x, y, z].")],
        size: Annotated[list[int], arg("The box's size [x, y, z] in voxels.")],
    ) -> list[AnnotationElement]:
        return _elements(await annotation_resolvers.elements_in(self.handle, offset, size))

    @strawberry.field(description="The elements having a tag.")
    async def tagged(
        self,
        tag: Annotated[str, arg("The tag.")],
        relationships: Annotated[bool, arg("Include the elements' relationships.")] = False,
    ) -> list[AnnotationElement]:
        return _elements(await annotation_resolvers.tagged(self.handle, tag, relationships))

    @strawberry.field(description="The elements lying in a body of the segmentation the "
                                  "instance follows (REST POST sync), exact after every edit.")
    async def body(
        self,
        id_: Annotated[UInt64, arg("The body.", name="id")],
        relationships: Annotated[bool, arg("Include the elements' relationships.")] = False,
    ) -> list[AnnotationElement]:
        return _elements(await annotation_resolvers.in_body(self.handle, int(id_),
                                                            relationships))

    @strawberry.field(description="The bodies of the followed segmentation with the most "
                                  "elements of a kind, most first (ties by increasing id).")
    async def top_bodies(
        self,
        kind: Annotated[str, arg("PreSyn, PostSyn, Gap, Note, or AllSyn (PreSyn and "
                                 "PostSyn).")] = "AllSyn",
        n: Annotated[int, arg("How many bodies.")] = 10,
    ) -> list[BodyCount]:
        found = await annotation_resolvers.top_bodies(self.handle, kind, n)
        return [BodyCount(body=UInt64(b), count=c) for b, c in found]

    @strawberry.field(description="The elements (with relationships) inside a roi instance.")
    async def in_roi(
        self,
        info: Info[Context, None],
        roi: Annotated[str, arg("Name of a roi instance of the repo.")],
        roi_version: Annotated[str | None, arg(
            "Version of the region (UUID or prefix); the annotations' own if "
            "omitted.")] = None,
    ) -> list[AnnotationElement]:
        return _elements(await annotation_resolvers.in_roi(info.context, self.handle, roi,
                                                           roi_version))


@strawberry.type(description="A body and how many elements of a kind it holds.")
class BodyCount:
    body: UInt64 = strawberry.field(description="The body.")
    count: int = strawberry.field(description="Its elements of the kind asked for.")


@strawberry.type(description="A body connected to another by synapses.")
class SynapsePartner:
    body: UInt64 = strawberry.field(description="The partner body.")
    outgoing: int = strawberry.field(description="Connections from the queried body's "
                                                 "T-bars to the partner (their PreSynTo "
                                                 "relationships).")
    incoming: int = strawberry.field(description="Connections from the partner to the "
                                                 "queried body's PostSyn elements (their "
                                                 "PostSynTo relationships).")


@strawberry.input(description="A relationship to post with an element.")
class RelationshipInput:
    rel: str = strawberry.field(description="PreSynTo, PostSynTo, ConvergentTo, GroupedWith "
                                            "or UnknownRelationship.")
    to: list[int] = strawberry.field(description="The point [x, y, z] it points to.")


@strawberry.input(description="An element to post: an element at the same position is "
                              "replaced.")
class ElementInput:
    pos: list[int] = strawberry.field(description="Its voxel [x, y, z].")
    kind: str = strawberry.field(description="PreSyn, PostSyn, Gap, Note or Unknown.")
    tags: list[str] | None = strawberry.field(default=None, description="Its tags.")
    prop: JSON | None = strawberry.field(default=None, description="Its properties, an "
                                                                   "object of strings.")
    rels: list[RelationshipInput] | None = strawberry.field(
        default=None, description="Its relationships to other points.")

    def as_json(self) -> dict[str, Any]:
        """The element as REST's element JSON, for the one validation both faces share."""
        return {"Pos": self.pos, "Kind": self.kind, "Tags": self.tags or [],
                "Prop": self.prop or {},
                "Rels": [{"Rel": r.rel, "To": r.to} for r in self.rels or []]}


@strawberry.type(description="The outcome of an annotation edit.")
class AnnotationMutationResult:
    mutation_id: UInt64 = strawberry.field(description="Id of the mutation in the repo's log.")
    instance: str = strawberry.field(description="Instance edited.")


@strawberry.type(description="The outcome of a key write or delete.")
class KeyMutationResult:
    mutation_id: UInt64 = strawberry.field(description="Id of the mutation in the repo's log.")
    instance: str = strawberry.field(description="Instance written.")
    key: str = strawberry.field(description="Key written.")


# ----- merges ------------------------------------------------------------------------------


@strawberry.enum(description="What a merge does with keys the parents changed differently.")
class MergeResolution(Enum):
    REFUSE = strawberry.enum_value(
        "REFUSE", description="Refuse the merge and report the conflicts; nothing changes.")
    PARENT_PRIORITY = strawberry.enum_value(
        "PARENT_PRIORITY",
        description="Take the first listed parent's value for every conflicting key.")


@strawberry.type(description="A key the merge parents changed differently.")
class MergeConflictEntry:
    instance: str = strawberry.field(description="Data instance of the key.")
    key: str = strawberry.field(description="The key, in readable form.")


@strawberry.type(description="The outcome of a merge: a new version, or the conflicts that "
                             "refused it.")
class MergeResult:
    merged: bool = strawberry.field(description="True when the merge version was created.")
    child: Version | None = strawberry.field(
        description="The merge version, child of all parents; null when refused.")
    conflicts: list[MergeConflictEntry] = strawberry.field(
        description="Conflicting keys: resolved ones with PARENT_PRIORITY, refusing ones with "
                    "REFUSE.")

    @classmethod
    def build(cls, doc: dag.Repo, result: ServiceMergeResult) -> MergeResult:
        child = None if result.child is None else Version(doc=doc,
                                                          node=doc.nodes[result.child.version_id])
        return cls(merged=child is not None, child=child,
                   conflicts=[MergeConflictEntry(instance=c["instance"], key=c["key"])
                              for c in result.conflicts])


# ----- segmentation --------------------------------------------------------------------------

Point3 = Annotated[list[int], arg("A voxel [x, y, z].")]
BodyId = Annotated[UInt64, arg("Body id.", name="id")]
SupervoxelId = Annotated[UInt64, arg("Supervoxel id.", name="id")]
LOG_START = UInt64(0)


@strawberry.type(description="A segmentation (labelmap) volume as one version sees it: "
                             "supervoxel ids in blocks. Voxels come from the REST URLs these "
                             "fields return; labels at points come back here.")
class Segmentation(_Volume):
    @strawberry.field(description="The lowest resolution kept: scales 0 to this one.")
    def max_downres_level(self) -> int:
        return self.handle.instance.settings["MaxDownresLevel"]  # type: ignore[no-any-return]

    @strawberry.field(description="The label at a voxel; 0 where nothing was written.")
    async def label(self, point: Point3) -> UInt64:
        return UInt64(await seg_resolvers.label_at(self.handle, point))

    @strawberry.field(description="The labels at many voxels, in order (up to 100,000 "
                                  "points; more go to the REST labels endpoint).")
    async def labels(self, points: Annotated[list[list[int]], arg(
            "Voxels [[x, y, z], ...].")]) -> list[UInt64]:
        return [UInt64(v) for v in await seg_resolvers.labels_at(self.handle, points)]

    @strawberry.field(description="REST URL returning a box of labels: packed uint64 "
                                  "little-endian (x fastest, then y, then z), or compressed.")
    def subvolume_url(self, info: Info[Context, None], offset: Offset,
                      size: Annotated[list[int], arg("Voxels along [x, y, z].")],
                      compression: Annotated[str | None, arg(
                          "lz4, gzip, google or googlegzip (neuroglancer's "
                          "compressed_segmentation); none for packed voxels.")] = None) -> str:
        return seg_resolvers.subvolume_url(info.context, self.handle, offset, size, compression)

    @strawberry.field(description="The largest label at this version (children never report "
                                  "less).")
    async def max_label(self) -> UInt64:
        return UInt64(await body_resolvers.max_label(self.handle))

    @strawberry.field(description="The label a cleave would give its new body next (labels "
                                  "are never handed out twice, on any branch).")
    async def next_label(self) -> UInt64:
        return UInt64(await body_resolvers.next_label(self.handle))

    @strawberry.field(description="A body by id, or null if it has no voxels at this version "
                                  "(never written, merged or renumbered away). Bodies asked "
                                  "for together in one query are read in one batch.")
    async def body(self, info: Info[Context, None], id_: BodyId) -> Body | None:
        return await Body.load(info, self.handle, id_)

    @strawberry.field(description="Bodies by id, in the order given (up to 10,000), null "
                                  "where a body has no voxels; read in one batch.")
    async def bodies(self, info: Info[Context, None],
                     ids: Annotated[list[UInt64], arg("Body ids.")]) -> list[Body | None]:
        return await Body.load_many(info, self.handle, ids)

    @strawberry.field(description="A supervoxel by id, or null if it has no voxels at this "
                                  "version.")
    async def supervoxel(self, info: Info[Context, None],
                         id_: SupervoxelId) -> Supervoxel | None:
        index = await body_resolvers.index_of_supervoxel(info.context, self.handle, id_)
        return None if index is None else Supervoxel(handle=self.handle, index=index)

    @strawberry.field(description="This instance's mutation log as this version sees it "
                                  "(records made here or at an ancestor), oldest first.")
    async def mutations(
        self,
        since: Annotated[UInt64, arg("Only records with a larger mutation id; page on with the "
                                     "last mutationId seen.")] = LOG_START,
        limit: Annotated[int, arg("At most this many records (1 to 10,000).")] = 1000,
    ) -> list[MutationRecord]:
        return [MutationRecord.of(r)
                for r in await body_resolvers.mutations(self.handle, since, limit)]


@strawberry.type(description="Who changed a body last, and when.")
class LastModification:
    mutation_id: UInt64 = strawberry.field(description="Id of the mutation in the repo's log.")
    user: str = strawberry.field(description="User named by the mutation; empty if none.")
    time: str = strawberry.field(description="When the mutation was made (RFC 3339).")
    app: str = strawberry.field(description="Application named by the mutation; empty if "
                                            "none.")


@strawberry.type(description="A supervoxel of a body and its voxel count.")
class SupervoxelSize:
    id: UInt64 = strawberry.field(description="Supervoxel id.")
    voxel_count: UInt64 = strawberry.field(description="Voxels of the supervoxel.")


@strawberry.type(description="What bodies and supervoxels share: sizes and bounds from a "
                             "label index (not itself in the schema).")
class _Indexed:
    handle: strawberry.Private[DataHandle]
    index: strawberry.Private[LabelIndex]

    @strawberry.field(description="The label: the body's or supervoxel's id.")
    def id(self) -> UInt64:
        return UInt64(self.index.label)

    @strawberry.field(description="Number of voxels.")
    def voxel_count(self) -> UInt64:
        return UInt64(self.index.num_voxels)

    @strawberry.field(description="Number of blocks holding its voxels.")
    def block_count(self) -> int:
        return body_resolvers.block_count(self.index)

    @strawberry.field(description="First and last voxel of the blocks holding its voxels "
                                  "(bounds accurate to blocks, not voxels).")
    def bounding_box(self) -> Extents:
        lo, hi = body_resolvers.bounding_box(self.handle, self.index)
        return Extents(min_point=lo, max_point=hi)


@strawberry.type(description="A body (neuron or fragment) as one version sees it: its "
                             "supervoxels and their voxels, from its label index.")
class Body(_Indexed):
    @classmethod
    def of(cls, handle: DataHandle, index: LabelIndex | None) -> Body | None:
        return None if index is None else cls(handle=handle, index=index)

    @classmethod
    async def load(cls, info: Info[Context, None], handle: DataHandle, label: int
                   ) -> Body | None:
        """The body ``label`` through the request's loaders, so that bodies asked for
        anywhere in one query are read in one batch."""
        return cls.of(handle, await body_resolvers.index_of_body(info.context, handle, label))

    @classmethod
    async def load_many(cls, info: Info[Context, None], handle: DataHandle,
                        labels: list[UInt64]) -> list[Body | None]:
        """Bodies in the order given, null where missing, in the same batch as ``load``."""
        found = await body_resolvers.indices_of_bodies(info.context, handle, labels)
        return [cls.of(handle, index) for index in found]

    @classmethod
    async def owning(cls, info: Info[Context, None], handle: DataHandle, supervoxel: int
                     ) -> Body | None:
        """The body a supervoxel belongs to at the handle's version."""
        owner = await body_resolvers.body_of_supervoxel(info.context, handle, supervoxel)
        return await cls.load(info, handle, owner)

    @strawberry.field(description="Its supervoxels, in increasing order.")
    def supervoxels(self) -> list[UInt64]:
        return [UInt64(v) for v in self.index.supervoxels().tolist()]

    @strawberry.field(description="Its supervoxels in increasing order, each with its voxel "
                                  "count.")
    def supervoxel_sizes(self) -> list[SupervoxelSize]:
        ids, counts = self.index.supervoxel_sizes()
        return [SupervoxelSize(id=UInt64(i), voxel_count=UInt64(n))
                for i, n in zip(ids.tolist(), counts.tolist(), strict=True)]

    @strawberry.field(description="Its synapses (or other elements) in an annotation "
                                  "instance that follows this segmentation (REST POST sync).")
    async def synapses(
        self,
        annotations: Annotated[str, arg("Name of the annotation instance.")],
        kind: Annotated[str | None, arg("Only elements of this Kind (PreSyn, PostSyn...); "
                                        "all if omitted.")] = None,
        relationships: Annotated[bool, arg("Include the elements' relationships.")] = False,
    ) -> list[AnnotationElement]:
        return _elements(await annotation_resolvers.body_synapses(
            self.handle, annotations, self.index.label, kind, relationships))

    @strawberry.field(description="The bodies it connects to by synapses in an annotation "
                                  "instance that follows this segmentation, most connected "
                                  "first: connections from its T-bars (PreSynTo) and to its "
                                  "PostSyn elements (PostSynTo).")
    async def partners(
        self,
        annotations: Annotated[str, arg("Name of the annotation instance.")],
    ) -> list[SynapsePartner]:
        found = await annotation_resolvers.body_partners(self.handle, annotations,
                                                         self.index.label)
        return [SynapsePartner(body=UInt64(b), outgoing=o, incoming=i) for b, o, i in found]

    @strawberry.field(description="The last mutation that changed it; null if none is "
                                  "recorded.")
    async def last_modified(self, info: Info[Context, None]) -> LastModification | None:
        found = await body_resolvers.last_modified(info.context, self.handle, self.index.label)
        if found is None:
            return None
        return LastModification(mutation_id=UInt64(found["mutation id"]),
                                user=found["last mod user"], time=found["last mod time"],
                                app=found["last mod app"])


@strawberry.type(description="A supervoxel as one version sees it: its voxels, from the "
                             "label index of its body.")
class Supervoxel(_Indexed):
    @strawberry.field(description="The body it belongs to at this version.")
    async def body(self, info: Info[Context, None]) -> Body | None:
        return await Body.owning(info, self.handle, self.index.label)


@strawberry.type(description="One record of the mutation log.")
class MutationRecord:
    mutation_id: UInt64 = strawberry.field(description="Id of the mutation (repo-wide, "
                                                       "increasing).")
    action: str = strawberry.field(description="What was done: merge, cleave, renumber, "
                                               "post-blocks...")
    user: str = strawberry.field(description="User named by the mutation; empty if none.")
    app: str = strawberry.field(description="Application named by the mutation; empty if "
                                            "none.")
    timestamp: str = strawberry.field(description="When it was made (RFC 3339).")
    version: str = strawberry.field(description="UUID of the version it was made at.")
    record: JSON = strawberry.field(description="The whole record, as DVID's mutation log "
                                                "and Kafka messages have it (Target, Labels, "
                                                "CleavedLabel...).")

    @classmethod
    def of(cls, record: dict[str, Any]) -> MutationRecord:
        return cls(mutation_id=UInt64(record["MutationID"]), action=record.get("Action", ""),
                   user=record.get("User", ""), app=record.get("App", ""),
                   timestamp=record.get("Timestamp", ""), version=record.get("UUID", ""),
                   record=record)


# ----- proofreading edits --------------------------------------------------------------------


@strawberry.input(description="A body's new id and its current one.")
class RenumberPair:
    new_label: UInt64 = strawberry.field(description="The new id (not a body already).")
    old_label: UInt64 = strawberry.field(description="The body's current id.")


@strawberry.type(description="What an edit of bodies shares (not itself in the schema).")
class _BodyEdit:
    handle: strawberry.Private[DataHandle]
    mutation_id: UInt64 = strawberry.field(description="Id of the mutation in the repo's log.")


@strawberry.input(description="A run of voxels along x: 'length' voxels from [x, y, z] to "
                              "[x + length - 1, y, z]. A list of them is the sparse volume "
                              "DVID's rles format carries.")
class SplitRun:
    x: int = strawberry.field(description="x of the run's first voxel.")
    y: int = strawberry.field(description="y of the run's voxels.")
    z: int = strawberry.field(description="z of the run's voxels.")
    length: int = strawberry.field(description="Voxels in the run (at least 1).")


@strawberry.type(description="The outcome of a merge of bodies.")
class MergeBodiesResult(_BodyEdit):
    target: UInt64 = strawberry.field(description="The body the others were merged into.")
    merged: list[UInt64] = strawberry.field(description="The bodies merged into it (now "
                                                        "gone).")

    @strawberry.field(description="The target body after the merge.")
    async def body(self, info: Info[Context, None]) -> Body | None:
        return await Body.load(info, self.handle, self.target)


@strawberry.type(description="The outcome of a cleave: some supervoxels of a body moved to a "
                             "new body.")
class CleaveBodyResult(_BodyEdit):
    original: UInt64 = strawberry.field(description="The body cleaved.")
    cleaved_label: UInt64 = strawberry.field(description="Id of the new body holding the "
                                                         "cleaved supervoxels.")

    @strawberry.field(description="The new body.")
    async def cleaved_body(self, info: Info[Context, None]) -> Body | None:
        return await Body.load(info, self.handle, self.cleaved_label)

    @strawberry.field(description="What is left of the cleaved body.")
    async def remaining_body(self, info: Info[Context, None]) -> Body | None:
        return await Body.load(info, self.handle, self.original)


@strawberry.type(description="The outcome of a renumbering of bodies.")
class RenumberBodiesResult(_BodyEdit):
    new_labels: list[UInt64] = strawberry.field(description="The new ids, in the order given.")

    @strawberry.field(description="The bodies at their new ids, in the order given.")
    async def bodies(self, info: Info[Context, None]) -> list[Body | None]:
        return await Body.load_many(info, self.handle, self.new_labels)


@strawberry.type(description="The outcome of a split of a supervoxel: its voxels in the runs "
                             "became one new supervoxel, the rest another, both in its body; "
                             "its own id now maps to no body.")
class SplitSupervoxelResult(_BodyEdit):
    supervoxel: UInt64 = strawberry.field(description="The supervoxel split (its id is "
                                                      "retired).")
    split_supervoxel: UInt64 = strawberry.field(description="Id of the new supervoxel holding "
                                                            "the voxels of the runs.")
    remain_supervoxel: UInt64 | None = strawberry.field(
        description="Id of the new supervoxel holding the voxels outside the runs; null when "
                    "the runs held all of the supervoxel (DVID's 0).")

    @strawberry.field(description="The body holding both parts, after the split.")
    async def body(self, info: Info[Context, None]) -> Body | None:
        return await Body.owning(info, self.handle, self.split_supervoxel)
