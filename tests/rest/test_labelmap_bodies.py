"""labelmap bodies over HTTP against a numpy ground truth: label indices kept by ingest and
overwrites, then merges, cleaves and renumbers, after each of which voxels (mapped and as
supervoxels), sizes, supervoxel lists, sparse volumes, mappings and listings agree with the
model; edits on a branch stay off its parent; bad edits are refused and change nothing."""

from __future__ import annotations

import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from dvidql.codec.labelindex import (
    LabelIndex,
    decode_label_index,
    decode_label_indices,
    encode_label_indices,
    encode_mapping_ops,
)
from dvidql.codec.sparsevol import decode_blocks, decode_rles, decode_srles, encode_rles, mask_runs
from tests.fly_samples import SHAPE, two_samples
from tests.rest.conftest import child
from tests.rest.test_bad_input import assert_error

BLOCK = 32


class Model:
    """Supervoxel voxels and the supervoxel -> body mapping a client expects."""

    def __init__(self, supervoxels: np.ndarray) -> None:
        self.svs = supervoxels.copy()
        self.mapping: dict[int, int] = {}

    def body_of(self, sv: int) -> int:
        return self.mapping.get(sv, sv)

    def bodies(self, svs: np.ndarray | None = None) -> np.ndarray:
        """Bodies of the model's supervoxels (or of ``svs``, such as a lower scale of them)."""
        svs = self.svs if svs is None else svs
        unique, inverse = np.unique(svs, return_inverse=True)
        mapped = np.array([self.body_of(v) if v else 0 for v in unique.tolist()], np.uint64)
        return mapped[inverse].reshape(svs.shape)

    def members(self, body: int) -> list[int]:
        return sorted(v for v in np.unique(self.svs).tolist() if v and self.body_of(v) == body)


def _url(uuid: str, path: str) -> str:
    return f"/api/node/{uuid}/seg/{path}"


def _mask_of_runs(runs: np.ndarray) -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    for x, y, z, n in runs.tolist():
        mask[z, y, x:x + n] = True
    return mask


