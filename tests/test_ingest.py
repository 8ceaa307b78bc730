"""``dvidql ingest`` and ``dvidql pyramid`` as a user runs them: the CLI in a subprocess against
a live server, every result read back over HTTP and compared with numpy."""

from __future__ import annotations

import http.server
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import tensorstore as ts
from PIL import Image

from dvidql.codec.blockstream import decode_block_stream
from dvidql.ingest import DvidClient, NpySource
from dvidql.ingest import ingest as run_ingest_here
from tests.conftest import LiveServer
from tests.rest.conftest import child, new_repo
from tests.rest.test_uint8blk import expected, get_box, halve, make, post_box, volume

JPEG_RMSE = 4.0  # quality 90 on smooth tissue-like data (noise sigma 4): measured about 3
SUMMARY = re.compile(r"(\d+) blocks written, (\d+) skipped \(already stored\), (\d+) in all")

Xyz = tuple[int, int, int]


def dvidql(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dvidql", *args], capture_output=True,
                          text=True, timeout=60)


def counts(run: subprocess.CompletedProcess[str]) -> tuple[int, int, int]:
    """(written, skipped, total) blocks from the summary of a successful ingest."""
    assert run.returncode == 0, run.stderr
    found = SUMMARY.search(run.stdout)
    assert found is not None, run.stdout
    written, skipped, total = map(int, found.groups())
    return written, skipped, total


def run_ingest(server: LiveServer, uuid: str, source: Path | str,
               *options: str) -> subprocess.CompletedProcess[str]:
    """``dvidql ingest`` into instance g, without the progress bar."""
    return dvidql("ingest", server.url, uuid, "g", str(source), *options, "--no-progress")


def ingest(server: LiveServer, uuid: str, source: Path | str,
           *options: str) -> tuple[int, int, int]:
    """A run that must succeed: the (written, skipped, total) blocks it reports."""
    run = run_ingest(server, uuid, source, *options)
    assert f"into g at {uuid}: " in run.stdout, run.stdout + run.stderr
    return counts(run)


def pyramid(server: LiveServer, uuid: str, *options: str) -> list[int]:
    """Run ``dvidql pyramid`` on instance g; blocks written per level, from its report."""
    run = dvidql("pyramid", server.url, uuid, "g", *options)
    assert run.returncode == 0, run.stderr
    levels = re.findall(r"g_(\d+)  \(scale (\d+)\): (\d+) blocks written", run.stdout)
    assert [int(n) for n, _, _ in levels] == [int(s) for _, s, _ in levels]
    assert f"pyramid of g: {len(levels)} level(s)" in run.stdout
    return [int(w) for _, _, w in levels]


def read(http: httpx.Client, uuid: str, size: Xyz, offset: Xyz = (0, 0, 0),
         name: str = "g") -> np.ndarray:
    return get_box(http, f"/api/node/{uuid}/{name}", size, offset)


def size_of(truth: np.ndarray) -> Xyz:
    """The (x, y, z) size of a (z, y, x) array, as the REST geometry wants it."""
    z, y, x = truth.shape
    return x, y, z


def mutation_id(http: httpx.Client, uuid: str) -> int:
    """The repo's last mutation: unchanged means nothing at all was written."""
    return int(http.get(f"/api/repo/{uuid}/info").json()["MutationID"])


def extended(http: httpx.Client, uuid: str, name: str = "g") -> dict[str, object]:
    response = http.get(f"/api/node/{uuid}/{name}/info")
    assert response.status_code == 200, response.text
    return response.json()["Extended"]  # type: ignore[no-any-return]


