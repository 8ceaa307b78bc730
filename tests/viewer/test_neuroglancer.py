"""neuroglancer end to end: the real web client, in headless Chromium, opens the demo grayscale
through ``dvid://`` and draws the tissue our server holds, at full and at coarse resolution;
it opens the demo segmentation (a labelmap) and draws its bodies, and a merge made through
GraphQL shows in the next view.

The client is the one built into PyPI's ``neuroglancer`` package, driven with Selenium through
Debian's Chromium and ChromeDriver (``scripts/install-browser``, run here if they are missing).
The tests assert on three things: the requests the server answered (its access log), the
browser's console, and the screenshot's pixels, which must match the slice that
``raw/xy`` returns for the same plane, or, for the segmentation, draw each body the server
holds in the plane in one color.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SHOT = (800, 600)  # screenshot width, height
VOLUME = 256  # the demo grayscale's edge

# One access-log line of uvicorn: client - "METHOD PATH HTTP/1.1" STATUS
ACCESS = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[\d.]+" (?P<status>\d{3})')


def _install_browser() -> None:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        subprocess.run(["bash", str(ROOT / "scripts" / "install-browser")], check=True)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("ng") / "demo"
    subprocess.run([sys.executable, "-m", "dvidql", "demo", "--data", str(data)],
                   check=True, capture_output=True)
    live = LiveServer(data, ["--access-log", "--log-level", "info"],
                      output=data.parent / "server.log")
    live.start()
    yield live
    live.stop()


@pytest.fixture(scope="module")
def browser(demo_server: LiveServer) -> Iterator[tuple[Any, Any, list[str]]]:
    """A neuroglancer viewer (its Python-side server on loopback), the Chromium driving it,
    and every console message and JavaScript error the page logged."""
    _install_browser()
    import neuroglancer
    import neuroglancer.webdriver
    import selenium.webdriver
    from selenium.webdriver.chrome.service import Service

    class HeadlessChromium(neuroglancer.webdriver.Webdriver):
        """Debian's Chromium with software WebGL; Selenium may not download a driver here."""

        def _init_chrome(self) -> None:
            options = selenium.webdriver.ChromeOptions()
            options.enable_bidi = True
            options.binary_location = str(CHROMIUM)
            for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                        "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                        "--disable-background-networking", "--disable-component-update",
                        "--disable-sync", "--no-first-run", "--window-size=1000,800"):
                options.add_argument(arg)
            self.driver = selenium.webdriver.Chrome(
                options=options, service=Service(str(CHROMEDRIVER)))

    # The Python-integrated client asks Python for credentials of every DVID server it reads.
    os.environ["DVID_CREDENTIALS"] = f"{demo_server.url}=unused"
    neuroglancer.set_server_bind_address("127.0.0.1")
    viewer = neuroglancer.Viewer()
    console: list[str] = []
    try:
        with HeadlessChromium(viewer, headless=True, print_logs=False) as driver:
            driver.add_log_listener(lambda entry: console.append(str(entry.text)))
            yield viewer, driver, console
    finally:
        neuroglancer.stop()
        os.environ.pop("DVID_CREDENTIALS", None)


def _requests(live: LiveServer) -> list[tuple[str, str, int]]:
    assert live.output is not None
    text = live.output.read_text(errors="replace")
    return [(m["method"], m["path"], int(m["status"])) for m in ACCESS.finditer(text)]


def _expected_slice(live: LiveServer, name: str, size: int, z: int) -> np.ndarray:
    png = httpx.get(f"{live.url}/api/node/:master/{name}/raw/xy/{size}_{size}/0_0_{z}",
                    timeout=30)
    png.raise_for_status()
    return np.asarray(Image.open(io.BytesIO(png.content)).convert("L")).astype(np.float32)


def _best_match(shot: np.ndarray, expected: np.ndarray) -> tuple[float, int, int]:
    """Highest normalized correlation of ``expected`` with a same-sized window of the
    screenshot near its centre, and the window's offset from the centre."""
    h, w = expected.shape
    want = (expected - expected.mean()) / expected.std()
    top0, left0 = (shot.shape[0] - h) // 2, (shot.shape[1] - w) // 2
    best = (-1.0, 0, 0)
    for dy in range(-6, 7):
        for dx in range(-6, 7):
            window = shot[top0 + dy:top0 + dy + h, left0 + dx:left0 + dx + w]
            spread = window.std()
            if spread == 0:
                continue
            corr = float(np.mean((window - window.mean()) / spread * want))
            best = max(best, (corr, dy, dx))
    return best


