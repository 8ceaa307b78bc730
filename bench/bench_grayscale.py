"""uint8blk grayscale through REST against tensorstore zarr on local disk, in the same run.

A 512^3 EM-like synthetic volume is written through ``POST .../raw/0_1_2`` in 512x512x64 slabs
into 64^3-block instances of a real ``dvidql serve`` (lz4, and jpeg:90), then 256^3 boxes at
random, unaligned offsets are read with ``GET .../raw/0_1_2``. The baseline is tensorstore
writing the same slabs to, and reading the same boxes from, a zarr v2 array in a temporary
directory with 64^3 chunks and blosc lz4 (clevel 5, no shuffle). Reads are warm: the page cache
holds both stores and every box was read once before timing. A bare Starlette handler serving
16 MiB through the same uvicorn configuration and client gives the transport's ceiling. The
block codecs alone (lz4, jpeg q90 on one 64^3 block) are compared with ``np.copyto`` of the
same bytes into a preallocated block.

Each write repeat stores a slightly different volume (low bit flipped) in a fresh instance or
array, because dvidql's blob store is content-addressed and would skip blocks it already holds.
dvidql commits each POST durably (fsync); tensorstore's writes end in the page cache.

Run: ``python -m bench.bench_grayscale [--boxes 20] [--repeats 3] [--no-jpeg]``.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import httpx
import numpy as np
from scipy import ndimage

from bench.harness import (
    Bench,
    baseline_command,
    dvidql_command,
    free_port,
    open_zarr,
    serve,
    timed_writes,
)
from dvidql.codec.imageblock import BlockCodec, decode_block, encode_block

SIZE = 512  # volume edge
BOX = 256  # read box edge
BLOCK = 64  # block / chunk edge
SLAB = 64  # z thickness of one write
BOX_BYTES = BOX**3
BLOCK_SHAPE = (BLOCK, BLOCK, BLOCK)
Offset = tuple[int, int, int]  # x, y, z


def synthetic_volume(seed: int, n: int = SIZE) -> np.ndarray:
    """EM-like (z, y, x) uint8 voxels: smooth cell-sized regions with dark boundaries plus
    fine-grained noise, so lz4 barely compresses it (as with real EM) and jpeg q90 gets about
    4x. Deterministic for a seed; about 5 s for 512^3."""
    rng = np.random.default_rng(seed)
    coarse = ndimage.gaussian_filter(rng.standard_normal((n // 4,) * 3, dtype=np.float32),
                                     2.0, mode="wrap")
    coarse /= coarse.std()
    cells = (25 * np.tanh(coarse) - 100 * (np.abs(coarse) < 0.15)).astype(np.float32)
    vol = rng.standard_normal((n,) * 3, dtype=np.float32)
    vol *= 150
    vol.reshape(n // 4, 4, n // 4, 4, n // 4, 4)[...] += cells[:, None, :, None, :, None]
    ndimage.gaussian_filter(vol, 1.5, truncate=2.5, output=vol)
    vol += 150
    np.clip(vol, 0, 255, out=vol)
    return vol.astype(np.uint8)


def random_offsets(count: int, seed: int, size: int = SIZE, box: int = BOX) -> list[Offset]:
    """Box offsets uniform in [0, size - box] per axis, mostly not block-aligned."""
    rng = np.random.default_rng(seed)
    return [(int(x), int(y), int(z)) for x, y, z in rng.integers(0, size - box + 1, (count, 3))]


def box_of(volume: np.ndarray, offset: Offset, box: int = BOX) -> np.ndarray:
    x, y, z = offset
    return volume[z:z + box, y:y + box, x:x + box]


def write_group(size: int) -> str:
    return f"write {size}x{size}x{SLAB} slabs"


def read_group(box: int) -> str:
    return f"read {box}^3 boxes"


class HttpConnection:
    """One keep-alive HTTP/1.1 connection on a blocking socket that reads each response body
    straight into a caller's buffer, so the client costs about one memcpy per byte and the
    server, not the client, sets the pace (httpx manages only a few hundred MB/s)."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = f"{host}:{port}".encode()
        self._head = bytearray(1 << 16)

    def close(self) -> None:
        self.sock.close()

    def request(self, method: str, path: str, body: Any = None,
                out: bytearray | None = None) -> memoryview:
        """The response body (a view of ``out`` when it is large enough); non-2xx raises."""
        data = None if body is None else memoryview(body).cast("B")
        self.sock.sendall(b"%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n\r\n" % (
            method.encode(), path.encode(), self.host, 0 if data is None else data.nbytes))
        if data is not None:
            self.sock.sendall(data)
        head = memoryview(self._head)
        got = 0
        while (end := self._head.find(b"\r\n\r\n", 0, got)) < 0:
            received = self.sock.recv_into(head[got:])
            if not received:
                raise ConnectionError("server closed the connection")
            got += received
        lines = bytes(self._head[:end]).split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next((int(line.split(b":", 1)[1]) for line in lines[1:]
                       if line[:15].lower() == b"content-length:"), 0)
        buffer = out if out is not None and len(out) >= length else bytearray(length)
        view = memoryview(buffer)[:length]
        filled = got - end - 4
        view[:filled] = head[end + 4:got]
        while filled < length:
            received = self.sock.recv_into(view[filled:])
            if not received:
                raise ConnectionError("server closed the connection mid-body")
            filled += received
        if not 200 <= status < 300:
            raise RuntimeError(f"{method} {path}: {status} {bytes(view[:300])!r}")
        return view


