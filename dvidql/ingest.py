"""``dvidql ingest`` and ``dvidql pyramid``: clients of a running server's uint8blk and
labelmap HTTP API.

The serving process owns the store, so ingest goes through the same HTTP API as any client
(and so works against DVID too). The volume is cut into batches of whole blocks; for each
batch ingest asks which blocks the version already stores and posts only the missing ones.
That makes a run resumable and idempotent: after an interruption the same command continues
where it stopped, and a repeated run writes no new voxels. Sources are read lazily, one batch
at a time, so a volume never has to fit in memory.

Grayscale (uint8) goes to a uint8blk instance: ``stored-blocks`` says what is stored, and
``blocks`` takes packed voxels. A segmentation (uint64, or uint32 or non-negative int64
converted) goes to a labelmap instance: the block stream of ``GET blocks`` says what is
stored, and ``POST blocks`` takes gzipped compressed label blocks, so the server keeps label
indices in step. Those posts leave the lower scales for later (``downres=false``) except the
last, which computes them once for everything the run wrote. A dvidql server marks every
block written since its lower scales were last computed, and that computation covers every
marked block, not only those of the post asking for it; so a run stopped before or during
its last step leaves marks, and the next run's last post clears them. A run that finds every
block stored asks for that computation alone (``POST downres``), which writes only lower
scales an interrupted run left; so a repeated run writes nothing when nothing was left.
"""

from __future__ import annotations

import glob
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import quote

import httpx
import numpy as np

from dvidql.codec.blockstream import decode_block_stream, encode_block_stream
from dvidql.codec.labelblock import encode_label_block
from dvidql.codec.serialization import gzip_bytes

__all__ = [
    "CreateSettings",
    "DvidClient",
    "ImageStackSource",
    "IngestError",
    "IngestReport",
    "NpySource",
    "ServerError",
    "Source",
    "SourceError",
    "ZarrSource",
    "format_pyramid",
    "ingest",
    "open_source",
    "parse_offset",
]

Zyx = tuple[int, int, int]
Xyz = tuple[int, int, int]

GRAYSCALE = "uint8blk"
LABELS = "labelmap"
INSTANCE_TYPES = (GRAYSCALE, LABELS)
# what a labelmap ingest takes, converted to uint64; int64 only when no value is negative
LABEL_DTYPES = (np.dtype(np.uint64), np.dtype(np.uint32), np.dtype(np.int64))
DEFAULT_BATCH_BLOCKS = {GRAYSCALE: 64, LABELS: 16}  # 16 MB of uint8, 32 MB of uint64 voxels
IMAGE_SUFFIXES = frozenset({".png", ".tif", ".tiff"})
ZARR_CACHE_BYTES = 512 * 1024 * 1024  # decoded zarr chunks kept for neighbouring batches
_GRAY_MODES = frozenset({"L", "1"})
_CHECKED_MODES = frozenset({"P", "PA", "LA", "RGB", "RGBA"})  # gray only if pixels say so


class IngestError(Exception):
    """A problem that stops ingest, with a message meant for the user."""

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class SourceError(IngestError):
    """The source or an option is unusable: found before anything is written, except pixels
    that are only checked as their slice is decoded (a colored or transparent slice)."""

    exit_code: ClassVar[int] = 2


