"""2D images out of voxel planes: PNG (lossless, the default) or JPEG with a quality."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from dvidql.codec.imageblock import DEFAULT_JPEG_QUALITY, encode_jpeg, jpeg_quality
from dvidql.errors import BadRequest

__all__ = ["ImageFormat", "encode_image"]

PNG_LEVEL = 3  # fast; grayscale EM barely compresses further at higher levels


@dataclass(frozen=True)
class ImageFormat:
    """``png`` or ``jpg[:quality]`` (``jpeg`` is accepted too), as in DVID URLs."""

    name: str  # "png" or "jpg"
    quality: int = DEFAULT_JPEG_QUALITY

    @classmethod
    def parse(cls, text: str) -> ImageFormat:
        name, _, quality = text.strip().lower().partition(":")
        if name == "png" and not quality:
            return cls("png")
        if name in ("jpg", "jpeg"):
            return cls("jpg", jpeg_quality(quality) if quality else DEFAULT_JPEG_QUALITY)
        raise BadRequest(f"unknown image format {text!r}; use png, jpg or jpg:<quality 1-100>")

    @property
    def media_type(self) -> str:
        return "image/png" if self.name == "png" else "image/jpeg"

    def __str__(self) -> str:
        return "png" if self.name == "png" else f"jpg:{self.quality}"


def encode_image(plane: np.ndarray, fmt: ImageFormat) -> bytes:
    """A 2D uint8 array (rows, columns) as an image file."""
    if fmt.name == "jpg":
        return encode_jpeg(plane, fmt.quality)
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(plane)).save(
        out, format="PNG", compress_level=PNG_LEVEL)
    return out.getvalue()