def interrupt_slow_ingest(server: LiveServer, uuid: str, source: Path,
                          enough: Callable[[], bool]) -> None:
    """SIGINT to ``dvidql ingest`` of ``source`` into a new instance g of 8^3 blocks that one
    worker posts one by one (many seconds of work), once ``enough()`` holds: the run must
    stop as interrupted, with nothing on stdout."""
    slow = subprocess.Popen(
        [sys.executable, "-m", "dvidql", "ingest", server.url, uuid, "g", str(source),
         "--create", "--block-size", "8", "--workers", "1", "--batch-blocks", "1",
         "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and slow.poll() is None and not enough():
            time.sleep(0.02)
        slow.send_signal(signal.SIGINT)
        out, err = slow.communicate(timeout=30)
    finally:
        slow.kill()
    assert slow.returncode == 130, err
    assert "interrupted; run the same command again to resume" in err and out == ""


def check_refused(server: LiveServer, client: httpx.Client, source: str, options: list[str],
                  code: int, message: str) -> None:
    """An ingest into a new repo that must stop with ``code`` and ``message`` before it
    writes or creates anything."""
    root = new_repo(client)
    before = mutation_id(client, root)
    run = run_ingest(server, root, source, *options)
    assert run.returncode == code, run.stderr
    assert run.stderr.startswith("error: ") and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert mutation_id(client, root) == before
    assert client.get(f"/api/node/{root}/g/info").status_code == 404


def save_slices(truth: np.ndarray, folder: Path, pattern: str) -> None:
    """One 8-bit grayscale image per z slice, named by ``pattern.format(z)``."""
    folder.mkdir()
    for z, plane in enumerate(truth):
        Image.fromarray(plane, mode="L").save(folder / pattern.format(z))


# ----- sources -----------------------------------------------------------------------------

def test_npy_create_with_progress_bar(server: LiveServer, client: httpx.Client,
                                      tmp_path: Path) -> None:
    """A 100x90x70 volume in 32^3 blocks: edge blocks padded with background, and reads
    beyond the volume give background too. This run shows the progress bar."""
    root = new_repo(client)
    truth = volume((70, 90, 100), seed=1)
    np.save(tmp_path / "v.npy", truth)
    run = dvidql("ingest", server.url, root, "g", str(tmp_path / "v.npy"), "--create",
                 "--block-size", "32")
    assert counts(run) == (36, 0, 36)
    assert "36/36" in run.stderr and "36/36" not in run.stdout  # the bar, on stderr only
    box = (160, 128, 96)
    np.testing.assert_array_equal(read(client, root, box),
                                  expected(truth, (0, 0, 0), box, (0, 0, 0)))
    info = client.get(f"/api/node/{root}/g/info").json()
    assert info["Base"]["TypeName"] == "uint8blk"
    assert info["Base"]["Compression"] == "LZ4 compression"
    assert info["Extended"]["BlockSize"] == [32, 32, 32]
    assert info["Extended"]["MinPoint"] == [0, 0, 0]
    assert info["Extended"]["MaxPoint"] == [127, 95, 95]


def test_existing_instance_at_offset(server: LiveServer, client: httpx.Client,
                                     tmp_path: Path) -> None:
    """Into an instance made beforehand: its block size and Background rule, not the
    --create defaults, and a negative offset is fine when block-aligned."""
    root, _ = make(client, BlockSize="32", Background="12")
    truth = volume((40, 50, 60), seed=2)
    np.save(tmp_path / "v.npy", truth)
    origin = (64, 32, -32)
    assert ingest(server, root, tmp_path / "v.npy", "--offset", "64,32,-32") == (8, 0, 8)
    box, corner = (192, 128, 96), (0, 0, -64)
    np.testing.assert_array_equal(read(client, root, box, corner),
                                  expected(truth, origin, box, corner, background=12))
    ext = extended(client, root)
    assert ext["BlockSize"] == [32, 32, 32]
    assert ext["MinPoint"] == [64, 32, -32] and ext["MaxPoint"] == [127, 95, 31]


def test_jpeg_within_error_bound(server: LiveServer, client: httpx.Client,
                                 tmp_path: Path) -> None:
    root = new_repo(client)
    truth = volume((64, 96, 128), seed=3)
    np.save(tmp_path / "v.npy", truth)
    assert ingest(server, root, tmp_path / "v.npy", "--create", "--compression", "jpeg:90") \
        == (4, 0, 4)
    info = client.get(f"/api/node/{root}/g/info").json()
    assert "jpeg" in info["Base"]["Compression"].lower()
    assert info["Extended"]["BlockSize"] == [64, 64, 64]  # the --create default
    box = (128, 128, 64)
    error = read(client, root, box).astype(float) - expected(truth, (0, 0, 0), box, (0, 0, 0))
    assert np.sqrt((error ** 2).mean()) < JPEG_RMSE


@pytest.mark.parametrize("version, leading", [(2, ()), (3, (1,))])
def test_zarr(server: LiveServer, client: httpx.Client, tmp_path: Path, version: int,
              leading: tuple[int, ...]) -> None:
    """Chunks that do not line up with the blocks, so batches read across chunk borders; a
    leading axis of size 1 (channel, time) is dropped."""
    root = new_repo(client)
    truth = volume((50, 70, 90), seed=4)
    path = tmp_path / "volume.zarr"
    spec: dict[str, object] = {"driver": "zarr" if version == 2 else "zarr3",
                               "kvstore": {"driver": "file", "path": str(path)}}
    chunks = [*leading, 24, 40, 56]
    if version == 2:
        spec["metadata"] = {"chunks": chunks}
    else:
        spec["metadata"] = {"chunk_grid": {"name": "regular",
                                           "configuration": {"chunk_shape": chunks}}}
    store = ts.open(spec, create=True, dtype=ts.uint8, shape=[*leading, *truth.shape]).result()
    store.write(truth.reshape(store.shape)).result()
    run = run_ingest(server, root, path, "--create", "--block-size", "32")
    assert counts(run) == (18, 0, 18)
    assert f"ingested volume.zarr (zarr v{version}) into g" in run.stdout
    np.testing.assert_array_equal(read(client, root, size_of(truth)), truth)


def test_png_directory_in_natural_order(server: LiveServer, client: httpx.Client,
                                        tmp_path: Path) -> None:
    """Unpadded names: slice_10 must come after slice_9, not after slice_1."""
    root = new_repo(client)
    truth = volume((40, 50, 70), seed=5)
    save_slices(truth, tmp_path / "slices", "slice_{}.png")
    (tmp_path / "slices" / "README.txt").write_text("not a slice")
    run = run_ingest(server, root, tmp_path / "slices", "--create", "--block-size", "32")
    assert counts(run) == (12, 0, 12)
    assert "ingested slices/ (40 images) into g" in run.stdout
    np.testing.assert_array_equal(read(client, root, size_of(truth)), truth)
    # One image is a one-voxel-thick volume; its block layer is padded with background.
    assert ingest(server, root, tmp_path / "slices" / "slice_7.png", "--offset", "0,0,64") \
        == (6, 0, 6)
    layer = read(client, root, (96, 64, 32), (0, 0, 64))
    np.testing.assert_array_equal(layer[0, :50, :70], truth[7])
    assert (layer[1:] == 0).all() and (layer[0, 50:] == 0).all() and (layer[0, :, 70:] == 0).all()


def test_tiff_glob_anisotropic_blocks(server: LiveServer, client: httpx.Client,
                                      tmp_path: Path) -> None:
    """A quoted glob reaches ingest unexpanded; images it does not match are not slices."""
    root = new_repo(client)
    truth = volume((33, 64, 40), seed=6)
    save_slices(truth, tmp_path / "stack", "z{:03d}.tif")
    Image.fromarray(np.zeros((64, 40), np.uint8)).save(tmp_path / "stack" / "overview.png")
    # Blocks longer along x than along z, so no axis can stand in for another.
    assert ingest(server, root, tmp_path / "stack" / "*.tif", "--create", "--block-size",
                  "32,16,8") == (2 * 4 * 5, 0, 40)
    assert extended(client, root)["BlockSize"] == [32, 16, 8]
    np.testing.assert_array_equal(read(client, root, size_of(truth)), truth)


# ----- resuming --------------------------------------------------------------------------

def test_second_run_writes_nothing(server: LiveServer, client: httpx.Client,
                                   tmp_path: Path) -> None:
    """The report says nothing was written, and the repo's mutation id proves it."""
    root = new_repo(client)
    truth = volume((64, 96, 80), seed=8)
    np.save(tmp_path / "v.npy", truth)
    assert ingest(server, root, tmp_path / "v.npy", "--create", "--block-size", "32") == \
        (18, 0, 18)
    before = mutation_id(client, root)
    # The same command again: --create is a no-op now that the instance exists.
    assert ingest(server, root, tmp_path / "v.npy", "--create", "--block-size", "32") == \
        (0, 18, 18)
    assert mutation_id(client, root) == before
    np.testing.assert_array_equal(read(client, root, size_of(truth)), truth)


def test_resume_after_partial_source(server: LiveServer, client: httpx.Client,
                                     tmp_path: Path) -> None:
    """A run stopped after its first z layer of blocks: the next writes only the rest."""
    root = new_repo(client)
    truth = volume((96, 96, 96), seed=9)
    np.save(tmp_path / "first-layer.npy", truth[:32])
    np.save(tmp_path / "all.npy", truth)
    assert ingest(server, root, tmp_path / "first-layer.npy", "--create", "--block-size",
                  "32") == (9, 0, 9)
    assert ingest(server, root, tmp_path / "all.npy") == (18, 9, 27)
    np.testing.assert_array_equal(read(client, root, size_of(truth)), truth)


def test_resume_after_ctrl_c(server: LiveServer, client: httpx.Client,
                             tmp_path: Path) -> None:
    """A real interruption: SIGINT while one worker posts 8^3 blocks one by one (1728 of
    them, many seconds of work); the rerun writes exactly the blocks the first did not."""
    root = new_repo(client)
    truth = volume((96, 96, 96), seed=13)
    np.save(tmp_path / "v.npy", truth)
    stored_url = f"/api/node/{root}/g/stored-blocks/96_96_96/0_0_0"

    def enough() -> bool:
        answer = client.get(stored_url)
        return answer.status_code == 200 and len(answer.json()) >= 20

    interrupt_slow_ingest(server, root, tmp_path / "v.npy", enough)
    done = len(client.get(stored_url).json())
    assert 20 <= done < 1728
    assert ingest(server, root, tmp_path / "v.npy") == (1728 - done, done, 1728)
    np.testing.assert_array_equal(read(client, root, size_of(truth)), truth)


def test_resume_after_bad_slice(server: LiveServer, client: httpx.Client,
                                tmp_path: Path) -> None:
    """Pixels are checked as slices are decoded, layer by layer: a colored slice stops the run
    after the layers before it, and once it is fixed the rerun writes only the rest."""
    root = new_repo(client)
    truth = volume((24, 16, 16), seed=14)
    save_slices(truth, tmp_path / "stack", "{}.png")
    colored = np.repeat(truth[10][..., None], 3, axis=2)
    colored[3, 4] = (200, 10, 10)
    Image.fromarray(colored).save(tmp_path / "stack" / "10.png")
    run = run_ingest(server, root, tmp_path / "stack", "--create", "--block-size", "8")
    assert run.returncode == 2
    assert run.stderr.startswith("error: ") and "10.png" in run.stderr
    assert "colored pixels" in run.stderr and run.stdout == ""
    stored = client.get(f"/api/node/{root}/g/stored-blocks/16_16_24/0_0_0").json()
    assert sorted(stored) == [[0, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 0]]
    Image.fromarray(np.repeat(truth[10][..., None], 3, axis=2)).save(
        tmp_path / "stack" / "10.png")  # gray pixels in RGB are accepted
    assert ingest(server, root, tmp_path / "stack") == (8, 4, 12)
    np.testing.assert_array_equal(read(client, root, size_of(truth)), truth)


def test_resume_skips_scattered_stored_blocks(server: LiveServer, client: httpx.Client,
                                              tmp_path: Path) -> None:
    """Blocks already stored anywhere in a batch are skipped, not rewritten: a block the
    server holds with other voxels stays so until --overwrite."""
    root, base = make(client, BlockSize="32")
    truth = volume((96, 96, 128), seed=10)
    np.save(tmp_path / "v.npy", truth)
    for x, y, z in [(0, 0, 0), (2, 0, 0), (3, 1, 1), (1, 2, 2)]:
        block = truth[32 * z:32 * z + 32, 32 * y:32 * y + 32, 32 * x:32 * x + 32]
        assert post_box(client, base, block, (32 * x, 32 * y, 32 * z)).status_code == 200
    stale = np.full((32, 32, 32), 7, np.uint8)
    assert post_box(client, base, stale, (32, 64, 0)).status_code == 200
    assert ingest(server, root, tmp_path / "v.npy", "--batch-blocks", "3", "--workers",
                  "2") == (31, 5, 36)
    got = read(client, root, size_of(truth)).copy()
    assert (got[0:32, 64:96, 32:64] == 7).all()
    got[0:32, 64:96, 32:64] = truth[0:32, 64:96, 32:64]
    np.testing.assert_array_equal(got, truth)
    before = mutation_id(client, root)
    assert ingest(server, root, tmp_path / "v.npy", "--overwrite") == (36, 0, 36)
    assert mutation_id(client, root) > before
    np.testing.assert_array_equal(read(client, root, size_of(truth)), truth)


# ----- pyramid ---------------------------------------------------------------------------

def test_pyramid_and_its_update(server: LiveServer, client: httpx.Client,
                                tmp_path: Path) -> None:
    """4x4x3 blocks: two levels by default; the odd z layer averages with background."""
    root = new_repo(client)
    truth = volume((96, 128, 128), seed=11)
    np.save(tmp_path / "v.npy", truth)
    ingest(server, root, tmp_path / "v.npy", "--create", "--block-size", "32",
           "--voxel-size", "4,4,40")

    def check_levels(full: np.ndarray) -> None:
        padded = np.zeros((128, 128, 128), np.uint8)
        padded[:96] = full
        level1, level2 = halve(padded), halve(halve(padded))
        np.testing.assert_array_equal(read(client, root, (64, 64, 64), name="g_1"), level1)
        np.testing.assert_array_equal(read(client, root, (32, 32, 32), name="g_2"), level2)

    assert pyramid(server, root) == [8, 1]
    check_levels(truth)
    for level in (1, 2):
        ext = extended(client, root, f"g_{level}")
        assert ext["ScaleLevel"] == level and ext["BlockSize"] == [32, 32, 32]
        assert ext["VoxelSize"] == [4 * 2**level, 4 * 2**level, 40 * 2**level]
    assert pyramid(server, root, "--levels", "1") == [0]  # nothing changed since
    # One changed block recomputes one block per level.
    patch = 255 - truth[64:96, 0:32, 96:128]
    np.save(tmp_path / "patch.npy", patch)
    assert ingest(server, root, tmp_path / "patch.npy", "--offset", "96,0,64",
                  "--overwrite") == (1, 0, 1)
    truth[64:96, 0:32, 96:128] = patch
    assert pyramid(server, root) == [1, 1]
    check_levels(truth)


# ----- bad input ---------------------------------------------------------------------------

def _missing(tmp: Path) -> str:
    return str(tmp / "nothing-here.npy")


def _uint16(tmp: Path) -> str:
    np.save(tmp / "wide.npy", np.zeros((32, 32, 32), np.uint16))
    return str(tmp / "wide.npy")


def _good(tmp: Path) -> str:
    np.save(tmp / "v.npy", volume((32, 32, 32)))
    return str(tmp / "v.npy")


def _zarr_group(tmp: Path) -> str:
    group = tmp / "group.zarr"
    ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(group / "raw")}},
            create=True, dtype=ts.uint8, shape=[8, 8, 8]).result()
    (group / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "group"}))
    return str(group)


