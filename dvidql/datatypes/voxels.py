"""Geometry shared by the voxel datatypes: boxes, DVID's ``<dims>/<size>/<offset>`` syntax,
and moving voxels between boxes and fixed-size blocks without a loop over voxels.

Points are (x, y, z); arrays are C-ordered (z, y, x), so X varies fastest as in DVID's bytes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from dvidql.errors import BadRequest

__all__ = [
    "Box",
    "Geometry",
    "Point",
    "block_coords",
    "distinct_rows",
    "new_volume",
    "parse_block_list",
    "parse_geometry",
    "parse_point",
    "paste",
    "span_coords",
    "split_blocks",
    "split_blocks_within",
]

Point = tuple[int, int, int]
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_SLICES = {"xy": (0, 1), "xz": (0, 2), "yz": (1, 2)}
_DIMS = {(0, 1), (0, 2), (1, 2), (0, 1, 2)}
_AXES = "xyz"


def parse_point(text: str, n: int, what: str) -> tuple[int, ...]:
    """``n`` integers joined by ``_`` (DVID URLs) or ``,`` (settings), within int32."""
    parts = text.replace(",", "_").split("_")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise BadRequest(f"{what} must be {n} integers like "
                         f"{'_'.join(['0'] * n)}, not {text!r}") from None
    if len(values) != n:
        raise BadRequest(f"{what} needs {n} integers, got {len(values)} in {text!r}")
    for v in values:
        if not INT32_MIN <= v <= INT32_MAX:
            raise BadRequest(f"{what} {text!r} is outside the 32-bit coordinate range")
    return values


@dataclass(frozen=True)
class Box:
    """A box of voxels: its first voxel and its positive size along x, y and z."""

    offset: Point
    size: Point

    def __post_init__(self) -> None:
        for axis, first, n in zip(_AXES, self.offset, self.size, strict=True):
            if n <= 0:
                raise BadRequest(f"size along {axis} must be positive, not {n}")
            if first < INT32_MIN or first + n - 1 > INT32_MAX:
                raise BadRequest(f"the box along {axis} ({first} to {first + n - 1}) leaves "
                                 "the 32-bit coordinate range")

    @property
    def end(self) -> Point:
        """One past the last voxel along each axis."""
        return (self.offset[0] + self.size[0], self.offset[1] + self.size[1],
                self.offset[2] + self.size[2])

    @property
    def voxels(self) -> int:
        return self.size[0] * self.size[1] * self.size[2]

    @property
    def shape(self) -> tuple[int, int, int]:
        """The (z, y, x) array shape."""
        return self.size[2], self.size[1], self.size[0]

    def aligned(self, block: Point) -> bool:
        return all(o % b == 0 and s % b == 0
                   for o, s, b in zip(self.offset, self.size, block, strict=True))

    def require_aligned(self, block: Point) -> None:
        if not self.aligned(block):
            raise BadRequest(
                f"offset {_fmt(self.offset)} and size {_fmt(self.size)} must be multiples of "
                f"the block size {_fmt(block)} for this request")

    def block_span(self, block: Point) -> tuple[Point, Point]:
        """First and last (inclusive) block coordinates the box touches."""
        lo = tuple(o // b for o, b in zip(self.offset, block, strict=True))
        hi = tuple((e - 1) // b for e, b in zip(self.end, block, strict=True))
        return lo, hi  # type: ignore[return-value]

    def intersect(self, other: Box) -> Box | None:
        lo = [max(a, b) for a, b in zip(self.offset, other.offset, strict=True)]
        hi = [min(a, b) for a, b in zip(self.end, other.end, strict=True)]
        if any(h <= low for low, h in zip(lo, hi, strict=True)):
            return None
        return Box(tuple(lo), tuple(h - low for low, h in zip(lo, hi, strict=True)))  # type: ignore[arg-type]


def _fmt(p: Sequence[int]) -> str:
    return "_".join(str(v) for v in p)


@dataclass(frozen=True)
class Geometry:
    """A parsed ``<dims>/<size>/<offset>``: a 2D plane (two dims) or a 3D box."""

    dims: tuple[int, ...]
    size: tuple[int, ...]
    offset: Point

    @property
    def is_3d(self) -> bool:
        return len(self.dims) == 3

    @property
    def box(self) -> Box:
        size = [1, 1, 1]
        for dim, n in zip(self.dims, self.size, strict=True):
            size[dim] = n
        return Box(self.offset, tuple(size))  # type: ignore[arg-type]

    def plane(self, volume: np.ndarray) -> np.ndarray:
        """The 2D (rows, columns) image of a plane read as a (z, y, x) volume: rows run along
        the second listed dim, columns along the first."""
        if self.dims == (0, 1):
            return volume[0]
        if self.dims == (0, 2):
            return volume[:, 0, :]
        return volume[:, :, 0]

    def url(self) -> str:
        return f"{_fmt(self.dims)}/{_fmt(self.size)}/{_fmt(self.offset)}"


def parse_geometry(dims: str, size: str, offset: str) -> Geometry:
    """DVID's geometry URL parts: dims ``0_1``/``xy``, ``0_2``/``xz``, ``1_2``/``yz`` or
    ``0_1_2``; a size for each dim; a full 3D offset."""
    if dims.lower() in _SLICES:
        axes = _SLICES[dims.lower()]
    else:
        try:
            axes = tuple(int(d) for d in dims.split("_"))
        except ValueError:
            axes = ()
        if axes not in _DIMS:
            raise BadRequest(f"dims {dims!r} must be xy, xz, yz, 0_1, 0_2, 1_2 or 0_1_2")
    sizes = parse_point(size, len(axes), "size")
    start = parse_point(offset, 3, "offset")
    geometry = Geometry(axes, sizes, start)  # type: ignore[arg-type]
    geometry.box  # noqa: B018 - validates sizes and the coordinate range
    return geometry


def parse_block_list(text: str) -> list[Point]:
    """Block coordinates given as ``x1,y1,z1,x2,y2,z2,...`` (``specificblocks``)."""
    try:
        numbers = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadRequest(f"blocks must be comma-separated integers x1,y1,z1,..., not "
                         f"{text[:80]!r}") from None
    if not numbers or len(numbers) % 3:
        raise BadRequest("blocks needs a multiple of three integers: x1,y1,z1,x2,y2,z2,...")
    coords = [(numbers[i], numbers[i + 1], numbers[i + 2]) for i in range(0, len(numbers), 3)]
    for c in coords:
        parse_point("_".join(map(str, c)), 3, "block coordinate")
    return coords


def span_coords(box: Box, block: Point) -> list[Point]:
    """The coordinates of the blocks a box touches, in storage order (z, then y, then x)."""
    lo, hi = box.block_span(block)
    return [(int(x), int(y), int(z)) for x, y, z in block_coords(lo, hi)]


def block_coords(lo: Point, hi: Point) -> np.ndarray:
    """All block coordinates from ``lo`` to ``hi`` inclusive as an (n, 3) x, y, z array, in
    storage order (z slowest, x fastest)."""
    zs, ys, xs = np.meshgrid(np.arange(lo[2], hi[2] + 1), np.arange(lo[1], hi[1] + 1),
                             np.arange(lo[0], hi[0] + 1), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel(), zs.ravel()], axis=1)


def distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of an (n, 3) integer array in sorted order and each row's place
    among them, as ``np.unique(rows, axis=0, return_inverse=True)`` gives them but by one
    1-D unique of the rows' numbers in their bounding box, which costs a fraction of it
    (its row-sorting machinery alone costs tens of microseconds per call)."""
    rows = np.asarray(rows, np.int64)
    if len(rows) <= 1:
        return rows, np.zeros(len(rows), np.intp)
    lo = rows.min(axis=0)
    span = rows.max(axis=0) - lo + 1
    if float(np.prod(span, dtype=np.float64)) >= 2.0**62:  # too far apart to number
        unique, inverse = np.unique(rows, axis=0, return_inverse=True)
        return unique, inverse.reshape(-1)
    numbers = np.ravel_multi_index(tuple((rows - lo).T), tuple(span.tolist()))
    _, first, inverse = np.unique(numbers, return_index=True, return_inverse=True)
    return rows[first], inverse.reshape(-1)


