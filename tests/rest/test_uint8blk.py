"""uint8blk over HTTP against a live server, every endpoint checked against numpy."""

from __future__ import annotations

import io
import struct

import httpx
import numpy as np
import pytest
import simplejpeg
from PIL import Image
from scipy import ndimage

from tests.rest.conftest import child

JPEG_MEAN_ERROR = 3.0  # quality 90 on smooth tissue-like data: mean |error| per voxel
JPEG_MAX_ERROR = 48


def volume(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Smooth, tissue-like uint8 voxels (z, y, x): JPEG-friendly, yet no two blocks alike."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=float)
    smooth = 128 + 60 * np.sin(x / 7 + seed) * np.cos(y / 9) + 30 * np.sin(z / 5)
    return np.clip(smooth + rng.normal(0, 4, shape), 0, 255).astype(np.uint8)


def make(http: httpx.Client, **settings: str) -> tuple[str, str]:
    root = http.post("/api/repos", json={"alias": "gray"}).json()["root"]
    body = {"typename": "uint8blk", "dataname": "g", **settings}
    response = http.post(f"/api/repo/{root}/instance", json=body)
    assert response.status_code == 200, response.text
    return root, f"/api/node/{root}/g"


def post_box(http: httpx.Client, base: str, data: np.ndarray, offset: tuple[int, int, int],
             ref: str | None = None) -> httpx.Response:
    z, y, x = data.shape
    url = f"{base}/raw/0_1_2/{x}_{y}_{z}/{offset[0]}_{offset[1]}_{offset[2]}"
    if ref is not None:
        url = url.replace(base.split("/")[3], ref, 1)
    return http.post(url, content=data.tobytes())


def get_box(http: httpx.Client, base: str, size: tuple[int, int, int],
            offset: tuple[int, int, int]) -> np.ndarray:
    response = http.get(f"{base}/raw/0_1_2/{size[0]}_{size[1]}_{size[2]}/"
                        f"{offset[0]}_{offset[1]}_{offset[2]}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    return np.frombuffer(response.content, np.uint8).reshape(size[2], size[1], size[0])


def expected(truth: np.ndarray, origin: tuple[int, int, int], size: tuple[int, int, int],
             offset: tuple[int, int, int], background: int = 0) -> np.ndarray:
    """What a box read should return when ``truth`` was written at ``origin``."""
    out = np.full((size[2], size[1], size[0]), background, np.uint8)
    lo = [max(o, t) for o, t in zip(offset, origin, strict=True)]
    hi = [min(o + s, t + n) for o, s, t, n in
          zip(offset, size, origin, truth.shape[::-1], strict=True)]
    if all(h > low for low, h in zip(lo, hi, strict=True)):
        out[lo[2] - offset[2]:hi[2] - offset[2], lo[1] - offset[1]:hi[1] - offset[1],
            lo[0] - offset[0]:hi[0] - offset[0]] = \
            truth[lo[2] - origin[2]:hi[2] - origin[2], lo[1] - origin[1]:hi[1] - origin[1],
                  lo[0] - origin[0]:hi[0] - origin[0]]
    return out


def image(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)))


def parse_stream(data: bytes) -> dict[tuple[int, int, int], bytes]:
    blocks, pos = {}, 0
    while pos < len(data):
        x, y, z, n = struct.unpack_from("<iiii", data, pos)
        blocks[(x, y, z)] = data[pos + 16:pos + 16 + n]
        pos += 16 + n
    assert pos == len(data)
    return blocks


def close(got: np.ndarray, want: np.ndarray, lossy: bool) -> None:
    if not lossy:
        np.testing.assert_array_equal(got, want)
        return
    error = np.abs(got.astype(int) - want.astype(int))
    assert error.mean() < JPEG_MEAN_ERROR and error.max() < JPEG_MAX_ERROR


# ----- settings and info -------------------------------------------------------------------