def write_variant(volume: np.ndarray, repeat: int) -> np.ndarray:
    """The volume for write repeat ``repeat``: repeat 0 is the volume itself (the one later
    read), others flip the low bit so no block repeats an earlier repeat's content."""
    return volume if repeat == 0 else volume ^ np.uint8(repeat)


def run_tensorstore(bench: Bench, volume: np.ndarray, offsets: list[Offset],
                    repeats: int) -> None:
    """The baseline: zarr v2, 64^3 chunks, blosc lz4, in a temporary directory."""
    with tempfile.TemporaryDirectory(prefix="bench-zarr-") as root:
        stores: dict[int, Any] = {}

        def start(repeat: int) -> Callable[[int, np.ndarray], object]:
            store = open_zarr(f"{root}/r{repeat}", volume.shape, "|u1", BLOCK, shuffle=0)
            stores[repeat] = store
            return lambda z, slab: store[z:z + SLAB].write(slab).result()

        timed_writes(bench, "tensorstore zarr blosc-lz4", volume, SLAB, repeats, start,
                     write_variant, baseline=True, group=write_group(volume.shape[0]))
        store = stores[0]

        def read(i: int) -> np.ndarray:
            x, y, z = offsets[i]
            return store[z:z + BOX, y:y + BOX, x:x + BOX].read().result()

        bench.measure("tensorstore zarr blosc-lz4", read, len(offsets), baseline=True,
                      group=read_group(BOX), nbytes=BOX_BYTES)
        for i, offset in enumerate(offsets):
            if not np.array_equal(read(i), box_of(volume, offset)):
                raise AssertionError(f"tensorstore box at {offset} differs")


def add_grayscale(http: httpx.Client, root: str, name: str, codec: str) -> None:
    """A uint8blk instance ``name`` with 64^3 blocks and block compression ``codec``."""
    http.post(f"/api/repo/{root}/instance", json={
        "typename": "uint8blk", "dataname": name, "BlockSize": f"{BLOCK},{BLOCK},{BLOCK}",
        "Compression": codec}).raise_for_status()


def slab_writer(conn: HttpConnection, root: str, name: str,
                size: int) -> Callable[[int, np.ndarray], object]:
    """``write(z, slab)``: POST one size x size x SLAB slab at depth z through ``raw``."""
    prefix = f"/api/node/{root}/{name}/raw/0_1_2/{size}_{size}_{SLAB}/0_0_"
    return lambda z, slab: conn.request("POST", f"{prefix}{z}", slab)