def new_volume(box: Box, complete: bool, background: int, dtype: type = np.uint8) -> np.ndarray:
    """An output array for ``box``: uninitialised when blocks will cover all of it."""
    return np.empty(box.shape, dtype) if complete else np.full(box.shape, background, dtype)


def paste(out: np.ndarray, box: Box, block: Point, coord: Sequence[int],
          voxels: np.ndarray) -> None:
    """Copy the part of one (z, y, x) block at ``coord`` that lies in ``box`` into ``out``."""
    x0, y0, z0 = int(coord[0]) * block[0], int(coord[1]) * block[1], int(coord[2]) * block[2]
    ox, oy, oz = box.offset
    ex, ey, ez = box.end
    lx, ly, lz = max(x0, ox), max(y0, oy), max(z0, oz)
    hx, hy, hz = min(x0 + block[0], ex), min(y0 + block[1], ey), min(z0 + block[2], ez)
    out[lz - oz:hz - oz, ly - oy:hy - oy, lx - ox:hx - ox] = \
        voxels[lz - z0:hz - z0, ly - y0:hy - y0, lx - x0:hx - x0]


def split_blocks_within(volume: np.ndarray, box: Box, block: Point, mask: np.ndarray
                        ) -> list[tuple[Point, np.ndarray]]:
    """:func:`split_blocks`, keeping only the blocks where the (z, y, x) ``mask`` of the box
    is nonzero somewhere: a write limited to a region stores those blocks whole."""
    bx, by, bz = block
    nz, ny, nx = volume.shape[0] // bz, volume.shape[1] // by, volume.shape[2] // bx
    keep = mask.reshape(nz, bz, ny, by, nx, bx).any(axis=(1, 3, 5)).reshape(-1)
    return [b for b, wanted in zip(split_blocks(volume, box, block), keep.tolist(), strict=True)
            if wanted]


def split_blocks(volume: np.ndarray, box: Box, block: Point) -> Iterator[tuple[Point, np.ndarray]]:
    """The blocks of a block-aligned (z, y, x) volume, in storage order, as C-contiguous
    (z, y, x) arrays with their block coordinates."""
    bx, by, bz = block
    nz, ny, nx = volume.shape[0] // bz, volume.shape[1] // by, volume.shape[2] // bx
    tiles = volume.reshape(nz, bz, ny, by, nx, bx).transpose(0, 2, 4, 1, 3, 5)
    cx0, cy0, cz0 = (o // b for o, b in zip(box.offset, block, strict=True))
    for k in range(nz):
        for j in range(ny):
            for i in range(nx):
                yield (cx0 + i, cy0 + j, cz0 + k), np.ascontiguousarray(tiles[k, j, i])
