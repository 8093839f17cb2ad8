"""Paired random augmentation of image modalities, as a pure function of (seed, epoch, sample index).

``augment_sample(sample, cfg, seed, epoch, index)`` returns the augmented ``{modality: (C, H, W) tensor}``.
Every random draw comes from ``derive_seed(seed, "augment", epoch, index)`` (``seed`` is the job's seed
for its stream, e.g. ``derive_seed(run seed, "student")``), so:

* **paired**: the geometric draw (rotation angle, crop box, flip, erased box) is one per sample and applied
  to every image modality, whatever modalities are loaded: a teacher's depth and a student's RGB see the
  same crop, and RAD's regions correspond;
* **per modality**: photometric factors (brightness, contrast) are drawn from a stream keyed by the
  modality's *name* and touch only ``cfg.photometric_modalities`` (RGB by default; never depth, infrared
  or flow values, whose pixels are measurements);
* **reproducible**: the same (seed, epoch, index) gives the same augmented sample in any process, in any
  order, for every method, and after ``--resume``; no global random state is read or changed.

The operations, in order: rotate -> crop (resized back to the input size) -> flip, fused into one affine warp
of every modality (``apply_geometry``; checked against torchvision's ``transforms.v2.functional`` kernels
applied one by one), erase, then photometric jitter (the formulas of torchvision's v2 ``adjust_brightness`` and
``adjust_contrast``, checked against them), computed in float32 and returned in the input's dtype. Rotation fills the corners with 0 (the face crops'
background is already zeroed).
"""
from __future__ import annotations

import math
import random
from typing import Mapping, Optional

import torch
import torch.nn.functional as F

from ..utils import derive_seed

IMAGE_DIMS = 3  # (C, H, W)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of every draw of sample ``index`` at ``epoch``."""
    return derive_seed(seed, "augment", epoch, index)


def geometry(cfg, seed: int, epoch: int, index: int, size: tuple[int, int], base: Optional[int] = None) -> dict:
    """The shared geometric draw of one sample: ``angle`` (degrees), ``crop`` (top, left, h, w) or None,
    ``flip`` (bool), ``erase`` (top, left, h, w) or None, for images of ``size`` (H, W). ``base``: the
    sample's seed when already computed (``sample_seed``)."""
    rng = random.Random(f"{sample_seed(seed, epoch, index) if base is None else base}/geometry")
    h, w = size
    angle = rng.uniform(-cfg.rotate, cfg.rotate) if cfg.rotate else 0.0
    crop = None
    if cfg.crop < 1.0:
        ch, cw = max(1, round(cfg.crop * h)), max(1, round(cfg.crop * w))
        crop = (rng.randint(0, h - ch), rng.randint(0, w - cw), ch, cw)
    flip = bool(cfg.flip) and rng.random() < 0.5
    erase = None
    if cfg.erase and rng.random() < cfg.erase:
        area = rng.uniform(0.02, 0.25) * h * w  # box area and aspect ratio as random erasing (Zhong et al.)
        ratio = rng.uniform(0.3, 1 / 0.3)
        eh = min(h, max(1, round((area * ratio) ** 0.5)))
        ew = min(w, max(1, round((area / ratio) ** 0.5)))
        erase = (rng.randint(0, h - eh), rng.randint(0, w - ew), eh, ew)
    return {"angle": angle, "crop": crop, "flip": flip, "erase": erase}


def photometric(cfg, seed: int, epoch: int, index: int, modality: str, base: Optional[int] = None) -> dict:
    """The photometric draw of one sample's modality ``modality``: brightness and contrast factors."""
    rng = random.Random(f"{sample_seed(seed, epoch, index) if base is None else base}/photometric/{modality}")
    b = rng.uniform(1 - cfg.brightness, 1 + cfg.brightness) if cfg.brightness else 1.0
    c = rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) if cfg.contrast else 1.0
    return {"brightness": b, "contrast": c}