def test_defaults_and_info(client: httpx.Client) -> None:
    root, base = make(client)
    info = client.get(f"{base}/info").json()
    assert info["Base"]["TypeName"] == "uint8blk"
    assert info["Base"]["Compression"] == "LZ4 compression"
    ext = info["Extended"]
    assert ext["BlockSize"] == [32, 32, 32] and ext["VoxelSize"] == [8, 8, 8]
    assert ext["VoxelUnits"] == ["nanometers"] * 3 and ext["Background"] == 0
    assert ext["Values"] == [{"DataType": "uint8", "Label": "uint8"}]
    assert ext["MinPoint"] is None and "Extents" not in info
    assert post_box(client, base, volume((32, 32, 64)), (-32, 64, 0)).status_code == 200
    assert post_box(client, base, volume((32, 32, 32)), (96, 0, 32)).status_code == 200
    info = client.get(f"{base}/info").json()
    assert info["Extended"]["MinPoint"] == [-32, 0, 0]
    assert info["Extended"]["MaxPoint"] == [127, 95, 63]
    assert info["Extended"]["MinIndex"] == [-1, 0, 0]
    assert info["Extended"]["MaxIndex"] == [3, 2, 1]
    assert info["Extents"] == {"MinPoint": [-32, 0, 0], "MaxPoint": [127, 95, 63]}
    repo_view = client.get("/api/repos/info").json()[root]["DataInstances"]["g"]
    assert repo_view["Extended"]["MaxPoint"] == [127, 95, 63]


def test_settings_and_jpeg_info(client: httpx.Client) -> None:
    _, base = make(client, BlockSize="64", VoxelSize="4,4,40", VoxelUnits="nm",
                   Background="12", Compression="jpeg:85")
    info = client.get(f"{base}/info").json()
    assert "jpeg" in info["Base"]["Compression"]  # neuroglancer's test for its JPEG reader
    ext = info["Extended"]
    assert ext["BlockSize"] == [64, 64, 64] and ext["VoxelSize"] == [4, 4, 40]
    assert ext["VoxelUnits"] == ["nm"] * 3 and ext["Background"] == 12


@pytest.mark.parametrize("settings, message", [
    ({"BlockSize": "0"}, "BlockSize"),
    ({"BlockSize": "32,32"}, "BlockSize"),
    ({"VoxelSize": "-1"}, "VoxelSize"),
    ({"Background": "300"}, "Background"),
    ({"Compression": "zstd"}, "compression"),
    ({"Compression": "jpeg:101"}, "quality"),
    ({"Compression": "lz4:3"}, "quality"),
    ({"Compression": "jpeg", "BlockSize": "512"}, "JPEG"),
    ({"Colour": "red"}, "unknown setting"),
    ({"GridStore": "x"}, "GridStore"),
])
def test_bad_settings(client: httpx.Client, settings: dict[str, str], message: str) -> None:
    root = client.post("/api/repos", json={"alias": "bad"}).json()["root"]
    body = {"typename": "uint8blk", "dataname": "g", **settings}
    response = client.post(f"/api/repo/{root}/instance", json=body)
    assert response.status_code == 400 and message in response.json()["error"]
    assert "g" not in client.get(f"/api/repo/{root}/info").json()["DataInstances"]


# ----- voxels ------------------------------------------------------------------------------

@pytest.mark.parametrize("compression", ["lz4", "gzip", "none", "jpeg:90"])
def test_box_round_trip(client: httpx.Client, compression: str) -> None:
    _, base = make(client, Compression=compression, Background="7")
    truth = volume((64, 96, 128))
    origin = (32, 0, -32)
    assert post_box(client, base, truth, origin).status_code == 200
    lossy = compression.startswith("jpeg")
    for size, offset in [((128, 96, 64), origin),  # exactly what was written
                         ((45, 70, 33), (40, 13, -20)),  # unaligned, across blocks
                         ((200, 40, 90), (0, 80, -60)),  # partly outside: background
                         ((10, 10, 10), (500, 500, 500))]:  # nothing written there
        got = get_box(client, base, size, offset)
        want = expected(truth, origin, size, offset, background=7)
        if lossy:
            outside = want == 7
            assert (got[outside] == 7).all()
            if not outside.all():
                close(got[~outside], want[~outside], lossy=True)
        else:
            np.testing.assert_array_equal(got, want)


