"""Mutation root. Each field goes through the Service, so read-only mode, the admin token
and version locks apply exactly as over REST."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from dvidql.resolvers import annotations as annotation_resolvers
from dvidql.resolvers import bodies as body_resolvers
from dvidql.resolvers import instances as instance_resolvers
from dvidql.resolvers import keyvalue as kv_resolvers
from dvidql.resolvers import repos as repo_resolvers
from dvidql.schema.args import arg
from dvidql.schema.context import Context
from dvidql.schema.scalars import JSON, Base64, UInt64
from dvidql.schema.types import (
    AnnotationMutationResult,
    CleaveBodyResult,
    DataInstance,
    ElementInput,
    KeyMutationResult,
    MergeBodiesResult,
    MergeResolution,
    MergeResult,
    RenumberBodiesResult,
    RenumberPair,
    Repo,
    SplitRun,
    SplitSupervoxelResult,
    Version,
)

__all__ = ["Mutation"]

Ctx = Info[Context, None]
Ref = Annotated[str, arg("Reference to the version (UUID or prefix, 'uuid:branch'...).")]
NEW_UUID = "UUID for the new version (32 hex digits); a random one if omitted."
LabelmapName = Annotated[str, arg("Name of a labelmap instance.")]
AnnotationName = Annotated[str, arg("Name of an annotation instance.")]
User = Annotated[str, arg("Who asks for the edit (DVID's u=), kept in the log and lastmod.")]
App = Annotated[str, arg("The application asking (DVID's app=), kept in the log and lastmod.")]


@strawberry.type(description="Writes: repos, instances, versions, keyvalue data, edits "
                             "of segmentation bodies and annotation elements.")
class Mutation:
    @strawberry.mutation(description="Create a repo with an uncommitted root version. Needs "
                                     "the admin token when the server has one.")
    async def create_repo(
        self,
        info: Ctx,
        alias: Annotated[str, arg("Short name of the repo.")] = "",
        description: Annotated[str, arg("Description of the repo.")] = "",
        root_uuid: Annotated[str | None, arg("UUID for the root version (32 hex digits); "
                                             "random if omitted.", name="root")] = None,
    ) -> Repo:
        return Repo(doc=await repo_resolvers.create_repo(info.context, alias, description,
                                                         root_uuid))

    @strawberry.mutation(description="Create a data instance at an uncommitted version of a "
                                     "repo.")
    async def create_instance(
        self,
        info: Ctx,
        repo: Annotated[str, arg("Reference to an uncommitted version of the repo.")],
        type_name: Annotated[str, arg("Datatype, e.g. 'keyvalue'.")],
        name: Annotated[str, arg("Instance name, unique in the repo.")],
        versioned: Annotated[bool, arg("False keeps one copy of the data for all "
                                       "versions.")] = True,
        settings: Annotated[JSON | None, arg("DVID creation settings as a JSON object, e.g. "
                                             "{\"Compression\": \"none\", \"Tags\": "
                                             "\"k=v\"}.")] = None,
    ) -> DataInstance:
        doc, instance = await instance_resolvers.create_instance(
            info.context, repo, type_name, name, versioned, settings)
        return DataInstance(doc=doc, model=instance)

    @strawberry.mutation(description="Commit (lock) a version: its data becomes read-only.")
    async def commit(
        self,
        info: Ctx,
        version: Ref,
        note: Annotated[str | None, arg("New note for the version; unchanged if "
                                        "omitted.")] = None,
        log: Annotated[list[str] | None, arg("Messages appended to the version's "
                                             "log.")] = None,
    ) -> Version:
        return Version.of(await repo_resolvers.commit(info.context, version, note, log))

    @strawberry.mutation(description="Create a child version of a committed version on the "
                                     "same branch.")
    async def new_version(
        self,
        info: Ctx,
        parent: Ref,
        note: Annotated[str, arg("Note for the new version.")] = "",
        uuid: Annotated[str | None, arg(NEW_UUID)] = None,
    ) -> Version:
        return Version.of(await repo_resolvers.new_version(info.context, parent, note, uuid))

    @strawberry.mutation(description="Start a new branch: a child version of a committed "
                                     "version.")
    async def branch(
        self,
        info: Ctx,
        parent: Ref,
        name: Annotated[str, arg("Name of the new branch, unused in the repo.")],
        note: Annotated[str, arg("Note for the new version.")] = "",
        uuid: Annotated[str | None, arg(NEW_UUID)] = None,
    ) -> Version:
        return Version.of(await repo_resolvers.branch(info.context, parent, name, note, uuid))

    @strawberry.mutation(description="Tag a committed version: a committed child whose UUID "
                                     "is the tag, on branch 'tag-<tag>'.")
    async def tag(
        self,
        info: Ctx,
        version: Ref,
        tag: Annotated[str, arg("The tag, usable wherever a UUID is.")],
        note: Annotated[str, arg("Note for the tag version.")] = "",
    ) -> Version:
        return Version.of(await repo_resolvers.tag(info.context, version, tag, note))

    @strawberry.mutation(description="Merge committed versions of one repo into a new child "
                                     "of all of them. A refused merge is not an error: it "
                                     "returns merged=false and the conflicts.")
    async def merge_versions(
        self,
        info: Ctx,
        parents: Annotated[list[str], arg("The versions to merge (at least two), first "
                                          "parent first.")],
        note: Annotated[str | None, arg("Note for the merge version.")] = None,
        resolution: Annotated[MergeResolution, arg("What to do with conflicting "
                                                   "keys.")] = MergeResolution.REFUSE,
    ) -> MergeResult:
        doc, result = await repo_resolvers.merge(
            info.context, parents, note or "", resolution is MergeResolution.PARENT_PRIORITY)
        return MergeResult.build(doc, result)

    @strawberry.mutation(description="Store a keyvalue value, given as base64 'value' or as "
                                     "UTF-8 'text' (exactly one).")
    async def put_key(
        self,
        info: Ctx,
        version: Ref,
        instance: Annotated[str, arg("Name of a keyvalue instance.")],
        key: Annotated[str, arg("The key.")],
        value: Annotated[Base64 | None, arg("The value as base64.")] = None,
        text: Annotated[str | None, arg("The value as text, stored as UTF-8.")] = None,
    ) -> KeyMutationResult:
        mutation_id = await kv_resolvers.put(info.context, version, instance, key, value, text)
        return KeyMutationResult(mutation_id=UInt64(mutation_id), instance=instance, key=key)

    @strawberry.mutation(description="Delete a keyvalue key at a version (its ancestors keep "
                                     "their value).")
    async def delete_key(
        self,
        info: Ctx,
        version: Ref,
        instance: Annotated[str, arg("Name of a keyvalue instance.")],
        key: Annotated[str, arg("The key.")],
    ) -> KeyMutationResult:
        mutation_id = await kv_resolvers.delete(info.context, version, instance, key)
        return KeyMutationResult(mutation_id=UInt64(mutation_id), instance=instance, key=key)

    @strawberry.mutation(description="Replace the note of an uncommitted version.")
    async def set_note(
        self,
        info: Ctx,
        version: Ref,
        note: Annotated[str, arg("The new note.")],
    ) -> Version:
        return Version.of(await repo_resolvers.set_note(info.context, version, note))

    @strawberry.mutation(description="Append messages to the log of an uncommitted version.")
    async def append_log(
        self,
        info: Ctx,
        version: Ref,
        messages: Annotated[list[str], arg("Messages to append, in order.")],
    ) -> Version:
        return Version.of(await repo_resolvers.append_log(info.context, version, messages))

    @strawberry.mutation(description="Merge bodies into a target body: their supervoxels map "
                                     "to it. Refused, changing nothing, if a body is missing.")
    async def merge_bodies(
        self,
        info: Ctx,
        version: Ref,
        instance: LabelmapName,
        target: Annotated[UInt64, arg("The body that remains.")],
        merged: Annotated[list[UInt64], arg("The bodies merged into it.")],
        user: User = "",
        app: App = "",
    ) -> MergeBodiesResult:
        handle, mutation_id = await body_resolvers.merge(info.context, version, instance,
                                                         target, merged, user, app)
        return MergeBodiesResult(handle=handle, mutation_id=UInt64(mutation_id),
                                 target=target, merged=list(dict.fromkeys(merged)))

    @strawberry.mutation(description="Move some supervoxels of a body into a new body. "
                                     "Refused, changing nothing, unless they are all in the "
                                     "body and some stay behind.")
    async def cleave_body(
        self,
        info: Ctx,
        version: Ref,
        instance: LabelmapName,
        body: Annotated[UInt64, arg("The body to cleave.")],
        supervoxels: Annotated[list[UInt64], arg("Its supervoxels that go to the new body.")],
        user: User = "",
        app: App = "",
    ) -> CleaveBodyResult:
        handle, new, mutation_id = await body_resolvers.cleave(
            info.context, version, instance, body, supervoxels, user, app)
        return CleaveBodyResult(handle=handle, mutation_id=UInt64(mutation_id), original=body,
                                cleaved_label=UInt64(new))

    @strawberry.mutation(description="Give bodies new ids, all in one mutation. Refused, "
                                     "changing nothing, if a body is missing or a new id is a "
                                     "body already.")
    async def renumber_bodies(
        self,
        info: Ctx,
        version: Ref,
        instance: LabelmapName,
        pairs: Annotated[list[RenumberPair], arg("Each body's new and current id.")],
        user: User = "",
        app: App = "",
    ) -> RenumberBodiesResult:
        handle, mutation_id = await body_resolvers.renumber(
            info.context, version, instance, [(p.new_label, p.old_label) for p in pairs],
            user, app)
        return RenumberBodiesResult(handle=handle, mutation_id=UInt64(mutation_id),
                                    new_labels=[p.new_label for p in pairs])

    @strawberry.mutation(description="Split some voxels off a supervoxel: those in the given "
                                     "runs become a new supervoxel, the rest another, both in "
                                     "the same body, and the old id maps to no body. Refused, "
                                     "changing nothing, unless every voxel of the runs belongs "
                                     "to the supervoxel, or if a chosen id is in use. "
                                     "Servers with allow_labelmap_split=false refuse it "
                                     "(FORBIDDEN).")
    async def split_supervoxel(
        self,
        info: Ctx,
        version: Ref,
        instance: LabelmapName,
        supervoxel: Annotated[UInt64, arg("The supervoxel to split.")],
        runs: Annotated[list[SplitRun] | None, arg(
            "The voxels to split off as runs along x (up to 100,000). Give these or "
            "'rles', not both.")] = None,
        rles: Annotated[Base64 | None, arg(
            "The voxels to split off as DVID's binary rles sparse volume (the body of REST's "
            "POST split-supervoxel: a 12-byte header, then int32 x, y, z, length per run, "
            "little-endian), base64. Give this or 'runs', not both.")] = None,
        split_supervoxel: Annotated[UInt64 | None, arg(
            "Id for the part in the runs (DVID's split=); allocated if omitted.")] = None,
        remain_supervoxel: Annotated[UInt64 | None, arg(
            "Id for the part outside the runs (DVID's remain=); allocated if omitted, none "
            "if nothing remains.")
        ] = None,
        downres: Annotated[bool, arg(
            "False leaves the lower scales as they are, for clients that post them "
            "themselves.")] = True,
        user: User = "",
        app: App = "",
    ) -> SplitSupervoxelResult:
        handle, split, remain, mutation_id = await body_resolvers.split_supervoxel(
            info.context, version, instance, supervoxel,
            None if runs is None else [(r.x, r.y, r.z, r.length) for r in runs], rles,
            split_supervoxel or 0, remain_supervoxel or 0, downres, user, app)
        return SplitSupervoxelResult(handle=handle, mutation_id=UInt64(mutation_id),
                                     supervoxel=supervoxel, split_supervoxel=UInt64(split),
                                     remain_supervoxel=UInt64(remain) if remain else None)

    @strawberry.mutation(description="Add annotation elements, replacing those at the same "
                                     "positions. All are validated first: a bad one refuses "
                                     "the whole post, changing nothing.")
    async def post_elements(
        self,
        info: Ctx,
        version: Ref,
        instance: AnnotationName,
        elements: Annotated[list[ElementInput], arg("The elements.")],
        user: User = "",
        app: App = "",
    ) -> AnnotationMutationResult:
        mutation_id = await annotation_resolvers.post(
            info.context, version, instance, [e.as_json() for e in elements], user, app)
        return AnnotationMutationResult(mutation_id=UInt64(mutation_id), instance=instance)

    @strawberry.mutation(description="Delete the annotation element at a position; the "
                                     "relationships other elements hold to it go too. NOT_FOUND "
                                     "if there is none.")
    async def delete_element(
        self,
        info: Ctx,
        version: Ref,
        instance: AnnotationName,
        pos: Annotated[list[int], arg("Its position [x, y, z].")],
        user: User = "",
        app: App = "",
    ) -> AnnotationMutationResult:
        mutation_id = await annotation_resolvers.delete(info.context, version, instance, pos,
                                                        user, app)
        return AnnotationMutationResult(mutation_id=UInt64(mutation_id), instance=instance)

    @strawberry.mutation(description="Move the annotation element at one position to another; "
                                     "the relationships other elements hold to it follow. "
                                     "NOT_FOUND if there is none.")
    async def move_element(
        self,
        info: Ctx,
        version: Ref,
        instance: AnnotationName,
        from_pos: Annotated[list[int], arg("Its position [x, y, z].", name="from")],
        to_pos: Annotated[list[int], arg("Its new position [x, y, z].", name="to")],
        user: User = "",
        app: App = "",
    ) -> AnnotationMutationResult:
        mutation_id = await annotation_resolvers.move(info.context, version, instance,
                                                      from_pos, to_pos, user, app)
        return AnnotationMutationResult(mutation_id=UInt64(mutation_id), instance=instance)
