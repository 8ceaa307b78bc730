"""The demo repo: a few versions and branches, a merge, keyvalue data, a synthetic EM
grayscale volume with its pyramid, its segmentation and synapses between its bodies, to
explore with any client or neuroglancer.

The segmentation is an oversegmentation agglomerated by merges, as proofreading data is:
two supervoxels per cell (:func:`dvidql.synthetic.split_cells`), merged into one body per
cell except in every ``SPLIT_EVERY``-th cell, whose two halves stay separate bodies (false
splits to merge). Later datatypes add their demo data here."""

from __future__ import annotations

import numpy as np
import orjson

from dvidql.codec.annotation import Element, parse_element
from dvidql.config import Settings
from dvidql.datatypes.annotation import ops as annotation_ops
from dvidql.datatypes.base import ModInfo
from dvidql.datatypes.imageblk import ops as gray_ops
from dvidql.datatypes.keyvalue import ops as kv_ops
from dvidql.datatypes.labelmap import edits
from dvidql.datatypes.labelmap import ops as label_ops
from dvidql.datatypes.voxels import Box
from dvidql.service import Caller, Service
from dvidql.synthetic import em_volume, split_cells

__all__ = ["DEMO_ALIAS", "GRAYSCALE", "SEGMENTATION", "SPLIT_EVERY", "SYNAPSES", "VOLUME_SIZE",
           "demo_bodies", "demo_synapses", "populate"]

DEMO_ALIAS = "demo"
GRAYSCALE = "grayscale"
SEGMENTATION = "segmentation"
SYNAPSES = "synapses"
SYNAPSE_COUNTS = "synapse-counts"
SYNAPSE_COUNT = 400  # T-bars, each with one or two partners
SPLIT_EVERY = 5  # cells 5, 10, 15... keep their two supervoxels as two bodies
VOLUME_SIZE = 256
ADMIN = Caller(admin=True)
DEMO_MOD = ModInfo(user="demo", app="dvidql demo")


def demo_bodies(cells: np.ndarray) -> np.ndarray:
    """The bodies the demo segmentation holds for cell labels: cell ``c``'s body is ``2c - 1``
    (its first supervoxel), or its supervoxels themselves in the cells left split."""
    svs = split_cells(cells)
    merged = (cells % SPLIT_EVERY != 0) & (cells != 0)
    return np.where(merged, 2 * cells.astype(np.uint64) - 1, svs)


async def populate(settings: Settings) -> str:
    """Create the demo repo unless the store already has one; returns what happened."""
    service = await Service.open(settings)
    try:
        for repo in service.repos.repos.values():
            if repo.alias == DEMO_ALIAS:
                return f"demo repo already present: {repo.root}"
        root = await _build(service)
        return f"created demo repo {root} in the {settings.describe_store()}"
    finally:
        await service.close()


async def _build(service: Service) -> str:
    repos = service.repos
    repo = await service.create_repo(
        ADMIN, alias=DEMO_ALIAS, description="dvidql demo: versions, branches and a merge")
    root = repo.nodes[repo.root_version]
    await service.create_instance(ADMIN, repo, root, {"typename": "keyvalue",
                                                      "dataname": "annotations"})
    await service.create_instance(ADMIN, repo, root, {"typename": "keyvalue",
                                                      "dataname": "settings",
                                                      "versioned": "false"})

    async def put(ref: str, name: str, values: dict[str, object]) -> None:
        handle = service.handle(ref, name, ADMIN, write=True)
        await kv_ops.put_many(handle, [(k, orjson.dumps(v)) for k, v in values.items()])

    await put(root.uuid, "annotations", {
        "body-1001": {"status": "traced", "type": "KC"},
        "body-1002": {"status": "orphan"},
        "body-1003": {"status": "traced", "type": "MBON01"},
    })
    await put(root.uuid, "settings", {"viewer": {"layout": "4panel"}})
    gray, cells = em_volume(VOLUME_SIZE)
    await _grayscale(service, repo.root, gray)
    await _segmentation(service, repo.root, cells)
    await _synapses(service, repo.root, cells)
    await service.commit(ADMIN, repo, root, note="initial agglomeration")

    repo = repos.repos[repo.repo_id]
    v2 = await service.new_version(ADMIN, repo, repo.nodes[root.version_id],
                                   note="proofreading day 1")
    await put(v2.uuid, "annotations", {"body-1002": {"status": "traced", "type": "PN"}})
    await service.commit(ADMIN, repos.repos[repo.repo_id], v2, note="day 1 done")

    repo = repos.repos[repo.repo_id]
    review = await service.branch(ADMIN, repo, repo.nodes[root.version_id], "review",
                                  note="expert review of KC bodies")
    await put(review.uuid, "annotations", {"body-1001": {"status": "traced", "type": "KCab"}})
    await service.commit(ADMIN, repos.repos[repo.repo_id], review, note="review done")

    repo = repos.repos[repo.repo_id]
    result = await service.merge(ADMIN, repo, [repo.nodes[v2.version_id],
                                               repo.nodes[review.version_id]],
                                 note="merge review into master")
    if result.child is None:
        raise RuntimeError(f"demo merge unexpectedly conflicted: {result.conflicts}")
    await put(result.child.uuid, "annotations", {"body-1004": {"status": "new"}})
    return repo.root