def test_planes(client: httpx.Client) -> None:
    _, base = make(client)
    truth = volume((64, 64, 64), seed=3)
    post_box(client, base, truth, (0, 0, 0))
    np.testing.assert_array_equal(image(client.get(f"{base}/raw/xy/40_30/5_6_7")),
                                  truth[7, 6:36, 5:45])
    np.testing.assert_array_equal(image(client.get(f"{base}/raw/0_1/40_30/5_6_7/png")),
                                  truth[7, 6:36, 5:45])
    np.testing.assert_array_equal(image(client.get(f"{base}/raw/xz/40_30/5_6_7")),
                                  truth[7:37, 6, 5:45])
    np.testing.assert_array_equal(image(client.get(f"{base}/raw/0_2/40_30/5_6_7")),
                                  truth[7:37, 6, 5:45])
    np.testing.assert_array_equal(image(client.get(f"{base}/raw/yz/40_30/5_6_7")),
                                  truth[7:37, 6:46, 5])
    np.testing.assert_array_equal(image(client.get(f"{base}/raw/1_2/40_30/5_6_7")),
                                  truth[7:37, 6:46, 5])
    response = client.get(f"{base}/raw/xy/40_30/5_6_7/jpg:95")
    assert response.headers["content-type"] == "image/jpeg"
    close(image(response), truth[7, 6:36, 5:45], lossy=True)
    low = len(client.get(f"{base}/raw/xy/64_64/0_0_7/jpg:10").content)
    high = len(client.get(f"{base}/raw/xy/64_64/0_0_7/jpg:95").content)
    assert low < high
    # a 3D box as one JPEG mosaic, X wide and Y*Z high (neuroglancer's non-JPEG path)
    mosaic = image(client.get(f"{base}/raw/0_1_2/64_64_64/0_0_0/jpeg"))
    assert mosaic.shape == (64 * 64, 64)
    close(mosaic.reshape(64, 64, 64), truth, lossy=True)


def test_isotropic(client: httpx.Client) -> None:
    _, base = make(client, VoxelSize="4,4,40")
    truth = volume((32, 64, 64), seed=5)
    post_box(client, base, truth, (0, 0, 0))
    xy = image(client.get(f"{base}/isotropic/xy/64_64/0_0_3"))
    np.testing.assert_array_equal(xy, truth[3])  # square pixels already
    xz = image(client.get(f"{base}/isotropic/xz/64_8/0_10_4"))
    assert xz.shape == (80, 64)  # 8 z-rows of 40 nm become 80 rows of 4 nm
    raw = truth[4:12, 10, :].astype(float)
    # bilinear with pixel centres aligned, the convention of the resampler
    rows = np.clip((np.arange(80) + 0.5) * 8 / 80 - 0.5, 0, 7)
    low = np.floor(rows).astype(int)
    high = np.minimum(low + 1, 7)
    frac = (rows - low)[:, None]
    want = raw[low] * (1 - frac) + raw[high] * frac
    assert np.abs(xz.astype(float) - want).max() <= 1.0


def test_arb_matches_trilinear_reference(client: httpx.Client) -> None:
    _, base = make(client, VoxelSize="4,4,8")
    truth = volume((64, 64, 64), seed=11)
    post_box(client, base, truth, (0, 0, 0))
    tl, tr, bl, res = (20.0, 30.0, 100.0), (180.0, 70.0, 220.0), (40.0, 200.0, 140.0), 3.0
    response = client.get(f"{base}/arb/{'_'.join(map(str, tl))}/{'_'.join(map(str, tr))}/"
                          f"{'_'.join(map(str, bl))}/{res}/png")
    got = image(response)
    tl_, tr_, bl_ = np.array(tl), np.array(tr), np.array(bl)
    nx = int(np.floor(np.linalg.norm(tr_ - tl_) / res))
    ny = int(np.floor(np.linalg.norm(bl_ - tl_) / res))
    assert got.shape == (ny + 1, nx + 1)
    i, j = np.meshgrid(np.arange(nx + 1), np.arange(ny + 1))
    world = tl_ + i[..., None] * (tr_ - tl_) / nx + j[..., None] * (bl_ - tl_) / ny
    voxel = world / np.array([4.0, 4.0, 8.0])
    want = ndimage.map_coordinates(truth.astype(float), [voxel[..., 2], voxel[..., 1],
                                                         voxel[..., 0]], order=1)
    assert np.abs(got.astype(float) - want).max() <= 1.0


