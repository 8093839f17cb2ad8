"""Datasets whose samples stay on disk: one image file per sample and modality, decoded on demand.

A :class:`FileData` holds, per modality, the path of every sample's file, and the per-sample fields every
dataset has (labels, split, groups, bona fide flag, species, video). Nothing else: pickling it into a
worker process sends paths, not pixels. ``read(i, modalities)`` decodes sample ``i`` (torchvision's
JPEG/PNG decoder), converts it to the modality's channel count (3 = RGB, 1 = grey: depth and infrared
images) and resizes it to ``image_size``; the result is a ``uint8`` (or, for 16-bit PNGs, ``int32``) tensor
(C, H, W), turned into float32 on the compute device.

The fingerprint identifies the data without reading the pixels: every file's path (relative to
``root``), size and modification time, with the labels and the split.
"""
from __future__ import annotations

import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import DataError, not_a_file
from .base import check_common

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


# torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec; they are what this project's
# pinned torchvision offers (and the fastest here), so the notice is not repeated for every image.
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


def _vision():
    """torchvision's image I/O and functional transforms (imported on first use: the vector and sequence
    paths never need them)."""
    import torchvision.io as tio
    import torchvision.transforms.v2.functional as tvf

    return tio, tvf


# torchvision's decoders put their C++ function and source line before the reason ("decode_png,
# /__w/vision/.../decode_png.cpp:62, Internal error."): not for the user
_CPP_PLACE = re.compile(r"^.*?\S+\.(?:cpp|cc|h|cu):\d+,?\s*")
_NO_REASON = ("", "Internal error.", "Internal error")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"  # then the IHDR chunk: its length (4 bytes), then b"IHDR"


def decode_reason(exc: BaseException) -> str:
    """What a decoder's exception says about the file, without a C++ function name or source path ("" when it
    says nothing more than that it failed)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = _CPP_PLACE.sub("", text).strip()
    return "" if text in _NO_REASON else text


def decode_image(path: str, channels: int, size: Optional[tuple[int, int]] = None, where: str = ""):
    """The image file at ``path`` as a (channels, H, W) tensor (``channels`` 1 or 3), resized (antialiased,
    bilinear) to ``size`` when given and different; a DataError naming the file (and ``where``, e.g. the line of
    a manifest that lists it) when it is missing or not a readable image."""
    tio, tvf = _vision()
    mode = tio.ImageReadMode.GRAY if channels == 1 else tio.ImageReadMode.RGB
    listed = f" ({where})" if where else ""
    try:
        raw = tio.read_file(path)
        head = bytes(raw[:16].tolist())
        if head.startswith(PNG_SIGNATURE) and head[12:16] != b"IHDR":  # libpng would print its own line first
            raise DataError(f"image file '{path}'{listed} cannot be decoded: it is damaged or truncated, or not an "
                            "image (a PNG signature without a PNG header)")
        img = tio.decode_image(raw, mode=mode)
    except FileNotFoundError:
        raise DataError(f"image file '{path}'{listed} does not exist") from None
    except (RuntimeError, ValueError, OSError) as exc:
        why = not_a_file(path, "an image file")
        if why:
            raise DataError(f"image file '{path}'{listed} {why}") from None
        reason = decode_reason(exc)
        raise DataError(f"image file '{path}'{listed} cannot be decoded: it is damaged or truncated, or not an image"
                        + (f" ({reason})" if reason else "")) from None
    if size is not None and tuple(img.shape[-2:]) != tuple(size):
        if img.dtype != torch.uint8:  # 16-bit images: resized in float
            img = img.float()
        img = tvf.resize(img, list(size), antialias=True)
    return img


def image_header(path: str) -> tuple[str, tuple[int, int]]:
    """(Pillow mode, (H, W)) of an image file, from its header (no pixel is decoded)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            return im.mode, (int(h), int(w))
    except FileNotFoundError:
        raise DataError(f"image file '{path}' does not exist") from None
    except OSError as exc:
        raise DataError(f"image file '{path}' cannot be read as an image ({exc})") from None