def check(client: httpx.Client, uuid: str, model: Model, detail: list[int]) -> None:
    """Everything the model predicts at ``uuid``; ``detail`` bodies get sparse volumes too."""
    size = "_".join(map(str, SHAPE[::-1]))
    bodies = model.bodies()
    got = client.get(_url(uuid, f"raw/0_1_2/{size}/0_0_0"))
    assert np.array_equal(np.frombuffer(got.content, "<u8").reshape(SHAPE), bodies)
    got = client.get(_url(uuid, f"raw/0_1_2/{size}/0_0_0"), params={"supervoxels": "true"})
    assert np.array_equal(np.frombuffer(got.content, "<u8").reshape(SHAPE), model.svs)
    ids, counts = np.unique(bodies[bodies != 0], return_counts=True)
    listed = np.frombuffer(client.get(_url(uuid, "listlabels"), params={"sizes": "true"}).content,
                           "<u8").reshape(-1, 2)
    assert listed[:, 0].tolist() == ids.tolist() and listed[:, 1].tolist() == counts.tolist()
    assert client.request("GET", _url(uuid, "sizes"), json=ids.tolist()).json() == \
        counts.tolist()
    assert client.get(_url(uuid, "existing-labels")).json() == ids.tolist()
    for body in detail:
        mask = bodies == body
        if not mask.any():
            assert client.get(_url(uuid, f"size/{body}")).status_code == 404
            assert client.get(_url(uuid, f"sparsevol/{body}")).status_code == 404
            continue
        assert client.get(_url(uuid, f"size/{body}")).json() == {"voxels": int(mask.sum())}
        assert client.get(_url(uuid, f"supervoxels/{body}")).json() == model.members(body)
        runs = decode_rles(client.get(_url(uuid, f"sparsevol/{body}")).content)
        assert np.array_equal(_mask_of_runs(runs), mask)
        blocks = {tuple(c) for c in (np.argwhere(mask)[:, ::-1] // BLOCK).tolist()}
        info = client.get(_url(uuid, f"sparsevol-size/{body}")).json()
        assert info["voxels"] == int(mask.sum()) and info["numblocks"] == len(blocks)
        index = decode_label_index(client.get(_url(uuid, f"index/{body}")).content)
        assert index.label == body and index.num_voxels == int(mask.sum())
        assert sorted(index.supervoxels().tolist()) == model.members(body)


@pytest.fixture
def seg(client: httpx.Client) -> tuple[str, Model]:
    """A repo with labelmap 'seg' (32^3 blocks) holding two real fly segmentation samples."""
    root = client.post("/api/repos", json={}).json()["root"]
    made = client.post(f"/api/repo/{root}/instance",
                       json={"typename": "labelmap", "dataname": "seg", "BlockSize": "32"})
    assert made.status_code == 200, made.text
    volume = two_samples()
    posted = client.post(_url(root, "raw/0_1_2/128_64_64/0_0_0"),
                         params={"u": "ingester", "app": "test"},
                         content=volume.astype("<u8").tobytes())
    assert posted.status_code == 200, posted.text
    return root, Model(volume)


def _largest(model: Model, n: int) -> list[int]:
    ids, counts = np.unique(model.svs[model.svs != 0], return_counts=True)
    return [int(v) for v in ids[np.argsort(counts)[::-1][:n]]]


def test_ingest_builds_indices(client: httpx.Client, seg: tuple[str, Model]) -> None:
    root, model = seg
    check(client, root, model, _largest(model, 3))
    big = int(model.svs.max())
    assert client.get(_url(root, "maxlabel")).json() == {"maxlabel": big}
    assert client.get(_url(root, "nextlabel")).json() == {"nextlabel": big + 1}
    label = _largest(model, 1)[0]
    mod = client.get(_url(root, f"lastmod/{label}")).json()
    assert mod["last mod user"] == "ingester" and mod["last mod app"] == "test"
    meta = client.get(_url(root, f"index/{label}"), params={"metadata-only": "true"}).json()
    assert meta["last_mutid"] == mod["mutation id"] and meta["last_mod_user"] == "ingester"
    # per-block counts of the protobuf index equal numpy's
    index = decode_label_index(client.get(_url(root, f"index/{label}")).content)
    for (bx, by, bz), counts in index.as_dict().items():
        block = model.svs[bz * BLOCK:(bz + 1) * BLOCK, by * BLOCK:(by + 1) * BLOCK,
                          bx * BLOCK:(bx + 1) * BLOCK]
        assert counts == {label: int((block == label).sum())}
    # the other sparse volume formats and bounds
    mask = model.svs == label
    srles = decode_srles(client.get(_url(root, f"sparsevol/{label}"),
                                    params={"format": "srles"}).content)
    assert np.array_equal(_mask_of_runs(srles), mask)
    _, masks = decode_blocks(client.get(_url(root, f"sparsevol/{label}"),
                                        params={"format": "blocks"}).content)
    rebuilt = np.zeros(SHAPE, bool)
    for (x, y, z), m in masks:
        rebuilt[z:z + BLOCK, y:y + BLOCK, x:x + BLOCK] = m
    assert np.array_equal(rebuilt, mask)
    bounded = decode_rles(client.get(_url(root, f"sparsevol/{label}"), params={
        "minx": 10, "maxx": 70, "miny": 5, "maxy": 40, "minz": 0, "maxz": 33}).content)
    window = np.zeros(SHAPE, bool)
    window[0:34, 5:41, 10:71] = True
    assert np.array_equal(_mask_of_runs(bounded), mask & window)
    coarse = decode_rles(client.get(_url(root, f"sparsevol-coarse/{label}")).content)
    blocks = {(x + i, y, z) for x, y, z, n in coarse.tolist() for i in range(n)}
    assert blocks == set(index.as_dict())
    assert client.head(_url(root, f"sparsevol/{label}")).status_code == 200
    x, y, z = (int(v) for v in np.argwhere(mask)[0][::-1])
    by_point = client.get(_url(root, f"sparsevol-by-point/{x}_{y}_{z}"))
    assert np.array_equal(_mask_of_runs(decode_rles(by_point.content)), mask)


def test_overwrite_moves_counts(client: httpx.Client, seg: tuple[str, Model]) -> None:
    root, model = seg
    gone = int(model.svs[0, 0, 0])
    replacement = np.full((32, 32, 32), 7, np.uint64)
    replacement[:, :, :16] = 8
    assert client.post(_url(root, "raw/0_1_2/32_32_32/0_0_0"),
                       content=replacement.astype("<u8").tobytes()).status_code == 200
    model.svs[:32, :32, :32] = replacement
    check(client, root, model, [gone, 7, 8, *_largest(model, 2)])


def test_merge_cleave_renumber(client: httpx.Client, seg: tuple[str, Model]) -> None:
    root, model = seg
    a, b, c, d = _largest(model, 4)
    merged = client.post(_url(root, "merge"), params={"u": "alice", "app": "neu3"},
                         json=[a, b, c])
    assert merged.status_code == 200, merged.text
    model.mapping.update({b: a, c: a})
    check(client, root, model, [a, b, c])
    assert client.get(_url(root, f"lastmod/{a}")).json()["last mod user"] == "alice"
    assert client.request("GET", _url(root, "mapping"), json=[b, c, d, 0]).json() == [a, a, d, 0]
    text = client.get(_url(root, "mappings")).text
    assert f"{b} {a}\n" in text and f"{c} {a}\n" in text

    cleaved = client.post(_url(root, f"cleave/{a}"), params={"u": "bob"}, json=[c, b])
    assert cleaved.status_code == 200, cleaved.text
    new = cleaved.json()["CleavedLabel"]
    assert new > int(model.svs.max())
    model.mapping.update({b: new, c: new})
    check(client, root, model, [a, new])
    assert client.get(_url(root, "maxlabel")).json() == {"maxlabel": new}
    assert client.request("GET", _url(root, "mapping"), json=[new]).json() == [0]  # reserved

    renumbered = client.post(_url(root, "renumber"), json=[555, d])
    assert renumbered.status_code == 200, renumbered.text
    model.mapping[d] = 555
    check(client, root, model, [d, 555])

    records = client.get(_url(root, "mutations")).json()
    actions = [r.get("Action") for r in records]
    assert actions[-3:] == ["merge", "cleave", "renumber"]
    merge_record, cleave_record = records[-3], records[-2]
    assert merge_record["Target"] == a and merge_record["Labels"] == [b, c]
    assert merge_record["User"] == "alice" and merge_record["App"] == "neu3"
    assert merge_record["MutationID"] == merged.json()["MutationID"]
    assert cleave_record["OrigLabel"] == a and cleave_record["CleavedLabel"] == new
    assert cleave_record["CleavedSupervoxels"] == sorted([b, c])
    assert cleave_record["CleavedSize"] == int(np.isin(model.svs, [b, c]).sum())


def test_edits_on_a_branch_stay_there(client: httpx.Client, seg: tuple[str, Model]) -> None:
    root, model = seg
    a, b = _largest(model, 2)
    version = child(client, root)
    assert client.post(_url(version, "merge"), json=[a, b]).status_code == 200
    edited = Model(model.svs)
    edited.mapping[b] = a
    check(client, version, edited, [a, b])
    check(client, root, model, [a, b])
    assert_error(client.post(_url(root, "merge"), json=[a, b]), 409, "VERSION_LOCKED")


def test_bad_edits_change_nothing(client: httpx.Client, seg: tuple[str, Model]) -> None:
    root, model = seg
    a, b = _largest(model, 2)
    before = client.get(f"/api/repo/{root}/info").json()["MutationID"]
    missing = int(model.svs.max()) + 10
    cases = [
        (client.post(_url(root, "merge"), json=[a, missing]), 404, "no body"),
        (client.post(_url(root, "merge"), json=[a]), 400, "at least"),
        (client.post(_url(root, "merge"), json=[a, a]), 400, "itself"),
        (client.post(_url(root, "merge"), json=[a, -1]), 400, "2^64-1"),
        (client.post(_url(root, "merge"), json=[a, 2**64]), 400, "JSON"),
        (client.post(_url(root, "merge"), content=b"[1, 2"), 400, "JSON"),
        (client.post(_url(root, f"cleave/{a}"), json=[a]), 400, "every supervoxel"),
        (client.post(_url(root, f"cleave/{a}"), json=[b]), 400, "not in body"),
        (client.post(_url(root, f"cleave/{missing}"), json=[b]), 404, "no body"),
        (client.post(_url(root, f"cleave/{a}"), json=[]), 400, "cleave"),
        (client.post(_url(root, "renumber"), json=[b, a]), 400, "already a body"),
        (client.post(_url(root, "renumber"), json=[5]), 400, "even"),
        (client.get(_url(root, f"size/{missing}")), 404, "no voxels"),
        (client.get(_url(root, "size/x")), 400, "integer"),
        (client.post(_url(root, "indices"), content=b"\x0a\xff"), 400, "protobuf"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (words, response.text)
        assert words in response.json()["error"], response.json()
    assert client.get(f"/api/repo/{root}/info").json()["MutationID"] == before
    check(client, root, model, [a, b])


def test_posted_indices(client: httpx.Client, seg: tuple[str, Model]) -> None:
    root, model = seg
    a, b = _largest(model, 2)
    raw = client.request("GET", _url(root, "indices"), json=[a, b, 12345]).content
    found = decode_label_indices(raw)
    assert [i.label for i in found] == [a, b]
    # store a's index under a new label; the store takes it as given
    found[0].label = 777
    assert client.post(_url(root, "indices"),
                       content=encode_label_indices([found[0]])).status_code == 200
    assert client.get(_url(root, "size/777")).json() == {"voxels": int((model.svs == a).sum())}
    assert client.get(_url(root, "maxlabel")).json()["maxlabel"] == int(model.svs.max())


def test_concurrent_edits_lose_nothing(client: httpx.Client, seg: tuple[str, Model]) -> None:
    """DVID's TestConcurrentMutations: workers merge and cleave disjoint body groups at once,
    many rounds; the result must be exactly what each worker did."""
    root, model = seg
    groups = [_largest(model, 12)[i::3] for i in range(3)]

    def work(group: list[int]) -> None:
        target, *rest = group
        assert client.post(_url(root, "merge"), json=group).status_code == 200
        for _ in range(5):
            response = client.post(_url(root, f"cleave/{target}"), json=rest)
            assert response.status_code == 200, response.text
            cleaved = response.json()["CleavedLabel"]
            assert client.post(_url(root, "merge"), json=[target, cleaved]).status_code == 200

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(work, groups))
    for group in groups:
        for sv in group[1:]:
            model.mapping[sv] = group[0]
    check(client, root, model, [g[0] for g in groups])


def _halve_reference(volume: np.ndarray) -> np.ndarray:
    """Most frequent non-zero label of each 2x2x2 group, smaller label on ties, 0 if none:
    written the slow, obvious way as an independent check."""
    z, y, x = (n // 2 for n in volume.shape)
    groups = volume.reshape(z, 2, y, 2, x, 2).transpose(0, 2, 4, 1, 3, 5).reshape(-1, 8)
    out = np.zeros(len(groups), np.uint64)
    for i, group in enumerate(groups.tolist()):
        counts = Counter(v for v in group if v)
        if counts:
            out[i] = min(counts, key=lambda v: (-counts[v], v))
    return out.reshape(z, y, x)


def _scaled(client: httpx.Client, uuid: str, scale: int, **params: str) -> np.ndarray:
    shape = tuple(n >> scale for n in SHAPE)
    size = "_".join(map(str, shape[::-1]))
    got = client.get(_url(uuid, f"raw/0_1_2/{size}/0_0_0"), params={"scale": scale, **params})
    assert got.status_code == 200, got.text
    return np.frombuffer(got.content, "<u8").reshape(shape)


def test_lower_scales_follow_writes_and_edits(client: httpx.Client) -> None:
    root, model = _scaled_seg(client, 2)
    one = _halve_reference(model.svs)
    two = _halve_reference(one)
    assert np.array_equal(_scaled(client, root, 1, supervoxels="true"), one)
    assert np.array_equal(_scaled(client, root, 2, supervoxels="true"), two)
    # an overwrite reaches every scale
    patch = np.full((32, 32, 32), 99, np.uint64)
    assert client.post(_url(root, "raw/0_1_2/32_32_32/32_0_0"),
                       content=patch.astype("<u8").tobytes()).status_code == 200
    model.svs[:32, :32, 32:64] = patch
    one = _halve_reference(model.svs)
    two = _halve_reference(one)
    assert np.array_equal(_scaled(client, root, 1, supervoxels="true"), one)
    assert np.array_equal(_scaled(client, root, 2, supervoxels="true"), two)
    # a merge maps every scale without rewriting it
    a, b = _largest(model, 2)
    assert client.post(_url(root, "merge"), json=[a, b]).status_code == 200
    for scale, svs in ((1, one), (2, two)):
        mapped = np.where(svs == b, np.uint64(a), svs)
        assert np.array_equal(_scaled(client, root, scale), mapped)
    x, y, z = (int(v) for v in np.argwhere(two == b)[0][::-1])
    assert client.get(_url(root, f"label/{x}_{y}_{z}"), params={"scale": 2}).json() == \
        {"Label": a}
    assert_error(client.get(_url(root, "raw/0_1_2/8_8_8/0_0_0"), params={"scale": 3}), 400,
                 "BAD_REQUEST", "MaxDownresLevel")


def _scaled_seg(client: httpx.Client, levels: int = 1) -> tuple[str, Model]:
    """A repo whose labelmap 'seg' keeps ``levels`` lower scales, holding the two samples."""
    root = client.post("/api/repos", json={}).json()["root"]
    assert client.post(f"/api/repo/{root}/instance", json={
        "typename": "labelmap", "dataname": "seg", "BlockSize": "32",
        "MaxDownresLevel": str(levels)}).status_code == 200
    model = Model(two_samples())
    assert client.post(_url(root, "raw/0_1_2/128_64_64/0_0_0"),
                       content=model.svs.astype("<u8").tobytes()).status_code == 200
    return root, model


def _last(client: httpx.Client, uuid: str, action: str) -> dict[str, object]:
    """The newest log record of an action (lower scales' writes are logged after edits)."""
    found: dict[str, object] = [r for r in client.get(_url(uuid, "mutations")).json()
                                if r["Action"] == action][-1]
    return found


def _check_scale_one(client: httpx.Client, uuid: str, model: Model) -> None:
    """Lower scales hold supervoxels, as DVID's: mapped reads map them."""
    halved = _halve_reference(model.svs)
    assert np.array_equal(_scaled(client, uuid, 1, supervoxels="true"), halved)
    assert np.array_equal(_scaled(client, uuid, 1), model.bodies(halved))


def test_split_body(client: httpx.Client) -> None:
    root, model = _scaled_seg(client)
    a, b = _largest(model, 2)
    assert client.post(_url(root, "merge"), json=[a, b]).status_code == 200
    model.mapping[b] = a
    body = model.bodies() == a
    window = np.zeros(SHAPE, bool)
    window[:, :, :40] = True
    window[:, :20, :] = True
    region = body & window
    assert region.any() and (body & ~region).any()
    response = client.post(_url(root, f"split/{a}"), params={"u": "carol"},
                           content=encode_rles(mask_runs(region)))
    assert response.status_code == 200, response.text
    new = response.json()["label"]
    record = _last(client, root, "split")
    assert record["Action"] == "split" and record["Target"] == a and record["NewLabel"] == new
    assert record["User"] == "carol"
    assert record["SplitSize"] == int(region.sum())
    splits = record["SVSplits"]
    assert sorted(int(k) for k in splits) == sorted(int(v) for v in np.unique(model.svs[region]))
    for sv, ids in splits.items():
        old = model.svs == int(sv)
        model.svs[old & region] = ids["Split"]
        if (old & ~region).any():
            model.svs[old & ~region] = ids["Remain"]
            model.mapping[ids["Remain"]] = a
        else:
            assert ids["Remain"] == 0  # no id for an empty part
        model.mapping[ids["Split"]] = new
        model.mapping[int(sv)] = 0
    check(client, root, model, [a, new])
    _check_scale_one(client, root, model)
    assert client.request("GET", _url(root, "mapping"), json=[int(k) for k in splits]).json() \
        == [0] * len(splits)


def test_split_supervoxel(client: httpx.Client) -> None:
    root, model = _scaled_seg(client)
    a, b = _largest(model, 2)
    assert client.post(_url(root, "merge"), json=[a, b]).status_code == 200
    model.mapping[b] = a
    part = (model.svs == b) & (np.arange(SHAPE[2]) < 70)[None, None, :]
    assert part.any() and ((model.svs == b) & ~part).any()
    response = client.post(_url(root, f"split-supervoxel/{b}"),
                           params={"split": 900001, "remain": 900002},
                           content=encode_rles(mask_runs(part)))
    assert response.status_code == 200, response.text
    assert response.json()["SplitSupervoxel"] == 900001
    assert response.json()["RemainSupervoxel"] == 900002
    model.svs[part] = 900001
    model.svs[model.svs == b] = 900002
    model.mapping.update({900001: a, 900002: a, b: 0})
    check(client, root, model, [a])
    _check_scale_one(client, root, model)
    record = _last(client, root, "split-supervoxel")
    assert record["Action"] == "split-supervoxel" and record["Body"] == a
    assert record["SplitSize"] == int(part.sum())
    # splitting all of a supervoxel leaves no remain id
    rest = model.svs == 900002
    response = client.post(_url(root, "split-supervoxel/900002"),
                           content=encode_rles(mask_runs(rest)))
    assert response.status_code == 200, response.text
    assert response.json()["RemainSupervoxel"] == 0
    model.svs[rest] = response.json()["SplitSupervoxel"]
    model.mapping.update({response.json()["SplitSupervoxel"]: a, 900002: 0})
    check(client, root, model, [a])


def test_supervoxel_splits_by_version(client: httpx.Client) -> None:
    """DVID's supervoxel-splits: a body split at the root, a supervoxel split at a child;
    each version sees its own splits first, then its ancestors'."""
    root, model = _scaled_seg(client)
    assert client.get(_url(root, "supervoxel-splits")).json() == []
    a, b = _largest(model, 2)
    region = (model.svs == a) & (np.arange(SHAPE[2]) < 60)[None, None, :]
    assert region.any() and ((model.svs == a) & ~region).any()
    response = client.post(_url(root, f"split/{a}"), content=encode_rles(mask_runs(region)))
    assert response.status_code == 200, response.text
    body_split = _last(client, root, "split")
    at_root = [[body_split["MutationID"], int(sv), ids["Remain"], ids["Split"]]
               for sv, ids in body_split["SVSplits"].items()]
    version = child(client, root)
    part = (model.svs == b) & (np.arange(SHAPE[2]) < 70)[None, None, :]
    response = client.post(_url(version, f"split-supervoxel/{b}"),
                           params={"split": 900001, "remain": 900002},
                           content=encode_rles(mask_runs(part)))
    assert response.status_code == 200, response.text
    mutation_id = response.json()["MutationID"]
    assert client.get(_url(version, "supervoxel-splits")).json() == [
        version, [[mutation_id, b, 900002, 900001]], root, at_root]
    assert client.get(_url(root, "supervoxel-splits")).json() == [root, at_root]


def test_bad_splits_change_nothing(client: httpx.Client, seg: tuple[str, Model]) -> None:
    root, model = seg
    a, b = _largest(model, 2)
    before = client.get(f"/api/repo/{root}/info").json()["MutationID"]
    cases = [
        (client.post(_url(root, f"split/{a}"), content=encode_rles(mask_runs(model.svs == b))),
         400, "outside"),
        (client.post(_url(root, f"split/{a}"), content=encode_rles(mask_runs(model.svs == a))),
         400, "all of body"),
        (client.post(_url(root, f"split/{a}"), content=b"\x00\x03"), 400, "rles"),
        (client.post(_url(root, f"split/{a}"), content=encode_rles(np.zeros((0, 4), np.int32))),
         400, "no runs"),
        (client.post(_url(root, "split/123"), content=encode_rles(mask_runs(model.svs == a))),
         404, "no body"),
        (client.post(_url(root, f"split-supervoxel/{a}"),
                     content=encode_rles(mask_runs(model.svs == b))), 400, "outside"),
        (client.post(_url(root, f"split-supervoxel/{a}"), params={"split": b},
                     content=encode_rles(mask_runs(model.svs == a))), 400, "in use"),
    ]
    for response, status, words in cases:
        assert response.status_code == status, (words, response.text)
        assert words in response.json()["error"], response.json()
    assert client.get(f"/api/repo/{root}/info").json()["MutationID"] == before
    check(client, root, model, [a, b])


def test_split_can_be_disabled(make_server) -> None:  # type: ignore[no-untyped-def]
    live = make_server(env={"DVIDQL_ALLOW_LABELMAP_SPLIT": "false"})
    with httpx.Client(base_url=live.url) as client:
        root = client.post("/api/repos", json={}).json()["root"]
        assert client.post(f"/api/repo/{root}/instance", json={
            "typename": "labelmap", "dataname": "seg"}).status_code == 200
        assert_error(client.post(_url(root, "split/1"), content=b""), 403, "FORBIDDEN",
                     "disabled")


def test_label_counters_mappings_and_history(client: httpx.Client,
                                             seg: tuple[str, Model]) -> None:
    root, model = seg
    a, b, c = _largest(model, 3)
    big = int(model.svs.max())
    reserved = client.post(_url(root, "nextlabel/5")).json()
    assert reserved == {"start": big + 1, "end": big + 5}
    assert client.get(_url(root, "nextlabel")).json() == {"nextlabel": big + 6}
    assert client.get(_url(root, "maxlabel")).json() == {"maxlabel": big + 5}
    assert client.post(_url(root, f"maxlabel/{big + 100}")).status_code == 200
    assert client.post(_url(root, "maxlabel/3")).status_code == 200  # ignored: not larger
    assert client.get(_url(root, "maxlabel")).json() == {"maxlabel": big + 100}
    assert client.post(_url(root, "set-nextlabel/1000")).status_code == 200
    cleaved = client.post(_url(root, f"cleave/{a}"), json=[a]).status_code
    assert cleaved == 400  # a is a single supervoxel: cleaving it all is refused
    # an agglomeration loaded directly: mappings, then the indices that go with them
    posted = client.post(_url(root, "mappings"), content=encode_mapping_ops([(b, [c])]))
    assert posted.status_code == 200, posted.text
    model.mapping[c] = b
    indices = decode_label_indices(client.request("GET", _url(root, "indices"),
                                                  json=[b, c]).content)
    joined = LabelIndex.of(b, *(np.concatenate([i.blocks for i in indices]),
                                np.concatenate([i.svs for i in indices]),
                                np.concatenate([i.counts for i in indices])))
    empty = LabelIndex(c)
    assert client.post(_url(root, "indices"),
                       content=encode_label_indices([joined, empty])).status_code == 200
    check(client, root, model, [b, c])
    new = client.post(_url(root, f"cleave/{b}"), json=[c]).json()["CleavedLabel"]
    assert new == 1001  # from the next-label counter
    model.mapping[c] = new
    version = child(client, root)
    assert client.post(_url(version, "merge"), json=[a, new]).status_code == 200
    model.mapping[c] = a
    check(client, version, model, [a, b, new])
    actions = [r["Action"] for r in client.get(_url(version, f"mutations-range/{root}/{version}"))
               .json()]
    assert actions[-3:] == ["post-indices", "cleave", "merge"]
    touching = client.get(_url(version, f"history/{a}/{root}/{version}")).json()
    assert [r["Action"] for r in touching] == ["post-indices", "cleave", "merge"]
    assert client.get(_url(version, f"mutations-range/{version}/{root}")).status_code == 400


def test_edits_survive_a_restart(make_server) -> None:  # type: ignore[no-untyped-def]
    live = make_server()
    with httpx.Client(base_url=live.url) as client:
        root, model = _scaled_seg(client)
        a, b, c = _largest(model, 3)
        assert client.post(_url(root, "merge"), json=[a, b, c]).status_code == 200
        new = client.post(_url(root, f"cleave/{a}"), json=[c]).json()["CleavedLabel"]
        model.mapping.update({b: a, c: new})
    live.restart(signal.SIGKILL)
    with httpx.Client(base_url=live.url) as client:
        check(client, root, model, [a, b, c, new])
        _check_scale_one(client, root, model)
