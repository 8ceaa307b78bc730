"""neuroglancer end to end: the real web client, in headless Chromium, opens the demo grayscale
through ``dvid://`` and draws the tissue our server holds, at full and at coarse resolution.

The client is the one built into PyPI's ``neuroglancer`` package, driven with Selenium through
Debian's Chromium and ChromeDriver (``scripts/install-browser``, run here if they are missing).
The test asserts on three things: the requests the server answered (its access log), the
browser's console, and the screenshot's pixels, which must match the slice that
``raw/xy`` returns for the same plane.
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