_AXES: dict = {}


def _axes(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised pixel-centre coordinates of the columns (1, W) and rows (H, 1), as ``grid_sample`` with
    align_corners=False reads them."""
    if (h, w) not in _AXES:
        xs = (torch.arange(w, dtype=torch.float32) * 2 + 1) / w - 1
        ys = (torch.arange(h, dtype=torch.float32) * 2 + 1) / h - 1
        _AXES[(h, w)] = (xs.view(1, w), ys.view(h, 1))
    return _AXES[(h, w)]


def warp_matrix(g: dict, h: int, w: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The 2x3 matrix taking an output pixel's normalised coordinates to the source's, for the draw ``g``:
    the inverse of rotate (counter-clockwise by ``angle``, about the centre) -> crop (``crop`` box, scaled
    back to the full size) -> flip, composed in pixel units so that non-square images rotate rigidly:
    pixel offsets from the centre X = u w / 2, Y = v h / 2 are flipped (X -> f X), mapped into the crop
    (X -> sx X + tx, Y -> sy Y + ty), rotated (X -> cX - sY, Y -> sX + cY) and normalised back."""
    f = -1.0 if g["flip"] else 1.0
    sx = sy = 1.0
    tx = ty = 0.0
    if g["crop"] is not None:
        top, left, ch, cw = g["crop"]
        sx, sy, tx, ty = cw / w, ch / h, left + cw / 2 - w / 2, top + ch / 2 - h / 2
    a = math.radians(g["angle"]) if g["angle"] else 0.0
    c, s = math.cos(a), math.sin(a)
    return ((c * sx * f, -s * sy * h / w, 2 / w * (c * tx - s * ty)),
            (s * sx * f * w / h, c * sy, 2 / h * (s * tx + c * ty)))


def _grid(g: dict, h: int, w: int) -> torch.Tensor:
    (a, b, c), (d, e, f) = warp_matrix(g, h, w)
    xs, ys = _axes(h, w)
    return torch.stack([a * xs + (b * ys + c), d * xs + (e * ys + f)], dim=-1)[None]  # (1, H, W, 2)


def _warp_stacked(x: torch.Tensor, g: dict) -> torch.Tensor:
    """A float32 (C, H, W) stack of every modality's channels under the geometric draw ``g`` (a new tensor)."""
    h, w = x.shape[-2:]
    if g["angle"] or g["crop"] is not None:
        x = F.grid_sample(x[None], _grid(g, h, w), mode="bilinear", padding_mode="zeros", align_corners=False)[0]
    elif g["flip"]:
        x = x.flip(-1)
    else:
        x = x.clone()
    if g["erase"] is not None:
        top, left, eh, ew = g["erase"]
        x[..., top:top + eh, left:left + ew] = 0
    return x


def _grey(img: torch.Tensor) -> torch.Tensor:
    return 0.2989 * img[0] + 0.587 * img[1] + 0.114 * img[2] if img.shape[0] == 3 else img.mean(dim=0)


def jitter(img: torch.Tensor, p: dict, integer_range: Optional[tuple[int, int]] = None) -> torch.Tensor:
    """Brightness (x * b) then contrast (m + c * (x - m), m = the mean grey level, ITU-R 601 weights as torchvision for 3
    channels) of a float32 image: the formulas of torchvision's v2 ``adjust_brightness`` and ``adjust_contrast``
    on float images, with values clamped after each step to ``integer_range`` for images that came as integers
    (torchvision's float path clamps to [0, 1]; its uint8 path truncates after each step, mmhal rounds once at
    the end). Float images (in-memory data of any range) are not clamped."""
    if p["brightness"] != 1.0:
        img = img * p["brightness"]
        if integer_range is not None:
            img = img.clamp(*integer_range)
    if p["contrast"] != 1.0:
        mean = _grey(img).mean()
        img = mean + p["contrast"] * (img - mean)
        if integer_range is not None:
            img = img.clamp(*integer_range)
    return img


def _back(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A float32 image back in ``dtype`` (integers: rounded half up and clamped to the type's range)."""
    if dtype.is_floating_point:
        return x.to(dtype)
    info = torch.iinfo(dtype)
    return x.add_(0.5).floor_().clamp_(info.min, info.max).to(dtype)


def apply_geometry(images: dict[str, torch.Tensor], g: dict) -> dict[str, torch.Tensor]:
    """Every image of one sample (same (H, W)) under the geometric draw ``g``, sizes and dtypes kept.

    Rotation, crop (resized back) and flip are fused into one bilinear affine warp of all modalities'
    channels at once (``torch.nn.functional.grid_sample``, zeros outside the image); it equals
    torchvision's v2 kernels ``rotate`` -> ``resized_crop`` -> ``horizontal_flip`` applied one by one up to
    interpolation (``tests/test_augment_samples.py`` checks it against them) at a third of the cost. A flip
    alone is an exact mirror. The erased box is set to 0 in every modality."""
    names = list(images)
    x = _warp_stacked(torch.cat([images[m].float() for m in names], dim=0), g)
    parts = x.split([images[m].shape[0] for m in names], dim=0)
    return {m: _back(part, images[m].dtype) for m, part in zip(names, parts)}


def augment_sample(sample: Mapping[str, torch.Tensor], cfg, seed: int, epoch: int, index: int) -> dict:
    """``sample`` (``{modality: tensor}``) augmented by ``cfg`` (``config.AugmentConfig``) for (``seed``,
    ``epoch``, ``index``); modalities that are not images (C, H, W) pass unchanged. Image modalities of one
    sample must share their (H, W); each keeps its dtype. All image channels are stacked and warped at once."""
    images = {m: t for m, t in sample.items() if t.dim() == IMAGE_DIMS}
    if not images or not cfg.active:
        return dict(sample)
    sizes = {tuple(t.shape[-2:]) for t in images.values()}
    if len(sizes) > 1:
        raise ValueError(f"paired augmentation needs image modalities of one size, got {sorted(sizes)}")
    base = sample_seed(seed, epoch, index)
    names = list(images)
    dtypes = {images[m].dtype for m in names}
    same = len(dtypes) == 1
    stacked = torch.cat([images[m] for m in names], dim=0).float() if same else \
        torch.cat([images[m].float() for m in names], dim=0)
    x = _warp_stacked(stacked, geometry(cfg, seed, epoch, index, sizes.pop(), base))
    bounds, c = {}, 0
    for m in names:
        bounds[m] = (c, c + images[m].shape[0])
        c += images[m].shape[0]
    if cfg.brightness or cfg.contrast:
        for m in names:
            if m in cfg.photometric_modalities:
                dt = images[m].dtype
                lim = None if dt.is_floating_point else (torch.iinfo(dt).min, torch.iinfo(dt).max)
                lo, hi = bounds[m]
                x[lo:hi] = jitter(x[lo:hi], photometric(cfg, seed, epoch, index, m, base), lim)
    out = dict(sample)
    if same:
        x = _back(x, dtypes.pop())
        out.update({m: x[lo:hi] for m, (lo, hi) in bounds.items()})
    else:
        out.update({m: _back(x[lo:hi], images[m].dtype) for m, (lo, hi) in bounds.items()})
    return out


def describe(cfg) -> dict:
    """The active settings of ``cfg`` (for the teacher's cache key and the run's log); {} when off."""
    if not cfg.active:
        return {}
    d = {"flip": cfg.flip, "rotate": cfg.rotate, "crop": cfg.crop, "erase": cfg.erase,
         "brightness": cfg.brightness, "contrast": cfg.contrast}
    if cfg.brightness or cfg.contrast:
        d["photometric_modalities"] = list(cfg.photometric_modalities)
    return d