@pytest.mark.parametrize(("zoom", "instance"), [(1, "grayscale"), (4, "grayscale_2")])
def test_neuroglancer_draws_demo_grayscale(demo_server: LiveServer, browser: Any,
                                           zoom: int, instance: str) -> None:
    """At one voxel per pixel neuroglancer reads full resolution; zoomed out 4x it reads the
    pyramid's quarter-resolution instance. Either way it draws what the server holds."""
    import neuroglancer

    viewer, driver, console = browser
    uuid = httpx.get(f"{demo_server.url}/api/repos/info").json().popitem()[0]
    logged_before = len(_requests(demo_server))
    with viewer.txn() as state:
        state.layers.clear()
        state.layers["em"] = neuroglancer.ImageLayer(
            source=f"dvid://{demo_server.url}/{uuid}/grayscale")
        state.dimensions = neuroglancer.CoordinateSpace(
            names=["x", "y", "z"], units="nm", scales=[8, 8, 8])
        state.position = [VOLUME / 2, VOLUME / 2, VOLUME / 2 + 0.5]  # voxel 128's centre
        state.cross_section_scale = zoom
        state.layout = "xy"
        state.show_axis_lines = False
        state.show_default_annotations = False
        state.show_scale_bar = False
    driver.driver.get(viewer.get_viewer_url())  # a fresh page: no chunks cached by a view before
    driver.sync()
    shot = viewer.screenshot(size=list(SHOT)).screenshot
    pixels = np.asarray(Image.open(io.BytesIO(shot.image)).convert("RGB")).astype(np.float32)

    # The server answered the client's discovery and block requests, all with 200.
    answered = _requests(demo_server)[logged_before:]
    assert answered, "neuroglancer sent no request to the server"
    failed = [(m, p, s) for m, p, s in answered if s != 200]
    assert not failed, failed
    blocks = Counter(re.sub(r"^/api/node/[0-9a-f]+/([^/]+)/subvolblocks/.*$", r"\1", p)
                     for _, p, _ in answered if "/subvolblocks/64_64_64/" in p)
    assert blocks[instance] >= (16 // zoom**2 or 1), blocks
    assert all("app=Neuroglancer" in p for _, p, _ in answered if "/subvolblocks/" in p)

    # The console shows no trouble with our volume instances (keyvalue ones are skipped).
    trouble = [line for line in console if "grayscale" in line or "rror" in line]
    assert not trouble, trouble

    # The picture is grey (an image layer) and is the slice the server holds.
    assert np.abs(pixels[..., 0] - pixels[..., 1]).max() <= 1
    size = VOLUME // zoom
    expected = _expected_slice(demo_server, instance, size, VOLUME // 2 // zoom)
    corr, dy, dx = _best_match(pixels[..., 1], expected)  # one voxel of it per pixel
    assert corr > 0.99, (corr, dy, dx)


# ----- segmentation ----------------------------------------------------------------------------

SEGMENT_BLOCKS = re.compile(
    r"^/api/node/(?P<node>[0-9a-f]+)/segmentation/raw/0_1_2/64_64_64/\d+_\d+_\d+"
    r"\?(?=.*compression=googlegzip)(?=.*scale=(?P<scale>\d+))")
INTERIOR = 8  # pixels kept clear of a body's border, more than neuroglancer's drift here


def _slice_labels(live: LiveServer, node: str, z: int, supervoxels: bool) -> np.ndarray:
    """The (y, x) labels of the demo segmentation's xy plane ``z`` at ``node``."""
    answer = httpx.get(f"{live.url}/api/node/{node}/segmentation/raw/0_1_2/"
                       f"{VOLUME}_{VOLUME}_1/0_0_{z}",
                       params={"supervoxels": str(supervoxels).lower()}, timeout=30)
    answer.raise_for_status()
    return np.frombuffer(answer.content, "<u8").reshape(VOLUME, VOLUME)


def _interior(mask: np.ndarray, margin: int) -> np.ndarray:
    """The pixels of ``mask`` at least ``margin`` pixels from its border, along x and y."""
    inner = mask.copy()
    for shift in range(1, margin + 1):
        inner[shift:] &= mask[:-shift]
        inner[:-shift] &= mask[shift:]
        inner[:, shift:] &= mask[:, :-shift]
        inner[:, :-shift] &= mask[:, shift:]
    inner[:margin] = inner[-margin:] = inner[:, :margin] = inner[:, -margin:] = False
    return inner


def _split_cell(bodies: np.ndarray, supervoxels: np.ndarray) -> tuple[int, int]:
    """The demo cell left as two bodies (supervoxels 2c-1 and 2c, each its own body) with the
    most interior in this plane: the pair of bodies a proofreader would merge."""
    best: tuple[int, int, int] = (0, 0, 0)
    for left in np.unique(supervoxels).tolist():
        right = left + 1
        if left % 2 == 0 or not (bodies == right).any() or not (bodies == left).any():
            continue
        size = min(int(_interior(bodies == left, INTERIOR).sum()),
                   int(_interior(bodies == right, INTERIOR).sum()))
        best = max(best, (size, left, right))
    assert best[0] > 100, "no split cell in the plane"
    return best[1], best[2]


def _draw_segmentation(viewer: Any, driver: Any, live: LiveServer, node: str) -> np.ndarray:
    """A fresh page's screenshot of the segmentation alone, one voxel per pixel at z 128, as
    (height, width, 3) RGB; bodies in opaque colors, none highlighted."""
    import neuroglancer

    with viewer.txn() as state:
        state.layers.clear()
        state.layers["seg"] = neuroglancer.SegmentationLayer(
            source=f"dvid://{live.url}/{node}/segmentation", selected_alpha=1.0,
            hover_highlight=False)
        state.dimensions = neuroglancer.CoordinateSpace(
            names=["x", "y", "z"], units="nm", scales=[8, 8, 8])
        state.position = [VOLUME / 2, VOLUME / 2, VOLUME / 2 + 0.5]
        state.cross_section_scale = 1
        state.layout = "xy"
        state.show_axis_lines = False
        state.show_default_annotations = False
        state.show_scale_bar = False
    driver.driver.get(viewer.get_viewer_url())  # a fresh page: nothing cached by a view before
    driver.sync()
    shot = viewer.screenshot(size=list(SHOT)).screenshot
    return np.asarray(Image.open(io.BytesIO(shot.image)).convert("RGB")).astype(np.int32)


def _colors(pixels: np.ndarray, bodies: np.ndarray, labels: list[int]) -> list[np.ndarray]:
    """The color neuroglancer drew over the interior of each body (the volume's plane is
    centred in the screenshot), checked to be one color there."""
    top, left = (SHOT[1] - VOLUME) // 2, (SHOT[0] - VOLUME) // 2
    plane = pixels[top:top + VOLUME, left:left + VOLUME]
    found = []
    for label in labels:
        drawn = plane[_interior(bodies == label, INTERIOR)]
        color = np.median(drawn, axis=0)
        same = (np.abs(drawn - color).max(axis=1) <= 2).mean()
        assert same > 0.98, (label, color, same)
        found.append(color)
    return found


def test_neuroglancer_shows_a_graphql_merge(demo_server: LiveServer, browser: Any) -> None:
    """The demo segmentation through dvid:// at the master leaf: every body drawn in one
    color, the two bodies of a split cell in two; after GraphQL's mergeBodies a fresh view
    draws the merged body in the target's color, read anew from the server."""
    viewer, driver, console = browser
    root = httpx.get(f"{demo_server.url}/api/repos/info").json().popitem()[0]
    leaf = httpx.get(f"{demo_server.url}/api/repo/{root}/branch-versions/master").json()[0]
    z = VOLUME // 2
    bodies = _slice_labels(demo_server, leaf, z, supervoxels=False)
    target, merged = _split_cell(bodies, _slice_labels(demo_server, leaf, z, supervoxels=True))

    logged = len(_requests(demo_server))
    before = _draw_segmentation(viewer, driver, demo_server, leaf)
    answered = _requests(demo_server)[logged:]
    assert answered, "neuroglancer sent no request to the server"
    assert not [a for a in answered if a[2] != 200], answered
    scales = Counter(m["scale"] for _, p, _ in answered
                     if (m := SEGMENT_BLOCKS.match(p)) and m["node"] == leaf)
    assert scales["0"] >= 16, scales  # the plane's 4x4 blocks at full resolution
    # bodies are drawn as the server holds them: one color each, different for neighbours
    shown = [int(b) for b in np.unique(bodies)
             if b and _interior(bodies == b, INTERIOR).sum() > 50]
    palette = np.array(_colors(before, bodies, shown))
    assert len(np.unique(palette, axis=0)) >= 0.9 * len(shown)
    target_color, merged_color = _colors(before, bodies, [target, merged])
    assert np.abs(target_color - merged_color).max() > 30, (target_color, merged_color)

    mutation = """mutation($version: String!, $target: UInt64!, $merged: [UInt64!]!) {
      mergeBodies(version: $version, instance: "segmentation", target: $target,
                  merged: $merged, app: "neuroglancer-test") { target merged }
    }"""
    answer = httpx.post(f"{demo_server.url}/graphql", json={"query": mutation, "variables": {
        "version": leaf, "target": str(target), "merged": [str(merged)]}}, timeout=30).json()
    assert "errors" not in answer, answer
    assert answer["data"]["mergeBodies"] == {"target": str(target), "merged": [str(merged)]}

    logged = len(_requests(demo_server))
    after = _draw_segmentation(viewer, driver, demo_server, leaf)
    again = _requests(demo_server)[logged:]
    assert not [a for a in again if a[2] != 200], again
    assert sum(1 for _, p, _ in again if SEGMENT_BLOCKS.match(p)) >= 16  # not from a cache
    # the merged half now wears the target's color; the rest of the picture is unchanged
    now_target, now_merged = _colors(after, bodies, [target, merged])
    assert np.abs(now_merged - target_color).max() <= 2, (now_merged, target_color)
    assert np.abs(now_target - target_color).max() <= 2, (now_target, target_color)
    others = [b for b in shown if b not in (target, merged)]
    np.testing.assert_allclose(_colors(after, bodies, others), _colors(before, bodies, others),
                               atol=2)

    trouble = [line for line in console if "segmentation" in line or "rror" in line]
    assert not trouble, trouble