def test_subvolblocks_and_specificblocks(client: httpx.Client) -> None:
    _, base = make(client, BlockSize="32", Compression="jpeg:90")
    truth = volume((32, 32, 64), seed=2)
    post_box(client, base, truth, (32, 0, 0))  # blocks (1,0,0) and (2,0,0)
    stream = parse_stream(client.get(f"{base}/subvolblocks/128_64_32/0_0_0").content)
    assert list(stream) == [(1, 0, 0), (2, 0, 0)]  # never-written blocks are left out
    for (bx, _, _), jpeg in stream.items():
        pixels = simplejpeg.decode_jpeg(jpeg, colorspace="GRAY")[..., 0]
        assert pixels.shape == (32 * 32, 32)  # X wide, Y*Z rows: what neuroglancer decodes
        close(pixels.reshape(32, 32, 32), truth[:, :, (bx - 1) * 32:bx * 32], lossy=True)
    raw = parse_stream(client.get(f"{base}/subvolblocks/64_32_32/32_0_0",
                                  params={"compression": "uncompressed"}).content)
    for (bx, _, _), data in raw.items():
        close(np.frombuffer(data, np.uint8).reshape(32, 32, 32),
              truth[:, :, (bx - 1) * 32:bx * 32], lossy=True)
    listed = parse_stream(client.get(f"{base}/specificblocks",
                                     params={"blocks": "2,0,0,5,5,5,1,0,0"}).content)
    assert list(listed) == [(2, 0, 0), (1, 0, 0)]
    assert client.get(f"{base}/specificblocks",
                      params={"blocks": "1,0,0", "prefetch": "true"}).content == b""
    assert client.get(f"{base}/subvolblocks/40_32_32/0_0_0").status_code == 400
    assert client.get(f"{base}/specificblocks", params={"blocks": "1,0"}).status_code == 400
    assert client.get(f"{base}/subvolblocks/32_32_32/0_0_0",
                      params={"compression": "lz4"}).status_code == 400


def test_lz4_stream_and_block_spans(client: httpx.Client) -> None:
    _, base = make(client, Background="3")
    truth = volume((32, 32, 96), seed=4)
    blocks = [truth[:, :, i * 32:(i + 1) * 32] for i in range(3)]
    body = b"".join(np.ascontiguousarray(b).tobytes() for b in blocks)
    assert client.post(f"{base}/blocks/2_1_-1/3", content=body).status_code == 200
    np.testing.assert_array_equal(get_box(client, base, (96, 32, 32), (64, 32, -32)), truth)
    span = client.get(f"{base}/blocks/1_1_-1/5").content
    arrays = np.frombuffer(span, np.uint8).reshape(5, 32, 32, 32)
    assert (arrays[0] == 3).all() and (arrays[4] == 3).all()  # background where unwritten
    for i in range(3):
        np.testing.assert_array_equal(arrays[i + 1], blocks[i])
    stream = parse_stream(client.get(f"{base}/subvolblocks/96_32_32/64_32_-32").content)
    assert np.frombuffer(stream[(3, 1, -1)], np.uint8).reshape(32, 32, 32).tolist() == \
        blocks[1].tolist()  # lz4 instances stream uncompressed blocks by default
    stored = client.get(f"{base}/stored-blocks/256_64_64/0_0_-64").json()
    assert stored == [[2, 1, -1], [3, 1, -1], [4, 1, -1]]
    bad = client.post(f"{base}/blocks/0_0_0/2", content=body)
    assert bad.status_code == 400 and "bytes" in bad.json()["error"]


