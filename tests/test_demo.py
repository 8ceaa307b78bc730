"""The demo store: created once, served, and its grayscale looks like tissue at every scale."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from tests.conftest import LiveServer


def test_demo_grayscale(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    for expected in ("created demo repo", "already present"):
        run = subprocess.run([sys.executable, "-m", "dvidql", "demo", "--data", str(data)],
                             capture_output=True, text=True, check=True)
        assert expected in run.stdout
    live = LiveServer(data)
    live.start()
    try:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            (repo,) = http.get("/api/repos/info").json().values()
            instances = repo["DataInstances"]
            assert {"grayscale", "grayscale_1", "grayscale_2"} <= set(instances)
            ext = instances["grayscale"]["Extended"]
            assert ext["MinPoint"] == [0, 0, 0] and ext["MaxPoint"] == [255, 255, 255]
            assert ext["BlockSize"] == [64, 64, 64]
            assert "jpeg" in instances["grayscale"]["Base"]["Compression"]
            assert instances["grayscale_2"]["Extended"]["MaxPoint"] == [63, 63, 63]
            for name, size in (("grayscale", 256), ("grayscale_1", 128), ("grayscale_2", 64)):
                png = http.get(f"/api/node/:master/{name}/raw/xy/{size}_{size}/0_0_{size // 2}")
                pixels = np.asarray(Image.open(io.BytesIO(png.content))).astype(int)
                # bright cell interiors, dark membranes, nothing flat or empty
                assert 140 < np.median(pixels) < 210, name
                assert (pixels < np.median(pixels) - 50).mean() > 0.03, name
                assert pixels.std() > 15, name
    finally:
        live.stop()