def image_channels(path: str) -> int:
    """1 for a grey (or 16-bit) image file, 3 otherwise, from the file's header."""
    return image_channels_of_mode(image_header(path)[0])


def image_channels_of_mode(mode: str) -> int:
    """1 for a grey (or 16-bit) Pillow image mode, 3 otherwise."""
    return 1 if mode in ("1", "L", "I", "I;16", "I;16B", "I;16L", "F") else 3


def image_size_of(path: str) -> tuple[int, int]:
    """(H, W) of an image file, from its header."""
    return image_header(path)[1]


def resolve_image_size(requested: Sequence[int], first_file: str, size_of=None) -> tuple[int, int]:
    """``data.image_size`` as (H, W): one number = square; empty = the size of ``first_file`` (read by
    ``size_of``, default ``image_size_of``: an image file's header)."""
    if not requested:
        return (size_of or image_size_of)(first_file)
    if len(requested) == 1:
        return int(requested[0]), int(requested[0])
    return int(requested[0]), int(requested[1])


@dataclass
class FileData:
    name: str
    files: dict[str, np.ndarray]  # modality -> str (N,): path of every sample's file (absolute, or relative to root)
    labels: np.ndarray  # int64 (N,)
    split: np.ndarray  # str (N,)
    class_names: list[str]
    channels: dict[str, int]  # modality -> 1 (grey) or 3 (RGB)
    image_size: tuple[int, int]  # (H, W) every image is resized to
    root: str = ""  # folder relative paths start from
    groups: Optional[np.ndarray] = None
    info: dict = field(default_factory=dict)
    bona_fide: Optional[np.ndarray] = None
    species: Optional[np.ndarray] = None
    video: Optional[np.ndarray] = None
    listing: str = ""  # the file that lists the samples (a manifest's name), for messages
    lines: Optional[np.ndarray] = None  # int (N,): the line of ``listing`` that lists each sample

    in_memory = False

    @property
    def modalities(self) -> dict[str, np.ndarray]:
        """Modality name -> file paths (the names are what the engine needs; the paths stay here)."""
        return self.files

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {m: (self.channels[m], *self.image_size) for m in self.files}

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def path(self, m: str, i: int) -> str:
        p = str(self.files[m][i])
        return os.path.join(self.root, p) if self.root else p

    def where(self, m: str, i: int) -> str:
        """Where sample ``i``'s file of modality ``m`` is listed: "line 7 of 'manifest.csv', column 'x.rgb'" (or
        "sample 6, modality 'rgb'" without a listing)."""
        if self.lines is not None and self.listing:
            return f"line {int(self.lines[i])} of '{self.listing}', column 'x.{m}'"
        return f"sample {i}, modality '{m}'"

    def read(self, i: int, modalities) -> dict:
        """Sample ``i``: ``{modality: (C, H, W) tensor}`` decoded from its files."""
        return {m: decode_image(self.path(m, i), self.channels[m], self.image_size, self.where(m, i))
                for m in modalities}

    def fingerprint(self) -> str:
        """A hash of the labels, the split, the decoding settings and every file's path, size and
        modification time (no pixel is read). A missing file is a DataError naming it and its sample."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.labels).tobytes())
        h.update("|".join(map(str, self.split.tolist())).encode())
        h.update(repr((sorted(self.channels.items()), tuple(self.image_size))).encode())
        for m in sorted(self.files):
            h.update(m.encode())
            for i, rel in enumerate(self.files[m].tolist()):
                p = self.path(m, i)
                try:
                    st = os.stat(p)
                except FileNotFoundError:
                    raise DataError(f"sample {i} has no '{m}' file: '{p}' does not exist") from None
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    def check(self) -> None:
        n = len(self.labels)
        for m, paths in self.files.items():
            if len(paths) != n:
                raise DataError(f"modality '{m}' has {len(paths)} files but there are {n} labels")
            if self.channels.get(m) not in (1, 3):
                raise DataError(f"modality '{m}' must be read with 1 or 3 channels, got {self.channels.get(m)}")
        check_common(self)