def test_extents_resolution_metadata_rawkey(client: httpx.Client) -> None:
    _, base = make(client)
    bounds = {"MinPoint": [0, 0, 0], "MaxPoint": [511, 255, 99]}
    assert client.post(f"{base}/extents", json=bounds).status_code == 200
    assert client.get(f"{base}/info").json()["Extents"] == bounds
    assert client.post(f"{base}/resolution", json=[4, 4, 45]).status_code == 200
    assert client.get(f"{base}/info").json()["Extended"]["VoxelSize"] == [4, 4, 45]
    meta = client.get(f"{base}/metadata")
    assert meta.headers["content-type"] == "application/vnd.dvid-nd-data+json"
    axes = meta.json()["Axes"]
    assert [a["Label"] for a in axes] == ["X", "Y", "Z"]
    assert [a["Size"] for a in axes] == [512, 256, 100] and axes[2]["Resolution"] == 45
    key = client.get(f"{base}/rawkey", params={"x": 1, "y": 2, "z": -3}).json()["Key"]
    assert bytes.fromhex(key)[0] == 0x01 and len(bytes.fromhex(key)) == 1 + 4 + 13 + 4
    for bad in ({"MinPoint": [0, 0], "MaxPoint": [1, 1, 1]},
                {"MinPoint": [5, 5, 5], "MaxPoint": [1, 1, 1]}):
        assert client.post(f"{base}/extents", json=bad).status_code == 400
    assert client.post(f"{base}/resolution", json=[4, 0, 4]).status_code == 400
    assert client.get(f"{base}/rawkey", params={"x": 1}).status_code == 400


# ----- pyramids ----------------------------------------------------------------------------