def run_dvidql(bench: Bench, volume: np.ndarray, offsets: list[Offset], repeats: int,
               codecs: list[str], *, box: int = BOX, store: Sequence[str] | None = None,
               env: Mapping[str, str] | None = None, label: str = "dvidql REST") -> None:
    """Writes and reads through a real ``dvidql serve`` on the store named by the serve
    options ``store`` (and ``env``), by default on a temporary data directory."""
    with tempfile.TemporaryDirectory(prefix="bench-dvidql-") as data:
        port = free_port()
        cmd = dvidql_command(port, *(store if store is not None else ("--data", data)))
        with serve(cmd, port, dict(env or {})) as url, \
                httpx.Client(base_url=url, timeout=60) as http:
            root = http.post("/api/repos", json={"alias": "bench"}).json()["root"]
            conn = HttpConnection("127.0.0.1", port)
            try:
                for codec in codecs:
                    _dvidql_codec(bench, http, conn, root, codec, volume, offsets, repeats,
                                  box=box, label=f"{label} {codec}")
            finally:
                conn.close()


def _dvidql_codec(bench: Bench, http: httpx.Client, conn: HttpConnection, root: str,
                  codec: str, volume: np.ndarray, offsets: list[Offset], repeats: int, *,
                  box: int, label: str) -> None:
    names: dict[int, str] = {}

    def start(repeat: int) -> Callable[[int, np.ndarray], object]:
        name = f"{codec.replace(':', 'q')}r{repeat}"
        add_grayscale(http, root, name, codec)
        names[repeat] = name
        return slab_writer(conn, root, name, volume.shape[0])

    timed_writes(bench, label, volume, SLAB, repeats, start, write_variant,
                 group=write_group(volume.shape[0]))
    base = f"/api/node/{root}/{names[0]}/raw/0_1_2/{box}_{box}_{box}/"
    paths = [base + "_".join(map(str, offset)) for offset in offsets]
    out = bytearray(box**3)
    bench.measure(label, lambda i: conn.request("GET", paths[i], out=out), len(paths),
                  group=read_group(box), nbytes=box**3)
    for path, offset in zip(paths, offsets, strict=True):
        got = np.frombuffer(conn.request("GET", path, out=out), np.uint8).reshape((box,) * 3)
        want = box_of(volume, offset, box)
        if codec.startswith("jpeg"):
            rmse = float(np.sqrt(np.mean((got.astype(np.float32) - want) ** 2)))
            if rmse > 4:
                raise AssertionError(f"{label} box at {offset}: RMSE {rmse:.2f} grey levels")
        elif not np.array_equal(got, want):
            raise AssertionError(f"{label} box at {offset} differs from what was written")


def run_transport(bench: Bench, count: int) -> None:
    """The ceiling: a bare Starlette handler returning 16 MiB, same server stack and client."""
    port = free_port()
    with serve(baseline_command(port), port, {"BENCH_VALUE_BYTES": str(BOX_BYTES)}):
        conn = HttpConnection("127.0.0.1", port)
        out = bytearray(BOX_BYTES)
        try:
            bench.measure("bare starlette 16 MiB (transport ceiling)",
                          lambda i: conn.request("GET", "/api/node/u/kv/key/k", out=out),
                          count, group=read_group(BOX), nbytes=BOX_BYTES)
        finally:
            conn.close()