async def _grayscale(service: Service, root: str, gray: np.ndarray) -> None:
    """Synthetic tissue at the root version, JPEG in 64^3 blocks as neuroglancer reads it,
    with its pyramid levels."""
    repo, node = service.repos.resolve(root)
    await service.create_instance(ADMIN, repo, node, {
        "typename": "uint8blk", "dataname": GRAYSCALE, "BlockSize": "64,64,64",
        "VoxelSize": "8,8,8", "Compression": "jpeg:90"})
    handle = service.handle(root, GRAYSCALE, ADMIN, write=True)
    await gray_ops.write_box(handle, Box((0, 0, 0), gray.shape[::-1]), gray)
    await service.build_pyramid(ADMIN, service.handle(root, GRAYSCALE, ADMIN, write=True))


async def _segmentation(service: Service, root: str, cells: np.ndarray) -> None:
    """The grayscale's cells at the root version as supervoxels in 64^3 blocks (neuroglancer's
    block size) with two lower scales, agglomerated into bodies by merges."""
    repo, node = service.repos.resolve(root)
    await service.create_instance(ADMIN, repo, node, {
        "typename": "labelmap", "dataname": SEGMENTATION, "BlockSize": "64,64,64",
        "VoxelSize": "8,8,8", "MaxDownresLevel": "2", "Compression": "lz4"})
    svs = split_cells(cells)
    handle = service.handle(root, SEGMENTATION, ADMIN, write=True)
    await label_ops.write_label_box(handle, Box((0, 0, 0), svs.shape[::-1]), svs, DEMO_MOD)
    present = set(np.unique(svs).tolist())
    for cell in range(1, int(cells.max()) + 1):
        halves = [2 * cell - 1, 2 * cell]
        if cell % SPLIT_EVERY and all(h in present for h in halves):
            await edits.merge(handle, halves, DEMO_MOD)


def demo_synapses(cells: np.ndarray, count: int = SYNAPSE_COUNT, seed: int = 1
                  ) -> list[Element]:
    """Synapses across cell boundaries: a PreSyn just inside one cell where the next voxel
    along x belongs to another, with PreSynTo relationships to one or two PostSyn partners
    in that other cell (the voxel across the boundary, and the one below it when it is in
    the same cell), each pointing back with PostSynTo. Deterministic for a seed."""
    z, y, x = np.nonzero((cells[:, :-1, :-1] != cells[:, :-1, 1:]) & (cells[:, :-1, :-1] != 0)
                         & (cells[:, :-1, 1:] != 0))
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(z), min(count, len(z)), replace=False)
    taken: set[tuple[int, int, int]] = set()
    elements = []
    for k in sorted(chosen.tolist()):
        pre = (int(x[k]), int(y[k]), int(z[k]))
        partner_cell = cells[pre[2], pre[1], pre[0] + 1]
        posts = [p for p in ((pre[0] + 1, pre[1], pre[2]), (pre[0] + 1, pre[1] + 1, pre[2]))
                 if cells[p[2], p[1], p[0]] == partner_cell]
        if taken.intersection([pre, *posts]):
            continue
        taken.update([pre, *posts])
        elements.append({"Pos": list(pre), "Kind": "PreSyn", "Tags": ["demo"],
                         "Prop": {"conf": f"{rng.uniform(0.5, 1):.2f}"},
                         "Rels": [{"Rel": "PreSynTo", "To": list(p)} for p in posts]})
        elements.extend({"Pos": list(p), "Kind": "PostSyn", "Tags": ["demo"], "Prop": {},
                         "Rels": [{"Rel": "PostSynTo", "To": list(pre)}]} for p in posts)
    return [parse_element(e) for e in elements]


async def _synapses(service: Service, root: str, cells: np.ndarray) -> None:
    """:func:`demo_synapses` in an annotation instance at the root version, in the
    segmentation's 64^3 blocks and following it, ranked by a labelsz instance."""
    repo, node = service.repos.resolve(root)
    await service.create_instance(ADMIN, repo, node, {
        "typename": "annotation", "dataname": SYNAPSES, "BlockSize": "64,64,64"})
    handle = service.handle(root, SYNAPSES, ADMIN, write=True)
    await annotation_ops.post_elements(handle, demo_synapses(cells), DEMO_MOD)
    # bodies' synapses, partners and rankings follow the segmentation
    await service.set_instance_settings(ADMIN, repo, SYNAPSES, {"Sync": SEGMENTATION})
    await service.create_instance(ADMIN, service.repos.repos[repo.repo_id], node, {
        "typename": "labelsz", "dataname": SYNAPSE_COUNTS})
    await service.set_instance_settings(ADMIN, service.repos.repos[repo.repo_id],
                                        SYNAPSE_COUNTS, {"Sync": SYNAPSES})