def _ragged_slices(tmp: Path) -> str:
    (tmp / "ragged").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(tmp / "ragged" / "0.tif")
    Image.fromarray(np.zeros((16, 17), np.uint8)).save(tmp / "ragged" / "1.tif")
    return str(tmp / "ragged")


def _sixteen_bit_slice(tmp: Path) -> str:
    (tmp / "deep").mkdir()
    Image.fromarray(np.zeros((16, 16), np.uint16)).save(tmp / "deep" / "0.tif")
    return str(tmp / "deep")


def _unmatched_glob(tmp: Path) -> str:
    return str(tmp / "*.tif")


@pytest.mark.parametrize("source, options, code, message", [
    (_missing, ["--create"], 2, "no such file or directory"),
    (_uint16, ["--create"], 2, "holds uint16 values"),
    (_zarr_group, ["--create"], 2, "zarr v3 group, not an array"),
    (_ragged_slices, ["--create"], 2, "every slice must have the same size"),
    (_sixteen_bit_slice, ["--create"], 2, "not 8-bit grayscale"),
    (_unmatched_glob, ["--create"], 2, "holds no PNG or TIFF images"),
    (_good, ["--create", "--offset", "16,0,0"], 2, "multiple of the block size 64,64,64"),
    (_good, ["--create", "--compression", "zstd"], 1, "compression"),
    (_good, [], 1, "add --create"),
], ids=["missing", "uint16", "zarr-group", "ragged", "16-bit-slice", "unmatched-glob",
        "create-offset", "compression", "unknown-instance"])