def run_codecs(bench: Bench, volume: np.ndarray, count: int = 8) -> dict[str, float]:
    """encode_block/decode_block on 64^3 blocks of the volume against np.copyto of the same
    bytes; returns each codec's compression ratio."""
    group = "64^3 block codecs"
    blocks = [np.ascontiguousarray(volume[k * BLOCK:(k + 1) * BLOCK, k * BLOCK:(k + 1) * BLOCK,
                                          k * BLOCK:(k + 1) * BLOCK]) for k in range(count)]
    n = 200
    nbytes = BLOCK**3
    dst = np.empty(BLOCK_SHAPE, np.uint8)
    bench.measure("np.copyto", lambda i: np.copyto(dst, blocks[i % count]), n,
                  baseline=True, group=group, nbytes=nbytes)
    ratios: dict[str, float] = {}
    for name, codec in (("lz4", BlockCodec("lz4")), ("jpeg q90", BlockCodec("jpeg", 90))):
        stored = [encode_block(b, codec) for b in blocks]
        ratios[name] = round(count * nbytes / sum(len(s) for s in stored), 2)
        bench.measure(f"{name} encode_block", lambda i, c=codec: encode_block(
            blocks[i % count], c), n, group=group, nbytes=nbytes)
        bench.measure(f"{name} decode_block", lambda i, s=stored: decode_block(
            s[i % count], BLOCK_SHAPE), n, group=group, nbytes=nbytes)
    return ratios


def _mb(bench: Bench, group: str, case: str) -> float:
    result = next(r for r in bench.results if r.group.startswith(group) and r.name == case)
    assert result.mb_per_s is not None
    return result.mb_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--boxes", type=int, default=20, help="random 256^3 boxes to read")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-jpeg", action="store_true", help="skip the jpeg:90 instance")
    args = parser.parse_args()
    codecs = ["lz4"] if args.no_jpeg else ["lz4", "jpeg:90"]

    started = time.perf_counter()
    volume = synthetic_volume(args.seed)
    offsets = random_offsets(args.boxes, args.seed + 1)
    print(f"volume {SIZE}^3 made in {time.perf_counter() - started:.1f} s "
          f"(mean {volume.mean():.1f}, std {volume.std():.1f})")
    bench = Bench("grayscale", warmup=1, repeats=args.repeats, params={
        "volume": f"{SIZE}^3 uint8", "block": f"{BLOCK}^3", "box": f"{BOX}^3",
        "boxes": args.boxes, "seed": args.seed, "server": "dvidql serve, uvicorn uvloop+httptools",
        "client": "raw socket keep-alive", "zarr": "v2, blosc lz4 clevel 5 noshuffle, file",
        "reads": "warm (page cache)", "MB": "10^6 bytes uncompressed"})

    run_tensorstore(bench, volume, offsets, args.repeats)
    run_dvidql(bench, volume, offsets, args.repeats, codecs)
    run_transport(bench, args.boxes)
    compression = run_codecs(bench, volume)

    ts_read = _mb(bench, "read", "tensorstore zarr blosc-lz4")
    ts_write = _mb(bench, "write", "tensorstore zarr blosc-lz4")
    ceiling = _mb(bench, "read", "bare starlette 16 MiB (transport ceiling)")
    summary: dict[str, Any] = {}
    for codec in codecs:
        case = f"dvidql REST {codec}"
        summary[f"read MB/s {case} / tensorstore"] = round(_mb(bench, "read", case) / ts_read, 3)
        summary[f"write MB/s {case} / tensorstore"] = round(
            _mb(bench, "write", case) / ts_write, 3)
    summary["read MB/s dvidql REST lz4 / transport ceiling"] = round(
        _mb(bench, "read", "dvidql REST lz4") / ceiling, 3)
    summary["read MB/s tensorstore / transport ceiling"] = round(ts_read / ceiling, 3)
    copy = _mb(bench, "64^3", "np.copyto")
    for name in ("lz4", "jpeg q90"):
        for op in ("encode_block", "decode_block"):
            summary[f"{name} {op} MB/s / np.copyto"] = round(
                _mb(bench, "64^3", f"{name} {op}") / copy, 4)
    summary["compression ratio (64^3 blocks)"] = compression
    summary["goal: REST lz4 read >= 0.5 x tensorstore"] = (
        "met" if summary["read MB/s dvidql REST lz4 / tensorstore"] >= 0.5 else "not met")
    summary["run seconds"] = round(time.perf_counter() - started, 1)
    bench.report(summary)


if __name__ == "__main__":
    main()