class ServerError(IngestError):
    """The server refused a request; carries its HTTP status and its own message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# ----- sources ---------------------------------------------------------------------------

class Source:
    """A 3D volume in (z, y, x) order, read box by box so it never has to fit in memory: uint8
    grayscale, or labels (``dtype`` says which; ingest checks it against the instance).

    ``by_layer`` sources (image stacks) decode whole slices, so ingest finishes one z layer of
    blocks before starting the next and calls ``end_layer`` to drop what it decoded.
    """

    by_layer: ClassVar[bool] = False
    shape: Zyx
    dtype: np.dtype[Any]
    description: str
    what: str  # the source in messages: its path

    def read(self, lo: Zyx, hi: Zyx) -> np.ndarray:
        """Voxels from ``lo`` up to (not including) ``hi``, both (z, y, x), within ``shape``."""
        raise NotImplementedError

    def end_layer(self) -> None:
        """All batches of the current z layer are done."""

    def close(self) -> None:
        """Release files and caches."""


def _volume_shape(shape: Sequence[int], what: str) -> tuple[int, Zyx]:
    """(number of leading size-1 axes to drop, 3D shape); a 2D array is one z slice."""
    dims = list(shape)
    drop = 0
    while len(dims) > 3 and dims[0] == 1:
        dims.pop(0)
        drop += 1
    if len(dims) == 2:
        dims.insert(0, 1)
        drop = -1
    if len(dims) != 3:
        raise SourceError(f"{what} has shape {tuple(shape)}; ingest takes a 3D (z, y, x) "
                          "volume (leading axes of size 1 are dropped)")
    if 0 in dims:
        raise SourceError(f"{what} is empty (shape {tuple(shape)})")
    return drop, (dims[0], dims[1], dims[2])


def _check_dtype(source: Source, type_name: str | None) -> str:
    """The instance type ``source`` goes to (``type_name``, or from its dtype when None), or a
    SourceError naming what the source holds and what the instance takes."""
    dtype, what = source.dtype, source.what
    if type_name is None:
        if dtype == np.uint8:
            return GRAYSCALE
        if dtype in LABEL_DTYPES:
            return LABELS
        raise SourceError(f"{what} holds {dtype} values; ingest takes uint8 grayscale (into a "
                          "uint8blk instance) or uint64, uint32 or non-negative int64 labels "
                          "(into a labelmap instance)")
    if type_name == GRAYSCALE and dtype != np.uint8:
        hint = " (labels go into a labelmap instance)" if dtype in LABEL_DTYPES else ""
        raise SourceError(f"{what} holds {dtype} values; a uint8blk instance stores 8-bit "
                          f"grayscale, so convert the volume to uint8 first{hint}")
    if type_name == LABELS and dtype not in LABEL_DTYPES:
        raise SourceError(f"{what} holds {dtype} values; a labelmap instance stores uint64 "
                          "labels: give uint64, uint32 or non-negative int64 labels")
    return type_name


class NpySource(Source):
    """A .npy file, memory-mapped: only the batches being written are paged in."""

    def __init__(self, path: Path) -> None:
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise SourceError(f"{path} is not a readable .npy file: {exc}") from None
        if not isinstance(array, np.ndarray):
            raise SourceError(f"{path} is an .npz archive; save the volume as one .npy array")
        drop, self.shape = _volume_shape(array.shape, str(path))
        self.array = array[None] if drop < 0 else array[(0,) * drop]
        self.dtype = array.dtype
        self.description = f"{path.name} (.npy)"
        self.what = str(path)

    def read(self, lo: Zyx, hi: Zyx) -> np.ndarray:
        return np.asarray(self.array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])


def _zarr_kind(path: Path) -> tuple[int, str] | None:
    """(zarr format, node type) of a directory, or None when it holds no zarr metadata."""
    if (path / ".zarray").is_file():
        return 2, "array"
    if (path / ".zgroup").is_file():
        return 2, "group"
    meta = path / "zarr.json"
    if meta.is_file():
        try:
            node = json.loads(meta.read_text()).get("node_type", "array")
        except (OSError, ValueError, AttributeError):
            raise SourceError(f"{meta} is not valid zarr v3 metadata (JSON)") from None
        return 3, str(node)
    return None


class ZarrSource(Source):
    """A zarr array (v2 or v3) read through tensorstore, whose chunk cache serves the
    batches that share chunks."""

    def __init__(self, path: Path, version: int) -> None:
        try:
            import tensorstore as ts
        except ImportError:
            raise SourceError("reading zarr needs tensorstore: pip install 'dvidql[zarr]'"
                              ) from None
        spec = {"driver": "zarr" if version == 2 else "zarr3",
                "kvstore": {"driver": "file", "path": str(path.resolve())}}
        context = ts.Context({"cache_pool": {"total_bytes_limit": ZARR_CACHE_BYTES}})
        try:
            store = ts.open(spec, open=True, read=True, context=context).result()
        except ValueError as exc:
            raise SourceError(f"cannot open zarr v{version} array {path}: {exc}") from None
        drop, self.shape = _volume_shape(store.shape, f"zarr array {path}")
        self.dtype = np.dtype(store.dtype.numpy_dtype)
        store = store[ts.d[:].translate_to[0]]
        self.store = store[ts.newaxis] if drop < 0 else store[(0,) * drop]
        self.description = f"{path.name} (zarr v{version})"
        self.what = f"zarr array {path}"

    def read(self, lo: Zyx, hi: Zyx) -> np.ndarray:
        box = self.store[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        return np.asarray(box.read().result())


def _natural(path: Path) -> list[Any]:
    """Sort key putting slice_2 before slice_10."""
    return [int(part) if part.isdigit() else part.lower()
            for part in re.split(r"(\d+)", str(path))]


class ImageStackSource(Source):
    """2D PNG or TIFF images, one per z slice in name order, all the same size and 8-bit
    grayscale (other modes are accepted only when their pixels are gray and opaque)."""

    by_layer: ClassVar[bool] = True

    def __init__(self, files: Sequence[Path], description: str) -> None:
        from PIL import Image, UnidentifiedImageError

        Image.MAX_IMAGE_PIXELS = None  # EM slices are legitimately huge; they are the user's
        self.files = list(files)
        first_size: tuple[int, int] | None = None
        for path in self.files:
            try:
                with Image.open(path) as image:
                    size, mode = image.size, image.mode
                    frames = getattr(image, "n_frames", 1)
            except (OSError, UnidentifiedImageError) as exc:
                raise SourceError(f"{path} is not a readable PNG or TIFF image: {exc}") from None
            if frames != 1:
                raise SourceError(f"{path} has {frames} frames; give one 2D image per z slice")
            if mode not in _GRAY_MODES | _CHECKED_MODES:
                raise SourceError(f"{path} has Pillow mode {mode!r}, not 8-bit grayscale; "
                                  "convert the images to 8-bit grayscale (mode L) first")
            if first_size is None:
                first_size = size
            elif size != first_size:
                raise SourceError(
                    f"{path} is {size[0]}x{size[1]} pixels but {self.files[0]} is "
                    f"{first_size[0]}x{first_size[1]}; every slice must have the same size")
        assert first_size is not None
        self.shape = (len(self.files), first_size[1], first_size[0])
        self.dtype = np.dtype(np.uint8)
        self.description = description
        self.what = description
        self._lock = threading.Lock()
        self._slices: dict[int, np.ndarray] = {}
        self._decoding: dict[int, threading.Lock] = {}
        self._turn = itertools.count()

    def _decode(self, z: int) -> np.ndarray:
        from PIL import Image

        path = self.files[z]
        with Image.open(path) as image:
            image.load()
            if (image.size[1], image.size[0]) != self.shape[1:]:
                raise SourceError(f"{path} changed size while ingesting")
            if image.mode == "1":
                return np.asarray(image.convert("L"))
            if image.mode in _GRAY_MODES:
                return np.asarray(image)
            if image.mode in ("P", "PA"):
                image = image.convert("RGBA")
            pixels = np.asarray(image)
        alpha = pixels[..., -1] if image.mode in ("LA", "RGBA") else None
        color = pixels[..., :-1] if alpha is not None else pixels
        if alpha is not None and not (alpha == 255).all():
            raise SourceError(f"{path} has transparent pixels; ingest takes opaque 8-bit "
                              "grayscale images")
        gray = color[..., 0]
        if color.shape[-1] > 1 and not (color == gray[..., None]).all():
            raise SourceError(f"{path} ({image.mode}) has colored pixels; convert the images "
                              "to 8-bit grayscale (mode L) first")
        return np.ascontiguousarray(gray)

    def _slice(self, z: int) -> np.ndarray:
        """Slice ``z`` decoded once per layer, however many batches need it."""
        with self._lock:
            found = self._slices.get(z)
            if found is not None:
                return found
            lock = self._decoding.setdefault(z, threading.Lock())
        with lock:
            with self._lock:
                found = self._slices.get(z)
            if found is None:
                found = self._decode(z)
                with self._lock:
                    self._slices[z] = found
            return found

    def read(self, lo: Zyx, hi: Zyx) -> np.ndarray:
        out = np.empty((hi[0] - lo[0], hi[1] - lo[1], hi[2] - lo[2]), np.uint8)
        depth = hi[0] - lo[0]
        start = next(self._turn) % depth  # concurrent batches decode different slices first
        for i in itertools.chain(range(start, depth), range(start)):
            out[i] = self._slice(lo[0] + i)[lo[1]:hi[1], lo[2]:hi[2]]
        return out

    def end_layer(self) -> None:
        with self._lock:
            self._slices.clear()
            self._decoding.clear()

    def close(self) -> None:
        self.end_layer()


def _image_files(paths: Sequence[Path], what: str) -> list[Path]:
    files = sorted((p for p in paths if p.is_file() and not p.name.startswith(".")),
                   key=_natural)
    if not files:
        raise SourceError(f"{what} holds no PNG or TIFF images")
    return files


def open_source(text: str) -> Source:
    """The source named on the command line: a .npy file, a zarr array directory, a directory
    of PNG/TIFF slices, one image, or a glob of images."""
    path = Path(text)
    if path.is_dir():
        kind = _zarr_kind(path)
        if kind is not None:
            version, node = kind
            if node != "array":
                arrays = sorted(str(p) for p in path.iterdir()
                                if p.is_dir() and (_zarr_kind(p) or (0, ""))[1] == "array")
                hint = f"; its arrays: {', '.join(arrays[:8])}" if arrays else ""
                raise SourceError(f"{path} is a zarr v{version} group, not an array; give the "
                                  f"path of one of its arrays{hint}")
            return ZarrSource(path, version)
        files = _image_files([p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES],
                             f"directory {path}")
        return ImageStackSource(files, f"{path.name}/ ({len(files)} images)")
    if path.is_file():
        if path.suffix.lower() == ".npy":
            return NpySource(path)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageStackSource([path], f"{path.name} (1 image)")
        raise SourceError(f"{path}: unknown source type; give a .npy file, a zarr array "
                          "directory, or PNG/TIFF images (a directory or a glob)")
    if glob.has_magic(text):
        files = _image_files([Path(p) for p in glob.glob(text)], f"the pattern {text!r}")
        return ImageStackSource(files, f"{text} ({len(files)} images)")
    raise SourceError(f"{text}: no such file or directory")


# ----- the server --------------------------------------------------------------------------

class DvidClient:
    """The few calls ingest and pyramid make on one data instance, raising the server's own
    error messages. Thread-safe: one connection pool shared by the workers."""

    def __init__(self, url: str, uuid: str, name: str, *, connections: int = 4,
                 timeout: float | None = 120.0) -> None:
        base = url.rstrip("/")
        if "://" not in base:
            base = f"http://{base}"
        self.base = base
        self.uuid = uuid
        self.name = name
        self.node = f"/api/node/{quote(uuid, safe=':~')}/{quote(name, safe='')}"
        self.http = httpx.Client(
            base_url=base, timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=connections,
                                max_keepalive_connections=connections))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DvidClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.TimeoutException:
            raise IngestError(f"{method} {self.base}{path} timed out") from None
        except httpx.HTTPError as exc:
            raise IngestError(f"cannot reach {self.base}: {exc}") from None
        if response.is_error:
            raise ServerError(response.status_code,
                              f"{method} {path} failed with {response.status_code}: "
                              f"{_server_message(response)}")
        return response

    def call_json(self, method: str, path: str, kind: type[dict[str, Any]] | type[list[Any]],
                  **kwargs: Any) -> Any:
        """``call`` for an answer that must be a JSON object or list: anything else (a web
        page, a proxy's login form) means the URL is not a DVID or dvidql server."""
        response = self.call(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, kind):
            what = "object" if kind is dict else "list"
            raise IngestError(f"{method} {self.base}{path} did not answer with a JSON {what} "
                              f"({response.headers.get('content-type', 'no content type')}); "
                              f"is {self.base} a DVID or dvidql server?")
        return body

    def info(self) -> dict[str, Any]:
        return self.call_json("GET", f"{self.node}/info", dict)  # type: ignore[no-any-return]

    def create(self, settings: CreateSettings, type_name: str, max_downres: int) -> None:
        """A ``type_name`` instance with ``settings`` (and ``max_downres`` lower scales for a
        labelmap)."""
        body = {"typename": type_name, "dataname": self.name,
                "BlockSize": settings.block_size, "Compression": settings.compression}
        if settings.voxel_size:
            body["VoxelSize"] = settings.voxel_size
        if type_name == LABELS:
            body["MaxDownresLevel"] = str(max_downres)
        self.call("POST", f"/api/repo/{quote(self.uuid, safe=':~')}/instance", json=body)

    def stored(self, lo: Xyz, size: Xyz) -> list[Xyz]:
        """Block coordinates stored at this version in the voxel box ``size`` at ``lo``."""
        path = f"{self.node}/stored-blocks/{_xyz(size)}/{_xyz(lo)}"
        return [tuple(c) for c in self.call_json("GET", path, list)]  # type: ignore[misc]

    def post_blocks(self, coord: Xyz, count: int, data: bytes) -> None:
        self.call("POST", f"{self.node}/blocks/{_xyz(coord)}/{count}", content=data)

    def stored_labels(self, lo: Xyz, size: Xyz) -> list[Xyz]:
        """Block coordinates a labelmap stores at this version in the block-aligned box
        ``size`` at ``lo``, from the block stream of its stored blocks as stored (DVID
        serves it too)."""
        response = self.call("GET", f"{self.node}/blocks/{_xyz(size)}/{_xyz(lo)}",
                             params={"compression": "blocks", "supervoxels": "true"})
        try:
            return [coord for coord, _ in decode_block_stream(response.content)]
        except ValueError as exc:
            raise IngestError(f"GET {self.base}{self.node}/blocks did not answer with a block "
                              f"stream ({exc}); is {self.base} a DVID or dvidql server?"
                              ) from None

    def locked(self) -> bool:
        """Whether the version is committed, so that nothing can be written to it."""
        path = f"/api/node/{quote(self.uuid, safe=':~')}/commit"
        return bool(self.call_json("GET", path, dict).get("Locked", False))

    def post_label_blocks(self, stream: bytes, *, downres: bool) -> None:
        """A block stream of gzipped compressed label blocks; ``downres`` computes the lower
        scales of everything written since they were last computed (so it may take long)."""
        timeout = httpx.Timeout(None, connect=10.0) if downres else httpx.USE_CLIENT_DEFAULT
        self.call("POST", f"{self.node}/blocks", content=stream, timeout=timeout,
                  params={"downres": "true" if downres else "false"})

    def downres(self) -> None:
        """Recompute a labelmap's lower scales where its blocks changed since they were last
        computed (a dvidql endpoint)."""
        self.call("POST", f"{self.node}/downres", timeout=httpx.Timeout(None, connect=10.0))

    def pyramid(self, levels: int | None) -> dict[str, Any]:
        params = {} if levels is None else {"levels": str(levels)}
        return self.call_json("POST", f"{self.node}/pyramid", dict,  # type: ignore[no-any-return]
                              params=params, timeout=httpx.Timeout(None, connect=10.0))


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return body["error"]
    return response.text.strip()[:500] or response.reason_phrase


def _xyz(point: Sequence[int]) -> str:
    return "_".join(map(str, point))


def parse_offset(text: str) -> Xyz:
    """``x,y,z`` (or ``x_y_z``) voxel coordinates."""
    parts = [p.strip() for p in text.replace("_", ",").split(",")]
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3:
        raise SourceError(f"--offset must be three integers x,y,z, not {text!r}")
    return values[0], values[1], values[2]


# ----- planning and running ------------------------------------------------------------------

@dataclass(frozen=True)
class CreateSettings:
    """Settings for an instance that --create makes when it is missing."""

    block_size: str = "64"
    compression: str = "lz4"
    voxel_size: str | None = None
    max_downres: int | None = None  # a labelmap's MaxDownresLevel; None: until one block


@dataclass(frozen=True)
class IngestReport:
    """What a run did; ``skipped`` blocks were already stored at the version."""

    written: int
    skipped: int
    total: int
    nbytes: int
    seconds: float

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / 1e6 / self.seconds if self.seconds > 0 else 0.0

    def summary(self) -> str:
        return (f"{self.written} blocks written, {self.skipped} skipped (already stored), "
                f"{self.total} in all; {self.nbytes / 1e6:.1f} MB in {self.seconds:.2f} s "
                f"({self.mb_per_s:.1f} MB/s)")


@dataclass(frozen=True)
class _Batch:
    """A block-aligned box of the source grid: first block and block counts, (x, y, z)."""

    first: Xyz
    count: Xyz


@dataclass(frozen=True)
class _Plan:
    source: Source
    type_name: str  # GRAYSCALE or LABELS
    block: Xyz
    background: int
    origin: Xyz  # block coordinate of the source's first block
    grid: Xyz  # blocks along x, y, z covering the source
    batch_blocks: int

    @property
    def block_voxels(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]

    @property
    def total(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]

    def layers(self) -> Iterator[Iterator[_Batch]]:
        """Batches, z layer by z layer: whole rows of blocks along x when they fit."""
        nx, ny, nz = self.grid
        cols = min(nx, self.batch_blocks)
        rows = min(ny, max(1, self.batch_blocks // cols)) if cols == nx else 1
        for z in range(nz):
            yield (_Batch((x, y, z), (min(cols, nx - x), min(rows, ny - y), 1))
                   for y in range(0, ny, rows) for x in range(0, nx, cols))


class _Tally:
    """Counts shared by the workers, feeding the progress bar."""

    def __init__(self, total: int, show: bool, description: str) -> None:
        self.written = self.skipped = self.nbytes = 0
        self.start = time.monotonic()
        self._lock = threading.Lock()
        self._bar: Any = None
        if show:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("blocks, {task.fields[rate]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True))
            self._task = self._bar.add_task(description, total=total, rate="")
            self._bar.start()

    def add(self, *, written: int = 0, skipped: int = 0, nbytes: int = 0) -> None:
        with self._lock:
            self.written += written
            self.skipped += skipped
            self.nbytes += nbytes
            elapsed = max(time.monotonic() - self.start, 1e-9)
            rate = f"{self.nbytes / 1e6 / elapsed:.1f} MB/s"
        if self._bar is not None:
            self._bar.update(self._task, advance=written + skipped, rate=rate)

    def note(self, description: str) -> None:
        """A new description for the bar: what the run waits for now."""
        if self._bar is not None:
            self._bar.update(self._task, description=description)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()

    def report(self, total: int) -> IngestReport:
        return IngestReport(self.written, self.skipped, total, self.nbytes,
                            time.monotonic() - self.start)


def _runs(missing: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of the runs of True in a 1D mask."""
    edges = np.diff(np.concatenate(([0], missing.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [(int(s), int(e - s)) for s, e in zip(starts, ends, strict=True)]


def _missing(client: DvidClient, plan: _Plan, batch: _Batch, overwrite: bool
             ) -> tuple[Xyz, np.ndarray]:
    """The batch's first block coordinate in the instance, and which of its blocks (z, y, x)
    the version does not store yet (all of them with ``overwrite``)."""
    bx, by, bz = plan.block
    cx, cy, cz = batch.count
    first = (plan.origin[0] + batch.first[0], plan.origin[1] + batch.first[1],
             plan.origin[2] + batch.first[2])
    missing = np.ones((cz, cy, cx), bool)
    if not overwrite:
        lo = (first[0] * bx, first[1] * by, first[2] * bz)
        size = (cx * bx, cy * by, cz * bz)
        stored = (client.stored(lo, size) if plan.type_name == GRAYSCALE
                  else client.stored_labels(lo, size))
        for x, y, z in stored:
            i, j, k = x - first[0], y - first[1], z - first[2]
            if 0 <= i < cx and 0 <= j < cy and 0 <= k < cz:
                missing[k, j, i] = False
    return first, missing


def _source_box(plan: _Plan, batch: _Batch) -> tuple[Zyx, Zyx]:
    """The (z, y, x) voxel box of the source under a batch, cut at the source's edges."""
    bx, by, bz = plan.block
    cx, cy, cz = batch.count
    lo = (batch.first[2] * bz, batch.first[1] * by, batch.first[0] * bx)
    hi = (min(lo[0] + cz * bz, plan.source.shape[0]), min(lo[1] + cy * by, plan.source.shape[1]),
          min(lo[2] + cx * bx, plan.source.shape[2]))
    return lo, hi


def _check_labels(data: np.ndarray, plan: _Plan, lo: Zyx) -> None:
    """Refuse negative values of a signed source, naming the first found (source voxels)."""
    if data.dtype.kind != "i" or not data.size:
        return
    lowest = int(data.min())
    if lowest < 0:
        z, y, x = (int(v) for v in np.unravel_index(int(np.argmin(data)), data.shape))
        raise SourceError(
            f"{plan.source.what} holds negative values ({lowest} at x,y,z "
            f"{lo[2] + x},{lo[1] + y},{lo[0] + z}); labels are unsigned 64-bit ids, so give "
            "non-negative labels")


def _read_batch(plan: _Plan, batch: _Batch) -> np.ndarray:
    """The batch's voxels as the instance stores them (uint8, or uint64 labels), edge batches
    padded with Background (labels with 0)."""
    lo, hi = _source_box(plan, batch)
    data = plan.source.read(lo, hi)
    if plan.type_name == LABELS:
        _check_labels(data, plan, lo)  # checked before ingest began; the file may change
        data = data.astype(np.uint64, copy=False)
    bx, by, bz = plan.block
    cx, cy, cz = batch.count
    if data.shape != (cz * bz, cy * by, cx * bx):  # an edge batch: pad with Background
        padded = np.full((cz * bz, cy * by, cx * bx), plan.background, data.dtype)
        padded[:data.shape[0], :data.shape[1], :data.shape[2]] = data
        data = padded
    return data


def _batch_to_write(client: DvidClient, plan: _Plan, batch: _Batch, tally: _Tally,
                    overwrite: bool, stop: threading.Event
                    ) -> tuple[Xyz, np.ndarray, np.ndarray] | None:
    """What a batch still needs, shared by both instance types: its first block, which of
    its blocks are missing and its voxels; None when the run stops or every block is stored.
    The stored blocks are counted as skipped."""
    if stop.is_set():
        return None
    first, missing = _missing(client, plan, batch, overwrite)
    stored = missing.size - int(missing.sum())
    data = _read_batch(plan, batch) if stored < missing.size else None
    tally.add(skipped=stored)
    return None if data is None else (first, missing, data)


def _write_batch(client: DvidClient, plan: _Plan, batch: _Batch, tally: _Tally,
                 overwrite: bool, stop: threading.Event) -> None:
    """A grayscale batch: its missing blocks, one post per run of them along x."""
    todo = _batch_to_write(client, plan, batch, tally, overwrite, stop)
    if todo is None:
        return
    first, missing, data = todo
    bx, by, bz = plan.block
    _, cy, cz = batch.count
    for k in range(cz):
        for j in range(cy):
            for start, length in _runs(missing[k, j]):
                if stop.is_set():
                    return
                run = data[k * bz:(k + 1) * bz, j * by:(j + 1) * by,
                           start * bx:(start + length) * bx]
                body = run.reshape(bz, by, length, bx).transpose(2, 0, 1, 3).tobytes()
                client.post_blocks((first[0] + start, first[1] + j, first[2] + k), length,
                                   body)
                tally.add(written=length, nbytes=len(body))


@dataclass(frozen=True)
class _LabelPost:
    """One block stream of a labelmap batch, ready to post."""

    stream: bytes
    blocks: int
    nbytes: int  # uint64 voxel bytes it carries


class _LastPost:
    """The one labelmap post held back to be made last, computing the lower scales of the
    whole run at once: every other post leaves them for it (``downres=false``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._post: _LabelPost | None = None

    def swap(self, post: _LabelPost | None) -> _LabelPost | None:
        with self._lock:
            previous, self._post = self._post, post
        return previous


def _write_label_batch(client: DvidClient, plan: _Plan, batch: _Batch, tally: _Tally,
                       overwrite: bool, stop: threading.Event, last: _LastPost) -> None:
    """A labelmap batch: its missing blocks as compressed label blocks in one block stream,
    which takes the held-back place of the previous batch's stream (then posted)."""
    todo = _batch_to_write(client, plan, batch, tally, overwrite, stop)
    if todo is None:
        return
    first, missing, data = todo
    bx, by, bz = plan.block
    records = []
    for k, j, i in zip(*(axis.tolist() for axis in np.nonzero(missing)), strict=True):
        if stop.is_set():
            return
        block = np.ascontiguousarray(data[k * bz:(k + 1) * bz, j * by:(j + 1) * by,
                                          i * bx:(i + 1) * bx])
        records.append(((first[0] + i, first[1] + j, first[2] + k),
                         gzip_bytes(encode_label_block(block))))
    previous = last.swap(_LabelPost(encode_block_stream(records), len(records),
                                    len(records) * plan.block_voxels * 8))
    if previous is not None and not stop.is_set():
        client.post_label_blocks(previous.stream, downres=False)
        tally.add(written=previous.blocks, nbytes=previous.nbytes)


def _finish_lower_scales(client: DvidClient) -> None:
    """The lower-scale step of a labelmap run that found every block stored: an earlier run
    stopped during (or before) its own step left blocks that the server marks as changed
    since the lower scales were computed, and ``POST downres`` computes them without writing
    any voxel. A committed version takes no writes, so it is left."""
    if not client.locked():
        client.downres()


def _run(plan: _Plan, work: Callable[[_Batch], None], workers: int,
         stop: threading.Event) -> None:
    """Batches on a bounded thread pool; the first failure stops the others between
    requests and cancels the batches not started."""
    pool = ThreadPoolExecutor(workers, thread_name_prefix="ingest")
    pending: set[Future[None]] = set()

    def guarded(batch: _Batch) -> None:
        try:
            work(batch)
        except BaseException:
            stop.set()
            raise

    def settle(futures: set[Future[None]]) -> None:
        for future in futures:
            future.result()  # re-raises a worker's error

    try:
        for layer in plan.layers():
            for batch in layer:
                if stop.is_set():
                    break
                if len(pending) >= 2 * workers:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    settle(done)
                pending.add(pool.submit(guarded, batch))
            if plan.source.by_layer:
                settle(wait(pending).done)
                pending = set()
                plan.source.end_layer()
        settle(wait(pending).done)
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)


def _instance_info(client: DvidClient) -> tuple[dict[str, Any] | None, str]:
    """The instance's info, or None and the server's message when it has no such instance."""
    try:
        return client.info(), ""
    except ServerError as exc:
        if exc.status != 404:
            raise
        return None, exc.message


def _block_size(text: str) -> Xyz:
    parts = [p.strip() for p in text.replace("_", ",").split(",")]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise SourceError(f"--block-size must be one or three positive integers, not {text!r}")
    return int(parts[0]), int(parts[1]), int(parts[2])


def _check_aligned(offset: Xyz, block: Xyz) -> None:
    if any(o % b for o, b in zip(offset, block, strict=True)):
        raise SourceError(f"--offset {_xyz(offset).replace('_', ',')} must be a multiple of "
                          f"the block size {_xyz(block).replace('_', ',')} along each axis")


def _grid(shape: Zyx, block: Xyz) -> Xyz:
    return (-(-shape[2] // block[0]), -(-shape[1] // block[1]), -(-shape[0] // block[2]))


def scales_for(grid: Xyz) -> int:
    """Lower scales until one block covers a ``grid`` of blocks; at least 1, since
    neuroglancer opens a labelmap only with a MaxDownresLevel of 1 or more."""
    levels = 0
    while max(grid) > 2**levels:
        levels += 1
    return max(1, levels)


def _check_no_negatives(plan: _Plan, workers: int) -> None:
    """Read a signed source once through, before anything is written, for negative labels."""
    def check(batch: _Batch) -> None:
        lo, hi = _source_box(plan, batch)
        _check_labels(plan.source.read(lo, hi), plan, lo)

    _run(plan, check, workers, threading.Event())


def ingest(client: DvidClient, source: Source, *, offset: Xyz = (0, 0, 0),
           create: CreateSettings | None = None, type_name: str | None = None,
           workers: int = 4, batch_blocks: int | None = None, overwrite: bool = False,
           show_progress: bool = True) -> IngestReport:
    """Write ``source`` into the client's instance with its first voxel at ``offset`` (x, y,
    z), skipping blocks the version already stores unless ``overwrite``. A missing instance
    is made with ``create``, of ``type_name`` (uint8blk for uint8 sources, else labelmap,
    when None); an existing one must be of ``type_name`` when it is given. Source or option
    problems are found before anything is written or created."""
    if workers < 1 or (batch_blocks is not None and batch_blocks < 1):
        raise SourceError("--workers and --batch-blocks must be at least 1")
    if type_name is not None and type_name not in INSTANCE_TYPES:
        raise SourceError(f"--type must be {' or '.join(INSTANCE_TYPES)}, not {type_name!r}")
    info, missing = _instance_info(client)
    if info is None:
        if create is None:
            raise ServerError(404, f"{missing} (add --create to create a uint8blk or labelmap "
                              "instance)")
        kind = _check_dtype(source, type_name)
        block = _block_size(create.block_size)
        background = 0
    else:
        kind = info.get("Base", {}).get("TypeName")
        if kind not in INSTANCE_TYPES:
            raise IngestError(f"{client.name!r} is a {kind} instance; ingest writes uint8blk "
                              "(8-bit grayscale) or labelmap (segmentation)")
        if type_name is not None and type_name != kind:
            raise SourceError(f"{client.name!r} is a {kind} instance, not {type_name}")
        _check_dtype(source, kind)
        extended = info["Extended"]
        block = tuple(extended["BlockSize"])  # type: ignore[assignment]
        background = int(extended.get("Background", 0)) if kind == GRAYSCALE else 0
    _check_aligned(offset, block)
    grid = _grid(source.shape, block)
    plan = _Plan(source, kind, block, background,
                 (offset[0] // block[0], offset[1] // block[1], offset[2] // block[2]), grid,
                 batch_blocks or DEFAULT_BATCH_BLOCKS[kind])
    if kind == LABELS and source.dtype.kind == "i":
        _check_no_negatives(plan, workers)
    if info is None:
        assert create is not None
        client.create(create, kind, create.max_downres if create.max_downres is not None
                      else scales_for(grid))
    if not overwrite and kind == GRAYSCALE:
        # fail before reading anything if the server cannot tell what it has
        try:
            client.stored((offset[0], offset[1], offset[2]), block)
        except ServerError as exc:
            raise ServerError(exc.status, f"{exc.message} (a server without the stored-blocks "
                              "endpoint, like DVID, needs --overwrite)") from None
    tally = _Tally(plan.total, show_progress, f"{source.description} -> {client.name}")
    stop = threading.Event()
    try:
        if kind == GRAYSCALE:
            _run(plan, lambda batch: _write_batch(client, plan, batch, tally, overwrite, stop),
                 workers, stop)
        else:
            last = _LastPost()
            _run(plan, lambda batch: _write_label_batch(client, plan, batch, tally, overwrite,
                                                        stop, last), workers, stop)
            tally.note(f"{source.description} -> {client.name}: lower scales")
            final = last.swap(None)
            if final is not None:
                client.post_label_blocks(final.stream, downres=True)
                tally.add(written=final.blocks, nbytes=final.nbytes)
            else:
                _finish_lower_scales(client)
    finally:
        tally.stop()
    return tally.report(plan.total)


def format_pyramid(report: dict[str, Any]) -> str:
    """The JSON report of POST .../pyramid as lines a person reads."""
    levels = report.get("Levels", [])
    lines = [f"pyramid of {report.get('Instance', '?')}: {len(levels)} level(s)"]
    for level in levels:
        lines.append(f"  {level.get('Name')}  (scale {level.get('ScaleLevel')}): "
                     f"{level.get('BlocksWritten')} blocks written")
    return "\n".join(lines)