def test_bad_input_writes_nothing(server: LiveServer, client: httpx.Client, tmp_path: Path,
                                  source: Callable[[Path], str], options: list[str],
                                  code: int, message: str) -> None:
    check_refused(server, client, source(tmp_path), options, code, message)


def test_unaligned_offset_into_existing_instance(server: LiveServer, client: httpx.Client,
                                                 tmp_path: Path) -> None:
    root, _ = make(client, BlockSize="32")
    before = mutation_id(client, root)
    run = run_ingest(server, root, _good(tmp_path), "--offset", "0,48,0")
    assert run.returncode == 2
    assert "error: --offset 0,48,0 must be a multiple of the block size 32,32,32" in run.stderr
    assert mutation_id(client, root) == before
    assert extended(client, root)["MinPoint"] is None


def test_not_a_uint8blk_instance(server: LiveServer, client: httpx.Client,
                                 tmp_path: Path) -> None:
    root = new_repo(client)
    before = mutation_id(client, root)
    run = dvidql("ingest", server.url, root, "kv", _good(tmp_path), "--create",
                 "--no-progress")
    assert run.returncode == 1
    assert "error: 'kv' is a keyvalue instance" in run.stderr
    assert mutation_id(client, root) == before


def test_unreachable_server(tmp_path: Path) -> None:
    """A LiveServer never started: its free port has nobody listening."""
    nobody = LiveServer(tmp_path / "unused")
    run = run_ingest(nobody, "abc", _good(tmp_path), "--create")
    assert run.returncode == 1
    assert run.stderr.startswith(f"error: cannot reach {nobody.url}")
    assert "Traceback" not in run.stderr