def halve(volume: np.ndarray) -> np.ndarray:
    z, y, x = (n // 2 for n in volume.shape)
    sums = volume.reshape(z, 2, y, 2, x, 2).astype(int).sum(axis=(1, 3, 5))
    return ((sums + 4) // 8).astype(np.uint8)


def test_pyramid_levels_and_incremental_update(client: httpx.Client) -> None:
    root, base = make(client, BlockSize="16", VoxelSize="4,4,40")
    truth = volume((64, 64, 64), seed=9)
    post_box(client, base, truth, (0, 0, 0))
    report = client.post(f"{base}/pyramid").json()
    assert [(lv["Name"], lv["BlocksWritten"]) for lv in report["Levels"]] == \
        [("g_1", 8), ("g_2", 1)]
    level1, level2 = halve(truth), halve(halve(truth))
    np.testing.assert_array_equal(
        get_box(client, f"/api/node/{root}/g_1", (32, 32, 32), (0, 0, 0)), level1)
    np.testing.assert_array_equal(
        get_box(client, f"/api/node/{root}/g_2", (16, 16, 16), (0, 0, 0)), level2)
    info = client.get(f"/api/node/{root}/g_1/info").json()["Extended"]
    assert info["ScaleLevel"] == 1 and info["VoxelSize"] == [8, 8, 80]
    # A change to one block recomputes only the blocks above it.
    patch = np.full((16, 16, 16), 250, np.uint8)
    post_box(client, base, patch, (48, 0, 16))
    truth[16:32, 0:16, 48:64] = 250
    report = client.post(f"{base}/pyramid").json()
    assert [lv["BlocksWritten"] for lv in report["Levels"]] == [1, 1]
    np.testing.assert_array_equal(
        get_box(client, f"/api/node/{root}/g_1", (32, 32, 32), (0, 0, 0)), halve(truth))
    np.testing.assert_array_equal(
        get_box(client, f"/api/node/{root}/g_2", (16, 16, 16), (0, 0, 0)),
        halve(halve(truth)))
    again = client.post(f"{base}/pyramid").json()
    assert [lv["BlocksWritten"] for lv in again["Levels"]] == [0, 0]
    refused = client.post(f"/api/node/{root}/g_1/pyramid")
    assert refused.status_code == 400 and "level-0" in refused.json()["error"]
    assert client.post(f"{base}/pyramid", params={"levels": "0"}).status_code == 400


# ----- versions ----------------------------------------------------------------------------

def test_versions(client: httpx.Client) -> None:
    root, base = make(client)
    truth = volume((32, 32, 32), seed=1)
    post_box(client, base, truth, (0, 0, 0))
    v1 = child(client, root)
    v2 = child(client, v1)
    v3 = child(client, v2)
    deep = f"/api/node/{v3}/g"
    np.testing.assert_array_equal(get_box(client, deep, (32, 32, 32), (0, 0, 0)), truth)
    changed = 255 - truth
    assert post_box(client, deep, changed, (0, 0, 0)).status_code == 200
    assert post_box(client, deep, truth, (32, 0, 0)).status_code == 200
    np.testing.assert_array_equal(get_box(client, deep, (32, 32, 32), (0, 0, 0)), changed)
    for ref in (root, v1, v2):  # committed ancestors do not see the child's writes
        old = get_box(client, f"/api/node/{ref}/g", (64, 32, 32), (0, 0, 0))
        np.testing.assert_array_equal(old[:, :, :32], truth)
        assert (old[:, :, 32:] == 0).all()
    locked = post_box(client, f"/api/node/{v2}/g", truth, (0, 0, 0))
    assert locked.status_code in (403, 409)
    assert client.get(f"/api/node/{v2}/g/stored-blocks/64_32_32/0_0_0").json() == [[0, 0, 0]]


# ----- bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("method, path, body, status", [
    ("GET", "raw/0_1_2/0_10_10/0_0_0", b"", 400),
    ("GET", "raw/0_1_2/-5_10_10/0_0_0", b"", 400),
    ("GET", "raw/xy/10/0_0_0", b"", 400),
    ("GET", "raw/0_3/10_10/0_0_0", b"", 400),
    ("GET", "raw/xy/10_10/0_0", b"", 400),
    ("GET", "raw/xy/10_10/a_b_c", b"", 400),
    ("GET", "raw/xy/10_10/0_0_0/gif", b"", 400),
    ("GET", "raw/xy/10_10/0_0_0/jpg:0", b"", 400),
    ("GET", "raw/xy/10_10/0_0_0/jpg:101", b"", 400),
    ("GET", "raw/0_1_2/10_10_10/0_0_0/png", b"", 400),
    ("GET", "raw/0_1_2/10_10_10/2147483640_0_0", b"", 400),
    ("GET", "raw/0_1_2/10_10_10/0_0_-2147483649", b"", 400),
    ("GET", "arb/0_0_0/0_0_0/0_10_0/1", b"", 400),
    ("GET", "arb/0_0_0/10_0_0/0_10_0/0", b"", 400),
    ("GET", "arb/0_0/10_0_0/0_10_0/1", b"", 400),
    ("GET", "raw/0_1_2/10_10_10/0_0_0?roi=nosuch", b"", 404),
    ("GET", "blocks/0_0_0/0", b"", 400),
    ("POST", "raw/0_1_2/32_32_32/1_0_0", bytes(32**3), 400),
    ("POST", "raw/0_1_2/30_32_32/0_0_0", bytes(30 * 32 * 32), 400),
    ("POST", "raw/0_1_2/32_32_32/0_0_0", bytes(100), 400),
    ("POST", "raw/xy/32_32/0_0_0", bytes(32 * 32), 400),
    ("POST", "raw/0_1_2/32_32_32/2147483648_0_0", bytes(32**3), 400),
    ("POST", "blocks/67108863_0_0/2", bytes(2 * 32**3), 400),
    ("POST", "blocks/0_0_0/1", bytes(5), 400),
])
def test_bad_requests_change_nothing(client: httpx.Client, method: str, path: str,
                                     body: bytes, status: int) -> None:
    root, base = make(client)
    before = client.get(f"/api/repo/{root}/info").json()["MutationID"]
    response = client.request(method, f"{base}/{path}", content=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]
    assert client.get(f"/api/repo/{root}/info").json()["MutationID"] == before
    assert client.get(f"{base}/stored-blocks/64_64_64/0_0_0").json() == []


def test_request_limit(make_server) -> None:  # type: ignore[no-untyped-def]
    live = make_server(env={"DVIDQL_MAX_REQUEST_BYTES": str(64**3)})
    with httpx.Client(base_url=live.url, timeout=30) as http:
        _, base = make(http)
        assert http.get(f"{base}/raw/0_1_2/64_64_64/0_0_0").status_code == 200
        too_big = http.get(f"{base}/raw/0_1_2/65_64_64/0_0_0")
        assert too_big.status_code == 413 and "limit" in too_big.json()["error"]
        upload = http.post(f"{base}/raw/0_1_2/128_64_64/0_0_0", content=bytes(128 * 64**2))
        assert upload.status_code == 413
        assert http.get(f"{base}/stored-blocks/128_64_64/0_0_0").json() == []
