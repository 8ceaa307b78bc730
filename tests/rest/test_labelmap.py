"""labelmap over HTTP against numpy: real fly segmentation ingested block-aligned, read back
as unaligned boxes and at points, across versions, with bad input refused unchanged."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from pathlib import Path

import compressed_segmentation
import httpx
import lz4.block
import numpy as np
import pytest

from dvidql.codec.blockstream import decode_block_stream, encode_block_stream
from dvidql.codec.labelblock import decode_label_block, encode_label_block
from dvidql.codec.sparsevol import encode_rles
from tests.fly_samples import two_samples
from tests.rest.conftest import child
from tests.rest.test_bad_input import assert_error
from tests.test_ingest import halve_labels

FIXTURES = Path(__file__).resolve().parents[1] / "codec" / "fixtures"
EDGE = 64


def _repo(client: httpx.Client, **settings: str) -> str:
    root = client.post("/api/repos", json={}).json()["root"]
    made = client.post(f"/api/repo/{root}/instance",
                       json={"typename": "labelmap", "dataname": "seg", **settings})
    assert made.status_code == 200, made.text
    return root


def _post(client: httpx.Client, uuid: str, offset: tuple[int, int, int],
          labels: np.ndarray) -> httpx.Response:
    z, y, x = labels.shape
    return client.post(f"/api/node/{uuid}/seg/raw/0_1_2/{x}_{y}_{z}/{'_'.join(map(str, offset))}",
                       content=labels.astype("<u8").tobytes())


def _box(client: httpx.Client, uuid: str, offset: tuple[int, int, int],
         size: tuple[int, int, int]) -> np.ndarray:
    response = client.get(f"/api/node/{uuid}/seg/raw/0_1_2/{'_'.join(map(str, size))}/"
                          f"{'_'.join(map(str, offset))}")
    assert response.status_code == 200, response.text
    return np.frombuffer(response.content, "<u8").reshape(size[::-1])


@pytest.fixture
def volume() -> np.ndarray:
    """Two real 64^3 segmentation blocks side by side along x: (z, y, x) = 64 x 64 x 128."""
    return two_samples()


@pytest.mark.parametrize("compression", ["gzip", "lz4", "none"])
def test_ingest_and_read_boxes(client: httpx.Client, volume: np.ndarray,
                               compression: str) -> None:
    root = _repo(client, Compression=compression)
    assert _post(client, root, (64, 0, 0), volume).status_code == 200  # blocks 1 and 2
    truth = np.zeros((64, 64, 256), np.uint64)
    truth[:, :, 64:192] = volume
    assert np.array_equal(_box(client, root, (0, 0, 0), (256, 64, 64)), truth)
    # unaligned, across block boundaries, partly outside what was written (zeros)
    for offset, size in (((100, 7, 3), (70, 50, 40)), ((30, -5, 60), (100, 20, 10)),
                         ((127, 31, 31), (2, 2, 2))):
        x, y, z = offset
        sx, sy, sz = size
        padded = np.zeros((64 + 20, 64 + 20, 256), np.uint64)
        padded[10:74, 10:74] = truth
        want = padded[z + 10:z + 10 + sz, y + 10:y + 10 + sy, x:x + sx]
        assert np.array_equal(_box(client, root, offset, size), want), offset
    assert np.array_equal(_box(client, root, (64, 0, 0), (128, 64, 64)),
                          _box(client, root, (64, 0, 0), (128, 64, 64)))


def test_labels_at_points(client: httpx.Client, volume: np.ndarray) -> None:
    root = _repo(client)
    assert _post(client, root, (0, 0, 0), volume).status_code == 200
    rng = np.random.default_rng(5)
    points = [*rng.integers(0, [128, 64, 64], (300, 3)).tolist(), [-1, 0, 0], [500, 5, 5]]
    want = [int(volume[z, y, x]) if 0 <= x < 128 and 0 <= y < 64 and 0 <= z < 64 else 0
            for x, y, z in points]
    assert client.request("GET", f"/api/node/{root}/seg/labels", json=points).json() == want
    assert client.post(f"/api/node/{root}/seg/labels", json=points).json() == want
    x, y, z = points[0]
    got = client.get(f"/api/node/{root}/seg/label/{x}_{y}_{z}", params={"supervoxels": "true"})
    assert got.json() == {"Label": want[0]}
    # DVID's hash: the MD5 of a GET's body, for proxies that mangle or drop such bodies
    body = json.dumps(points).encode()
    md5 = hashlib.md5(body).hexdigest()
    node = f"/api/node/{root}/seg"
    for endpoint, want_of in (("labels", want), ("mapping", [want[0]]), ("sizes", None)):
        sent = body if endpoint == "labels" else json.dumps([want[0]]).encode()
        digest = md5 if endpoint == "labels" else hashlib.md5(sent).hexdigest()
        got = client.request("GET", f"{node}/{endpoint}?hash={digest}", content=sent)
        assert got.status_code == 200, got.text
        if want_of is not None:
            assert got.json() == want_of
        assert_error(client.request("GET", f"{node}/{endpoint}?hash={digest}",
                                    content=sent[:-1]), 400, "BAD_REQUEST", "MD5")
    big = int(volume.max())
    assert big > 2**32  # the fixture's ids need 64 bits: nothing is truncated on the way
    assert big in client.post(f"/api/node/{root}/seg/labels", json=[
        [int(i) for i in np.argwhere(volume == big)[0][::-1]]]).json()


def test_info_and_versions(client: httpx.Client, volume: np.ndarray) -> None:
    root = _repo(client, BlockSize="32", MaxDownresLevel="2")
    info = client.get(f"/api/node/{root}/seg/info").json()
    assert info["Base"]["TypeName"] == "labelmap"
    assert "gzip" in info["Base"]["Compression"]
    ext = info["Extended"]
    assert ext["Values"] == [{"DataType": "uint64", "Label": "labelmap"}]
    assert ext["BlockSize"] == [32, 32, 32] and ext["MaxDownresLevel"] == 2
    assert ext["IndexedLabels"] is True and ext["MinPoint"] is None
    assert _post(client, root, (0, 0, 0), volume[:32, :32, :64]).status_code == 200
    version = child(client, root)
    assert _post(client, version, (64, 0, 0), volume[:32, :32, 64:]).status_code == 200
    parent = _box(client, root, (0, 0, 0), (128, 32, 32))
    assert np.array_equal(parent[:, :, :64], volume[:32, :32, :64])
    assert not parent[:, :, 64:].any()  # the child's blocks are invisible to the parent
    assert np.array_equal(_box(client, version, (0, 0, 0), (128, 32, 32)), volume[:32, :32])
    ext = client.get(f"/api/node/{root}/seg/info").json()["Extended"]
    assert ext["MinPoint"] == [0, 0, 0] and ext["MaxPoint"] == [127, 31, 31]


def test_bad_input_changes_nothing(client: httpx.Client, volume: np.ndarray) -> None:
    root = _repo(client)
    before = client.get(f"/api/repo/{root}/info").json()["MutationID"]
    seg = f"/api/node/{root}/seg"
    cases = [
        (client.post(f"{seg}/raw/0_1_2/64_64_64/1_0_0", content=bytes(64**3 * 8)), "multiples"),
        (client.post(f"{seg}/raw/0_1_2/64_64_64/0_0_0", content=bytes(100)), "needs"),
        (client.post(f"{seg}/raw/0_1_2/64_64_64/0_0_0?compression=lz4", content=b"x"),
         "not lz4 data"),
        (client.post(f"{seg}/raw/0_1_2/64_64_64/0_0_0?compression=gzip",
                     content=gzip.compress(bytes(100))), "needs"),
        (client.post(f"{seg}/raw/0_1_2/64_64_64/0_0_0?compression=google", content=b"x"),
         "compression"),
        (client.get(f"{seg}/raw/0_1_2/64_64_64/0_0_0?compression=zstd"), "compression"),
        (client.get(f"{seg}/raw/xy/64_64/0_0_0"), "3D"),
        (client.get(f"{seg}/raw/0_1_2/0_64_64/0_0_0"), "positive"),
        (client.get(f"{seg}/raw/0_1_2/64_64_64/0_0_0?scale=1"), "scale"),
        (client.get(f"{seg}/label/1_2"), "3 integers"),
        (client.post(f"{seg}/labels", content=b"[[1, 2]]"), "points"),
        (client.post(f"{seg}/labels", content=b"{"), "JSON"),
        (client.post(f"{seg}/labels", json=[[0, 0, 2**31]]), "32-bit"),
    ]
    for response, words in cases:
        assert_error(response, 400, "BAD_REQUEST", words)
    for settings, words in (({"BlockSize": "60"}, "multiples of 8"),
                            ({"Compression": "jpeg"}, "Compression"),
                            ({"MaxDownresLevel": "300"}, "MaxDownresLevel"),
                            ({"IndexedLabels": "maybe"}, "IndexedLabels"),
                            ({"Background": "3"}, "unknown setting")):
        made = client.post(f"/api/repo/{root}/instance",
                           json={"typename": "labelmap", "dataname": "other", **settings})
        assert_error(made, 400, "BAD_REQUEST", words)
    assert client.get(f"/api/repo/{root}/info").json()["MutationID"] == before
    assert not _box(client, root, (0, 0, 0), (64, 64, 64)).any()


def _stream(data: bytes) -> list[tuple[tuple[int, int, int], bytes]]:
    return [(coord, bytes(payload)) for coord, payload in decode_block_stream(data)]


def _unpack(payload: bytes, compression: str) -> np.ndarray:
    if compression == "blocks":
        return decode_label_block(gzip.decompress(payload), (EDGE, EDGE, EDGE))
    raw = {"lz4": lambda p: lz4.block.decompress(p, uncompressed_size=EDGE**3 * 8),
           "gzip": gzip.decompress, "uncompressed": bytes}[compression](payload)
    return np.frombuffer(raw, "<u8").reshape(EDGE, EDGE, EDGE)


@pytest.mark.parametrize("stored", ["gzip", "lz4"])
def test_block_streams(client: httpx.Client, volume: np.ndarray, stored: str) -> None:
    root = _repo(client, Compression=stored)
    assert _post(client, root, (0, 0, 0), volume).status_code == 200  # blocks (0|1, 0, 0)
    truth = {(0, 0, 0): volume[:, :, :64], (1, 0, 0): volume[:, :, 64:]}
    seg = f"/api/node/{root}/seg"
    for compression in ("lz4", "gzip", "blocks", "uncompressed"):
        got = client.get(f"{seg}/blocks/192_64_64/0_0_0", params={"compression": compression})
        assert got.status_code == 200, got.text
        records = _stream(got.content)
        assert [c for c, _ in records] == [(0, 0, 0), (1, 0, 0)]  # (2, 0, 0) was never written
        for coord, payload in records:
            assert np.array_equal(_unpack(payload, compression), truth[coord]), compression
    listed = _stream(client.get(f"{seg}/specificblocks", params={"blocks": "1,0,0,5,5,5,0,0,0"}
                                ).content)
    assert [c for c, _ in listed] == [(1, 0, 0), (0, 0, 0)]
    # what DVID's block stream gives, DVID's block ingest takes: a round trip to a new repo
    other = _repo(client)
    stream = client.get(f"{seg}/blocks/128_64_64/0_0_0", params={"compression": "blocks"})
    assert client.post(f"/api/node/{other}/seg/blocks", content=stream.content
                       ).status_code == 200
    assert np.array_equal(_box(client, other, (0, 0, 0), (128, 64, 64)), volume)


def test_post_blocks_takes_dvids_own_stream(client: httpx.Client) -> None:
    root = _repo(client)
    body = (FIXTURES / "stream_1block.dat").read_bytes()
    ((coord, payload),) = _stream(body)
    assert client.post(f"/api/node/{root}/seg/blocks", content=body).status_code == 200
    want = decode_label_block(gzip.decompress(payload), (EDGE, EDGE, EDGE))
    x, y, z = (c * EDGE for c in coord)
    assert np.array_equal(_box(client, root, (x, y, z), (EDGE, EDGE, EDGE)), want)


def test_bad_block_streams_change_nothing(client: httpx.Client, volume: np.ndarray) -> None:
    root = _repo(client)
    seg = f"/api/node/{root}/seg"
    good = (FIXTURES / "stream_1block.dat").read_bytes()
    ((_, payload),) = _stream(good)
    before = client.get(f"/api/repo/{root}/info").json()["MutationID"]
    header = struct.Struct("<iiii")
    cases = [
        (good[:-10], "malformed block stream"),
        (good[:7], "malformed block stream"),
        (header.pack(1, 0, 0, 5) + b"junk!", "not a gzipped label block"),
        (good + header.pack(1, 0, 0, len(payload)) + payload[:-20] + bytes(20),
         "not a gzipped label block"),
        (good + good, "more than once"),
        (b"", "no blocks"),
    ]
    for body, words in cases:
        assert_error(client.post(f"{seg}/blocks", content=body), 400, "BAD_REQUEST", words)
    assert_error(client.get(f"{seg}/blocks/64_64_64/0_0_0?compression=zstd"), 400,
                 "BAD_REQUEST", "compression")
    assert_error(client.get(f"{seg}/blocks/64_64_64/1_0_0"), 400, "BAD_REQUEST", "multiples")
    assert_error(client.get(f"{seg}/specificblocks?blocks=1,2"), 400, "BAD_REQUEST", "three")
    assert client.get(f"/api/repo/{root}/info").json()["MutationID"] == before
    assert client.get(f"{seg}/blocks/128_64_64/0_0_0").content == b""


def test_compressed_transfers(client: httpx.Client, volume: np.ndarray) -> None:
    root = _repo(client)
    seg = f"/api/node/{root}/seg"
    sent = {"lz4": lz4.block.compress(volume.astype("<u8").tobytes(), store_size=False),
            "gzip": gzip.compress(volume.astype("<u8").tobytes())}
    for compression, body in sent.items():
        posted = client.post(f"{seg}/raw/0_1_2/128_64_64/0_0_0",
                             params={"compression": compression}, content=body)
        assert posted.status_code == 200, posted.text
        assert np.array_equal(_box(client, root, (0, 0, 0), (128, 64, 64)), volume)
    offset, size = (10, 20, 30), (100, 40, 30)  # unaligned, across both blocks
    want = volume[30:60, 20:60, 10:110]
    raw_bytes = want.size * 8
    for compression in ("lz4", "gzip", "google", "googlegzip"):
        got = client.get(f"{seg}/raw/0_1_2/{'_'.join(map(str, size))}/"
                         f"{'_'.join(map(str, offset))}", params={"compression": compression})
        assert got.status_code == 200, got.text
        data = got.content  # googlegzip: inflated by the client, as by a browser
        if compression == "lz4":
            labels = np.frombuffer(lz4.block.decompress(data, uncompressed_size=raw_bytes),
                                   "<u8").reshape(want.shape)
        elif compression == "gzip":
            labels = np.frombuffer(gzip.decompress(data), "<u8").reshape(want.shape)
        else:
            assert (got.headers.get("content-encoding") == "gzip") == \
                (compression == "googlegzip")
            labels = compressed_segmentation.decompress(data, size, np.uint64, (8, 8, 8),
                                                        order="F").T
        assert np.array_equal(labels, want), compression


def test_an_instance_without_indices_refuses_what_needs_them(client: httpx.Client,
                                                             volume: np.ndarray) -> None:
    """IndexedLabels=false: voxels, labels and the label counters work; bodies, their sizes
    and sparse volumes, and edits are refused with the reason, and change nothing."""
    root = _repo(client, IndexedLabels="false")
    assert _post(client, root, (0, 0, 0), volume).status_code == 200
    assert np.array_equal(_box(client, root, (0, 0, 0), (128, 64, 64)), volume)
    sv = int(volume[5, 6, 7])
    assert client.get(f"/api/node/{root}/seg/label/7_6_5").json() == {"Label": sv}
    assert client.get(f"/api/node/{root}/seg/maxlabel").json() == {"maxlabel": int(volume.max())}
    node = f"/api/node/{root}/seg"
    mutations = client.get(f"{node}/mutations").json()
    other = int(volume[60, 60, 120])
    refused = [client.get(f"{node}/size/{sv}"), client.get(f"{node}/sparsevol/{sv}"),
               client.get(f"{node}/sparsevol-by-point/7_6_5"), client.get(f"{node}/index/{sv}"),
               client.get(f"{node}/listlabels"), client.get(f"{node}/supervoxels/{sv}"),
               client.post(f"{node}/merge", json=[sv, other]),
               client.post(f"{node}/cleave/{sv}", json=[sv]),
               client.post(f"{node}/renumber", json=[7, sv]),
               client.post(f"{node}/split/{sv}", content=encode_rles(np.array([[7, 6, 5, 1]]))),
               client.post(f"{node}/split-supervoxel/{sv}",
                           content=encode_rles(np.array([[7, 6, 5, 1]])))]
    for response in refused:
        assert_error(response, 400, "BAD_REQUEST", "IndexedLabels=false")
    assert client.get(f"{node}/mutations").json() == mutations
    assert np.array_equal(_box(client, root, (0, 0, 0), (128, 64, 64)), volume)


def test_downres_finishes_what_posts_without_it_left(client: httpx.Client,
                                                     volume: np.ndarray) -> None:
    """Blocks posted with downres=false leave the lower scale for later; POST downres
    computes it, and then has nothing left to do."""
    root = _repo(client, MaxDownresLevel="1")
    node = f"/api/node/{root}/seg"
    blocks = [((i, 0, 0), gzip.compress(encode_label_block(
        np.ascontiguousarray(volume[:, :, 64 * i:64 * (i + 1)])))) for i in range(2)]
    posted = client.post(f"{node}/blocks?downres=false", content=encode_block_stream(blocks))
    assert posted.status_code == 200, posted.text
    coarse = client.get(f"{node}/raw/0_1_2/64_32_32/0_0_0?scale=1")
    assert not np.frombuffer(coarse.content, "<u8").any()  # not computed yet
    assert client.post(f"{node}/downres").json() == {"BlocksWritten": 1}
    coarse = client.get(f"{node}/raw/0_1_2/64_32_32/0_0_0?scale=1")
    assert np.array_equal(np.frombuffer(coarse.content, "<u8").reshape(32, 32, 64),
                          halve_labels(volume))
    assert client.post(f"{node}/downres").json() == {"BlocksWritten": 0}