class _WebPage(http.server.BaseHTTPRequestHandler):
    """What a URL pointing at the wrong service answers: 200 and HTML, whatever the path."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "13")
        self.end_headers()
        self.wfile.write(b"<html></html>")

    do_POST = do_GET

    def log_message(self, *args: object) -> None:
        """Keep the test output quiet."""


def test_not_a_dvid_server(tmp_path: Path) -> None:
    page = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=page.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{page.server_port}"
    try:
        for args in (["ingest", url, "abc", "g", _good(tmp_path), "--no-progress"],
                     ["pyramid", url, "abc", "g"]):
            run = dvidql(*args)
            assert run.returncode == 1, run.stderr
            assert run.stderr.startswith("error: ") and "Traceback" not in run.stderr
            assert f"is {url} a DVID or dvidql server?" in run.stderr
            assert "text/html" in run.stderr
    finally:
        page.shutdown()
        page.server_close()


def test_pyramid_of_unknown_instance(server: LiveServer, client: httpx.Client) -> None:
    root = new_repo(client)
    before = mutation_id(client, root)
    run = dvidql("pyramid", server.url, root, "nosuch")
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("error: ") and "no data instance named 'nosuch'" in run.stderr
    assert mutation_id(client, root) == before


# ----- versions ----------------------------------------------------------------------------

def test_child_version_ingest_invisible_to_parent(server: LiveServer, client: httpx.Client,
                                                  tmp_path: Path) -> None:
    root = new_repo(client)
    first = volume((64, 64, 64), seed=12)
    np.save(tmp_path / "first.npy", first)
    ingest(server, root, tmp_path / "first.npy", "--create", "--block-size", "32")
    version = child(client, root)
    # The child inherits the parent's blocks, so they count as stored there too.
    assert ingest(server, version, tmp_path / "first.npy") == (0, 8, 8)
    changed = 255 - first
    np.save(tmp_path / "changed.npy", changed)
    assert ingest(server, version, tmp_path / "changed.npy", "--overwrite") == (8, 0, 8)
    assert ingest(server, version, tmp_path / "changed.npy", "--offset", "64,0,0") == \
        (8, 0, 8)
    in_child = read(client, version, (128, 64, 64))
    np.testing.assert_array_equal(in_child[:, :, :64], changed)
    np.testing.assert_array_equal(in_child[:, :, 64:], changed)
    in_parent = read(client, root, (128, 64, 64))
    np.testing.assert_array_equal(in_parent[:, :, :64], first)
    assert (in_parent[:, :, 64:] == 0).all()
    # The committed parent refuses ingest with the server's reason and stays as it was.
    before = mutation_id(client, root)
    run = run_ingest(server, root, tmp_path / "changed.npy", "--overwrite")
    assert run.returncode == 1 and "committed" in run.stderr, run.stderr
    assert mutation_id(client, root) == before
    np.testing.assert_array_equal(read(client, root, (64, 64, 64)), first)


# ----- segmentation into labelmap ------------------------------------------------------------

BIG = 2**40  # label ids beyond 32 bits


def segmentation(shape: tuple[int, int, int], seed: int = 0, cell: int = 8) -> np.ndarray:
    """(z, y, x) uint64 cells ``cell`` voxels across with ids above 2^40, some of them 0."""
    rng = np.random.default_rng(seed)
    coarse = tuple(-(-n // cell) for n in shape)
    ids = rng.integers(1, 60, coarse).astype(np.uint64) + np.uint64(BIG)
    ids[rng.random(coarse) < 0.1] = 0
    full = ids.repeat(cell, 0).repeat(cell, 1).repeat(cell, 2)
    return np.ascontiguousarray(full[:shape[0], :shape[1], :shape[2]])


def read_labels(http: httpx.Client, uuid: str, size: Xyz, offset: Xyz = (0, 0, 0),
                name: str = "g", scale: int = 0, supervoxels: bool = True) -> np.ndarray:
    response = http.get(f"/api/node/{uuid}/{name}/raw/0_1_2/{'_'.join(map(str, size))}/"
                        f"{'_'.join(map(str, offset))}",
                        params={"scale": str(scale), "supervoxels": str(supervoxels).lower()})
    assert response.status_code == 200, response.text
    return np.frombuffer(response.content, "<u8").reshape(size[::-1])


def halve_labels(volume: np.ndarray) -> np.ndarray:
    """Most frequent non-zero label of each 2x2x2 group, the smaller on ties, 0 if none:
    counted pairwise among the eight, independently of the server's sorting network."""
    z, y, x = (-(-n // 2) for n in volume.shape)
    padded = np.zeros((2 * z, 2 * y, 2 * x), np.uint64)
    padded[:volume.shape[0], :volume.shape[1], :volume.shape[2]] = volume
    groups = padded.reshape(z, 2, y, 2, x, 2).transpose(0, 2, 4, 1, 3, 5).reshape(-1, 8)
    counts = (groups[:, :, None] == groups[:, None, :]).sum(axis=2)
    counts[groups == 0] = 0
    best = counts.max(axis=1)
    chosen = np.where(counts == best[:, None], groups, np.uint64(2**64 - 1)).min(axis=1)
    return np.where(best > 0, chosen, 0).astype(np.uint64).reshape(z, y, x)


def padded_to(truth: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    out = np.zeros(shape, np.uint64)
    out[:truth.shape[0], :truth.shape[1], :truth.shape[2]] = truth
    return out


def check_labels(http: httpx.Client, uuid: str, truth: np.ndarray, scales: int,
                 name: str = "g") -> None:
    """Voxels, sizes of a few labels (label indices) and every lower scale, against numpy;
    ``truth`` starts at the origin and fills whole blocks once padded."""
    size = size_of(truth)
    np.testing.assert_array_equal(read_labels(http, uuid, size, name=name), truth)
    ids, voxels = np.unique(truth[truth != 0], return_counts=True)
    picks = [0, len(ids) // 2, len(ids) - 1]
    for i in picks:
        answer = http.get(f"/api/node/{uuid}/{name}/size/{int(ids[i])}")
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"voxels": int(voxels[i])}, int(ids[i])
    level = truth
    for scale in range(1, scales + 1):
        level = halve_labels(level)
        np.testing.assert_array_equal(
            read_labels(http, uuid, size_of(level), name=name, scale=scale), level,
            err_msg=f"scale {scale}")


def stored_label_blocks(http: httpx.Client, uuid: str, size: Xyz, name: str = "g") -> int:
    response = http.get(f"/api/node/{uuid}/{name}/blocks/{'_'.join(map(str, size))}/0_0_0",
                        params={"compression": "blocks", "supervoxels": "true"})
    assert response.status_code == 200, response.text
    return len(decode_block_stream(response.content))


def test_labels_npy_create(server: LiveServer, client: httpx.Client, tmp_path: Path) -> None:
    """A 100x90x70 uint64 volume in 32^3 blocks: a labelmap is made (lower scales until one
    block holds it all), edge blocks padded with 0, indices and scales built."""
    root = new_repo(client)
    truth = segmentation((70, 90, 100), seed=21)
    np.save(tmp_path / "seg.npy", truth)
    run = dvidql("ingest", server.url, root, "g", str(tmp_path / "seg.npy"), "--create",
                 "--block-size", "32")
    assert counts(run) == (36, 0, 36)
    assert "36/36" in run.stderr  # the bar
    mb = re.search(r"; ([\d.]+) MB in [\d.]+ s \(([\d.]+) MB/s\)", run.stdout)
    assert mb is not None and float(mb[1]) == pytest.approx(36 * 32**3 * 8 / 1e6, abs=0.1)
    info = client.get(f"/api/node/{root}/g/info").json()
    assert info["Base"]["TypeName"] == "labelmap"
    assert info["Base"]["Compression"] == "LZ4 compression"
    ext = info["Extended"]
    assert ext["BlockSize"] == [32, 32, 32] and ext["MaxDownresLevel"] == 2
    assert ext["MinPoint"] == [0, 0, 0] and ext["MaxPoint"] == [127, 95, 95]
    check_labels(client, root, padded_to(truth, (96, 96, 128)), 2)
    # bodies are the supervoxels while nothing is merged
    np.testing.assert_array_equal(read_labels(client, root, (128, 96, 96), supervoxels=False),
                                  padded_to(truth, (96, 96, 128)))


@pytest.mark.parametrize("version, dtype", [(2, "uint32"), (3, "int64")])
def test_labels_zarr_converted(server: LiveServer, client: httpx.Client, tmp_path: Path,
                               version: int, dtype: str) -> None:
    """uint32 and non-negative int64 labels become uint64; chunks unlike the blocks; created
    with gzip and the lower scales asked for."""
    root = new_repo(client)
    truth = (segmentation((64, 64, 96), seed=22) - np.uint64(BIG)) % np.uint64(2**31)
    path = tmp_path / "seg.zarr"
    spec: dict[str, object] = {"driver": "zarr" if version == 2 else "zarr3",
                               "kvstore": {"driver": "file", "path": str(path)}}
    chunks = [24, 40, 56]
    if version == 2:
        spec["metadata"] = {"chunks": chunks}
    else:
        spec["metadata"] = {"chunk_grid": {"name": "regular",
                                           "configuration": {"chunk_shape": chunks}}}
    store = ts.open(spec, create=True, dtype=getattr(ts, dtype), shape=truth.shape).result()
    store.write(truth.astype(dtype)).result()
    run = run_ingest(server, root, path, "--create", "--block-size", "32", "--compression",
                     "gzip", "--max-downres-level", "1")
    assert counts(run) == (12, 0, 12)
    assert f"ingested seg.zarr (zarr v{version}) into g" in run.stdout
    info = client.get(f"/api/node/{root}/g/info").json()
    assert "gzip" in info["Base"]["Compression"].lower()
    assert info["Extended"]["MaxDownresLevel"] == 1
    check_labels(client, root, truth, 1)


def test_labels_at_offset_into_existing_instance(server: LiveServer, client: httpx.Client,
                                                 tmp_path: Path) -> None:
    """An instance made beforehand keeps its own settings; a negative block-aligned offset."""
    root = new_repo(client)
    assert client.post(f"/api/repo/{root}/instance", json={
        "typename": "labelmap", "dataname": "g", "BlockSize": "16",
        "MaxDownresLevel": "1"}).status_code == 200
    truth = segmentation((32, 40, 48), seed=23)
    np.save(tmp_path / "seg.npy", truth)
    assert ingest(server, root, tmp_path / "seg.npy", "--offset", "16,0,-32") == \
        (3 * 3 * 2, 0, 18)
    got = read_labels(client, root, (64, 48, 64), (0, 0, -32))
    np.testing.assert_array_equal(got[:32, :40, 16:], truth)
    assert (got[:, :, :16] == 0).all() and (got[:, 40:] == 0).all()
    assert client.get(f"/api/node/{root}/g/info").json()["Extended"]["MinPoint"] == \
        [16, 0, -32]
    whole = np.zeros((64, 48, 64), np.uint64)
    whole[:32, :40, 16:] = truth
    np.testing.assert_array_equal(read_labels(client, root, (32, 24, 32), (0, 0, -16),
                                              scale=1), halve_labels(whole))


def test_labels_resume_and_rerun(server: LiveServer, client: httpx.Client,
                                 tmp_path: Path) -> None:
    """A partial run, then the whole volume: only the rest is written, and the lower scales
    of both runs' blocks are all there; a third run writes nothing."""
    root = new_repo(client)
    truth = segmentation((96, 64, 64), seed=24)
    np.save(tmp_path / "first-layer.npy", truth[:32])
    np.save(tmp_path / "all.npy", truth)
    assert ingest(server, root, tmp_path / "first-layer.npy", "--create", "--block-size",
                  "32") == (4, 0, 4)
    assert ingest(server, root, tmp_path / "all.npy") == (8, 4, 12)
    before = mutation_id(client, root)
    assert ingest(server, root, tmp_path / "all.npy", "--create") == (0, 12, 12)
    assert mutation_id(client, root) == before
    info = client.get(f"/api/node/{root}/g/info").json()["Extended"]
    assert info["MaxDownresLevel"] == 1  # made for the first layer: 2x2x1 blocks
    check_labels(client, root, truth, 1)


def test_labels_resume_after_ctrl_c(server: LiveServer, client: httpx.Client,
                                    tmp_path: Path) -> None:
    """SIGINT while one worker posts 8^3 label blocks one by one; the rerun writes exactly the
    missing ones, and indices and every lower scale come out as if in one run."""
    root = new_repo(client)
    truth = segmentation((96, 96, 96), seed=25, cell=6)
    np.save(tmp_path / "seg.npy", truth)
    interrupt_slow_ingest(
        server, root, tmp_path / "seg.npy",
        lambda: client.get(f"/api/node/{root}/g/info").status_code == 200
        and stored_label_blocks(client, root, (96, 96, 96)) >= 20)
    done = stored_label_blocks(client, root, (96, 96, 96))
    assert 20 <= done < 1728
    assert client.get(f"/api/node/{root}/g/info").json()["Extended"]["MaxDownresLevel"] == 4
    assert ingest(server, root, tmp_path / "seg.npy") == (1728 - done, done, 1728)
    check_labels(client, root, truth, 4)


class _StopsInLastStep(DvidClient):
    """A client whose run stops in its lower-scale step after the server stored that step's
    blocks but before it computed their lower scales (a kill or Ctrl-C while the server
    downsamples): the post goes without ``downres``, then the run is interrupted."""

    def post_label_blocks(self, stream: bytes, *, downres: bool) -> None:
        super().post_label_blocks(stream, downres=False)
        if downres:
            raise KeyboardInterrupt


def test_labels_rerun_after_stop_in_lower_scale_step(server: LiveServer, client: httpx.Client,
                                                     tmp_path: Path) -> None:
    """A first z layer ingested whole, then a run of the whole volume stopped in its last
    step: every block is stored but scale 1 still holds the first layer's downsampling. The
    rerun finds nothing to write, and still leaves every scale equal to numpy's."""
    root = new_repo(client)
    truth = segmentation((96, 64, 64), seed=29)
    np.save(tmp_path / "first-layer.npy", truth[:32])
    np.save(tmp_path / "all.npy", truth)
    assert ingest(server, root, tmp_path / "first-layer.npy", "--create", "--block-size", "32",
                  "--max-downres-level", "2") == (4, 0, 4)
    with _StopsInLastStep(server.url, root, "g") as stopping, \
            pytest.raises(KeyboardInterrupt):
        run_ingest_here(stopping, NpySource(tmp_path / "all.npy"), batch_blocks=2,
                        show_progress=False)
    assert stored_label_blocks(client, root, (64, 64, 96)) == 12
    stale = read_labels(client, root, (32, 32, 48), scale=1)
    assert not np.array_equal(stale, halve_labels(truth))
    assert ingest(server, root, tmp_path / "all.npy") == (0, 12, 12)
    check_labels(client, root, truth, 2)


def test_labels_overwrite_keeps_indices(server: LiveServer, client: httpx.Client,
                                        tmp_path: Path) -> None:
    """--overwrite rewrites stored blocks: the old labels' counts leave the indices."""
    root = new_repo(client)
    truth = segmentation((64, 64, 64), seed=26)
    np.save(tmp_path / "seg.npy", truth)
    ingest(server, root, tmp_path / "seg.npy", "--create", "--block-size", "32")
    changed = truth.copy()
    changed[:32, :32, :32] = 77
    np.save(tmp_path / "changed.npy", changed)
    assert ingest(server, root, tmp_path / "changed.npy") == (0, 8, 8)  # stored: skipped
    assert ingest(server, root, tmp_path / "changed.npy", "--overwrite") == (8, 0, 8)
    assert client.get(f"/api/node/{root}/g/size/77").json() == {"voxels": 32**3}
    check_labels(client, root, changed, 1)


def test_labels_child_version(server: LiveServer, client: httpx.Client,
                              tmp_path: Path) -> None:
    """Labels written at a child stay off its committed parent, which refuses ingest."""
    root = new_repo(client)
    first = segmentation((32, 32, 64), seed=27)
    np.save(tmp_path / "first.npy", first)
    ingest(server, root, tmp_path / "first.npy", "--create", "--block-size", "32")
    version = child(client, root)
    assert ingest(server, version, tmp_path / "first.npy") == (0, 2, 2)
    changed = first.copy()
    changed[:, :, 32:] = 5
    np.save(tmp_path / "changed.npy", changed)
    assert ingest(server, version, tmp_path / "changed.npy", "--overwrite") == (2, 0, 2)
    check_labels(client, version, changed, 1)
    check_labels(client, root, first, 1)
    assert client.get(f"/api/node/{root}/g/size/5").status_code == 404
    before = mutation_id(client, root)
    run = run_ingest(server, root, tmp_path / "changed.npy", "--overwrite")
    assert run.returncode == 1 and "committed" in run.stderr, run.stderr
    assert mutation_id(client, root) == before
    # a repeated run at the committed version has nothing to write, and does not try
    assert ingest(server, root, tmp_path / "first.npy") == (0, 2, 2)
    assert mutation_id(client, root) == before


def _float_labels(tmp: Path) -> str:
    np.save(tmp / "f.npy", np.zeros((32, 32, 32), np.float32))
    return str(tmp / "f.npy")


def _negative_labels(tmp: Path) -> str:
    """Negative only in the last z layer of blocks: found before the first is written."""
    labels = np.arange(64**3, dtype=np.int64).reshape(64, 64, 64)
    labels[60, 6, 5] = -3
    np.save(tmp / "neg.npy", labels)
    return str(tmp / "neg.npy")


def _label_volume(tmp: Path) -> str:
    np.save(tmp / "seg.npy", segmentation((32, 32, 32)))
    return str(tmp / "seg.npy")


@pytest.mark.parametrize("source, options, code, message", [
    (_float_labels, ["--create"], 2, "holds float32 values; ingest takes uint8 grayscale"),
    (_float_labels, ["--create", "--type", "labelmap"], 2,
     "a labelmap instance stores uint64 labels"),
    (_negative_labels, ["--create", "--block-size", "32"], 2,
     "holds negative values (-3 at x,y,z 5,6,60)"),
    (_good, ["--create", "--type", "labelmap"], 2, "holds uint8 values"),
    (_label_volume, ["--create", "--type", "uint8blk"], 2,
     "labels go into a labelmap instance"),
    (_label_volume, ["--create", "--type", "labels"], 2, "--type must be uint8blk or labelmap"),
    (_label_volume, ["--create", "--block-size", "12"], 1, "multiples of 8"),
    (_label_volume, ["--create", "--compression", "jpeg"], 1, "Compression gzip, lz4, none"),
    (_label_volume, [], 1, "add --create"),
], ids=["float", "float-as-labels", "negative", "uint8-as-labels", "labels-as-uint8",
        "bad-type", "block-size", "jpeg", "unknown-instance"])
def test_bad_labels_write_nothing(server: LiveServer, client: httpx.Client, tmp_path: Path,
                                  source: Callable[[Path], str], options: list[str],
                                  code: int, message: str) -> None:
    check_refused(server, client, source(tmp_path), options, code, message)


def test_bad_labels_into_existing_instances(server: LiveServer, client: httpx.Client,
                                            tmp_path: Path) -> None:
    """Existing instances of the other type, and negative labels into an existing labelmap:
    refused before any block is written."""
    root = new_repo(client)
    for name, kind in (("g", "labelmap"), ("gray", "uint8blk")):
        assert client.post(f"/api/repo/{root}/instance", json={
            "typename": kind, "dataname": name, "BlockSize": "32"}).status_code == 200
    before = mutation_id(client, root)
    for name, source, message in (
            ("g", _negative_labels(tmp_path), "holds negative values"),
            ("g", _good(tmp_path), "a labelmap instance stores uint64 labels"),
            ("gray", _label_volume(tmp_path), "labels go into a labelmap instance")):
        run = dvidql("ingest", server.url, root, name, source, "--no-progress")
        assert run.returncode == 2, run.stderr
        assert run.stderr.startswith("error: ") and message in run.stderr, run.stderr
        assert "Traceback" not in run.stderr
    run = dvidql("ingest", server.url, root, "g", _label_volume(tmp_path), "--type",
                 "uint8blk", "--no-progress")
    assert run.returncode == 2 and "'g' is a labelmap instance, not uint8blk" in run.stderr
    assert mutation_id(client, root) == before
    assert stored_label_blocks(client, root, (64, 64, 64)) == 0
