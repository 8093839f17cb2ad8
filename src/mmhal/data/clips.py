"""Clips of action videos: which frames a sample uses, and the augmentation shared by its modalities.

Pure functions over frame counts and tensors (no file I/O), for a frame-folder loader and the training engine.
A clip modality is a ``(C, T, H, W)`` tensor (float or uint8); one sample is ``{modality: clip}``.

**Frame indices** (``clip_indices``; int64 numpy arrays, one row per clip). A clip is ``length`` frames taken
every ``stride`` frames, so it spans ``span = (length - 1) * stride + 1`` frames of a video of ``n`` frames:

* ``train`` (``train_indices``): one clip at a random start in ``[0, n - span]``, drawn from
  ``derive_seed(seed, "clip", epoch, index)``: the same (seed, epoch, sample index) gives the same clip in any
  process and order, and after ``--resume``; no global random state is read or changed;
* ``val`` (``center_indices``): the centre clip, start ``ceil((n - span) / 2)`` (deterministic);
* ``test`` (``spaced_indices``): ``num_clips`` clips whose starts are the centres of ``num_clips`` equal parts
  of ``[0, n - span]`` (start ``k`` = ``floor((2k + 1) (n - span + 1) / (2 num_clips))``), so with an odd number of
  clips the middle one is the ``val`` clip; when the video has fewer possible starts than clips, some clips repeat;
* **short videos** (``n < span``; NW-UCLA has sequences of 1 frame and 90 shorter than 16) are **loop-padded**:
  the clip is the frames ``0, stride, 2 stride, ...`` below ``n``, repeated in order until it has ``length``
  frames (``n = 5, length = 8, stride = 2`` -> ``0 2 4 0 2 4 0 2``), the same in every split (TMM-MMH's
  LoopPad, applied after the stride);
* ``n = 0`` is a ``DataError``.

The same indices serve every modality of the sample (sample them once, from one frame count). Optical flow
from TV-L1 has one frame fewer than RGB (flow frame t is the motion t -> t + 1 and pairs with RGB frame t):
``flow_indices(idx, n_flow)`` clamps RGB indices to ``n_flow - 1``.

**Augmentation** (``augment_clip``; training only). One geometric draw per clip, from ``derive_seed(seed,
"clip-augment", epoch, index)``, applied to every modality and every frame: a random resized crop (area a
fraction in ``cfg.scale`` of the frame, aspect ratio w / h log-uniform in ``cfg.ratio``, as Inception /
torchvision's ``RandomResizedCrop``), resized to ``cfg.size`` (bilinear, antialiased: torchvision's
``transforms.v2.functional.resized_crop``), then a horizontal flip with probability 0.5 when ``cfg.flip``.
The modalities of one sample must share (H, W) (a loader resizes each modality to one size when decoding).

* **Flow under a flip**: the image is mirrored *and* its x component (channel 0 of the 2 channels x, y) is
  negated about ``flow_center``, the stored value of zero motion: ``x -> 2 flow_center - x``; y is unchanged.
  ``flow_center = None`` means 0 for float flow (signed values, e.g. pixels or I3D's [-1, 1]) and 127.5 for
  uint8 flow (denseflow's JPEG encoding p = 255 (v + 20) / 40, so ``p -> 255 - p``, as the I3D pipeline does).
  Flow values are not rescaled by the crop's resize (as in the I3D, TSN and mmaction2 pipelines).
* **Photometric** brightness and contrast (``augment.jitter``: torchvision's v2 formulas; the contrast's grey
  mean is that of the whole clip, so frames do not flicker) draw per modality name (``augment.photometric``)
  and touch only ``cfg.photometric_modalities`` (RGB); never flow or depth, whose values are measurements.
* Every output keeps its input's dtype (integers rounded half up and clamped to their range).

**Evaluation views** (no randomness, no resize: frames come at the loader's decode size, which must be at
least ``cfg.size``): ``center_crop`` (validation) and ``three_crop`` (crops at the start, centre and end of
the axis with more room, centred on the other, as the 10 clips x 3 crops test protocol); ``eval_views``
picks by ``cfg.test_crops``.
"""
from __future__ import annotations

import math
import random
from typing import Mapping, Optional

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF

from ..config import ClipConfig, is_whole as _is_int, items_of as _items, pair_of as _pair
from ..errors import DataError, UserError
from ..utils import derive_seed
from .augment import jitter, photometric

SPLITS = ("train", "val", "test")
CLIP_DIMS = 4  # (C, T, H, W)
FLOW_CHANNELS = 2  # (x, y)
UINT8_FLOW_CENTER = 127.5  # denseflow / mmaction2 JPEG flow: p = 255 (v + b) / (2 b)


# ---------------------------------------------------------------------------------------------------------
# Configuration


# ---------------------------------------------------------------------------------------------------------
# Frame indices


def _check_clip(length: int, stride: int) -> None:
    if not _is_int(length) or length < 1:
        raise UserError(f"a clip's length must be a whole number of at least 1, got {length!r}")
    if not _is_int(stride) or stride < 1:
        raise UserError(f"a clip's stride must be a whole number of at least 1, got {stride!r}")


def _check_frames(n: int) -> int:
    if not _is_int(n):
        raise DataError(f"a video's frame count must be a whole number, got {n!r}")
    if n < 1:
        raise DataError(f"a video with {n} frames has no clip to sample; check that its frame folder is not empty")
    return int(n)


def clip_span(length: int, stride: int = 1) -> int:
    """The number of frames a clip of ``length`` frames every ``stride`` frames covers: (length - 1) stride + 1."""
    _check_clip(length, stride)
    return (length - 1) * stride + 1


def _clip_at(n: int, start: int, length: int, stride: int) -> np.ndarray:
    """The clip starting at ``start``, or the loop-padded clip when the video is shorter than the span."""
    if n < clip_span(length, stride):
        base = np.arange(0, n, stride, dtype=np.int64)
        return np.resize(base, length)  # repeats ``base`` in order
    return start + stride * np.arange(length, dtype=np.int64)


def train_indices(n: int, length: int, stride: int, seed: int, epoch: int, index: int) -> np.ndarray:
    """The training clip (``length`` int64 indices) of sample ``index`` at ``epoch``: a random start drawn from
    ``derive_seed(seed, "clip", epoch, index)``; loop-padded when ``n`` < the span."""
    n = _check_frames(n)
    room = n - clip_span(length, stride) + 1
    start = int(np.random.default_rng(derive_seed(seed, "clip", epoch, index)).integers(0, room)) if room > 0 else 0
    return _clip_at(n, start, length, stride)


def spaced_indices(n: int, length: int, stride: int, num_clips: int) -> np.ndarray:
    """``num_clips`` clips (a (num_clips, length) int64 array) evenly spaced over a video of ``n`` frames: starts
    at the centres of ``num_clips`` equal parts of the possible starts. Deterministic; loop-padded when short."""
    n = _check_frames(n)
    if not _is_int(num_clips) or num_clips < 1:
        raise UserError(f"the number of test clips must be a whole number of at least 1, got {num_clips!r}")
    room = n - clip_span(length, stride) + 1
    if room <= 0:
        return np.tile(_clip_at(n, 0, length, stride), (num_clips, 1))
    k = np.arange(num_clips, dtype=np.int64)
    starts = ((2 * k + 1) * room) // (2 * num_clips)
    return starts[:, None] + stride * np.arange(length, dtype=np.int64)[None, :]


def center_indices(n: int, length: int, stride: int = 1) -> np.ndarray:
    """The centre clip (``length`` int64 indices): start ceil((n - span) / 2); loop-padded when short."""
    return spaced_indices(n, length, stride, 1)[0]


def clip_indices(n: int, cfg: ClipConfig, split: str, seed: int = 0, epoch: int = 0, index: int = 0) -> np.ndarray:
    """The clips of one sample for ``split`` as a (clips, cfg.length) int64 array: one random clip (train), the
    centre clip (val) or ``cfg.num_test_clips`` evenly spaced clips (test). Use the same rows for every modality."""
    if split == "train":
        return train_indices(n, cfg.length, cfg.stride, seed, epoch, index)[None]
    if split == "val":
        return center_indices(n, cfg.length, cfg.stride)[None]
    if split == "test":
        return spaced_indices(n, cfg.length, cfg.stride, cfg.num_test_clips)
    raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


def flow_indices(rgb_indices, n_flow: int) -> np.ndarray:
    """The flow frames paired with RGB frame indices (any shape): the same index, clamped to ``n_flow - 1``.
    TV-L1 flow has one frame fewer than RGB (flow t is the motion t -> t + 1), so RGB's last frame takes the
    last flow frame."""
    if not _is_int(n_flow) or n_flow < 1:
        raise DataError(f"an optical-flow video with {n_flow} frames has no frame to pair with RGB; "
                        "check that its flow folder is not empty")
    idx = np.asarray(rgb_indices, dtype=np.int64)
    if idx.size and idx.min() < 0:
        raise ValueError(f"frame indices must be non-negative, got {int(idx.min())}")
    return np.minimum(idx, n_flow - 1)


def take_frames(video: torch.Tensor, indices) -> torch.Tensor:
    """The frames ``indices`` (1-D) of a (C, N, H, W) video, as a (C, len(indices), H, W) clip."""
    idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
    if idx.dim() != 1:
        raise ValueError(f"take_frames expects 1-D indices, got shape {tuple(idx.shape)}")
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= video.shape[1]):
        raise DataError(f"a clip asks for frame {int(idx.max())} of a video with {video.shape[1]} frames")
    return video.index_select(1, idx)


# ---------------------------------------------------------------------------------------------------------
# Augmentation


def augment_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of every spatial draw of sample ``index`` at ``epoch`` (independent of the frame draw)."""
    return derive_seed(seed, "clip-augment", epoch, index)


def random_resized_box(rng: random.Random, size: tuple[int, int], scale, ratio) -> tuple[int, int, int, int]:
    """A crop box (top, left, h, w) of a (H, W) frame: area a fraction uniform in ``scale``, aspect w / h
    log-uniform in ``ratio``; after 10 draws that do not fit, the central box of the whole frame's height or
    width with the aspect clamped to ``ratio``."""
    h, w = size
    area = h * w
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        a = area * rng.uniform(scale[0], scale[1])
        r = math.exp(rng.uniform(lo, hi))
        cw, ch = round(math.sqrt(a * r)), round(math.sqrt(a / r))
        if 0 < cw <= w and 0 < ch <= h:
            return rng.randint(0, h - ch), rng.randint(0, w - cw), ch, cw
    aspect = w / h
    if aspect < ratio[0]:
        cw, ch = w, max(1, min(h, round(w / ratio[0])))
    elif aspect > ratio[1]:
        ch, cw = h, max(1, min(w, round(h * ratio[1])))
    else:
        ch, cw = h, w
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def clip_geometry(cfg: ClipConfig, seed: int, epoch: int, index: int, size: tuple[int, int]) -> dict:
    """The shared geometric draw of one training clip of frames ``size`` (H, W): ``crop`` (top, left, h, w) and
    ``flip`` (bool)."""
    rng = random.Random(f"{augment_seed(seed, epoch, index)}/geometry")
    crop = random_resized_box(rng, (int(size[0]), int(size[1])), _pair(cfg.scale), _pair(cfg.ratio))
    flip = bool(cfg.flip) and rng.random() < 0.5
    return {"crop": crop, "flip": flip}


def _to_dtype(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if dtype.is_floating_point:
        return x.to(dtype)
    info = torch.iinfo(dtype)
    return x.add(0.5).floor_().clamp_(info.min, info.max).to(dtype)


def flow_center_of(flow: torch.Tensor, flow_center: Optional[float]) -> float:
    """The stored value of zero motion: ``flow_center``, or 127.5 for uint8 flow and 0 otherwise when None."""
    if flow_center is not None:
        return float(flow_center)
    return UINT8_FLOW_CENTER if flow.dtype == torch.uint8 else 0.0


def negate_flow_x(flow: torch.Tensor, flow_center: Optional[float] = None) -> torch.Tensor:
    """A (2, ...) flow with its x component (channel 0) negated about its zero value c: x -> 2 c - x (a new
    tensor, same dtype; integers rounded half up and clamped: 127.5 on uint8 is exactly p -> 255 - p)."""
    if flow.shape[0] != FLOW_CHANNELS:
        raise DataError(f"optical flow has {FLOW_CHANNELS} channels (x, y), got {flow.shape[0]}")
    c = flow_center_of(flow, flow_center)
    out = flow.clone()
    out[0] = _to_dtype(2 * c - flow[0].double(), flow.dtype)
    return out


def _check_sample(clips: Mapping[str, torch.Tensor], flow_modalities=()) -> tuple[int, int]:
    """The (H, W) shared by every clip of the sample; a DataError in one sentence otherwise."""
    if not clips:
        raise DataError("a clip sample has no modality")
    for m, x in clips.items():
        if x.dim() != CLIP_DIMS:
            raise DataError(f"modality '{m}' has shape {tuple(x.shape)}; a clip is (C, T, H, W)")
        if m in flow_modalities and x.shape[0] != FLOW_CHANNELS:
            raise DataError(f"modality '{m}' is optical flow but has {x.shape[0]} channels; flow has 2 (x, y)")
    sizes = sorted({tuple(x.shape[-2:]) for x in clips.values()})
    if len(sizes) > 1:
        raise DataError(f"the modalities of one clip sample have frames of different sizes {sizes}; "
                        "resize them to one size when decoding, so that one crop fits all")
    return sizes[0]


def augment_clip(clips: Mapping[str, torch.Tensor], cfg: ClipConfig, seed: int, epoch: int, index: int) -> dict:
    """``{modality: (C, T, H, W)}`` augmented for training: one random resized crop to ``cfg.size`` and one flip
    for all modalities and frames (flow's x negated under the flip), then brightness/contrast on
    ``cfg.photometric_modalities`` only. A function of (seed, epoch, index); dtypes kept."""
    size = _check_sample(clips, _items(cfg.flow_modalities))
    g = clip_geometry(cfg, seed, epoch, index, size)
    top, left, ch, cw = g["crop"]
    out_size = list(cfg.out_size)
    flows, photo = set(_items(cfg.flow_modalities)), set(_items(cfg.photometric_modalities))
    base = augment_seed(seed, epoch, index)
    out = {}
    for m, x in clips.items():
        # resized as (T, C, H, W) frames: the same numbers as (C, T, H, W), but uint8 RGB/grey frames take
        # torchvision's fast uint8 path (about twice as fast; benchmarks/clip_loading.py)
        y = TF.resized_crop(x.transpose(0, 1), top, left, ch, cw, out_size, antialias=True).transpose(0, 1)
        y = y.contiguous()
        if g["flip"]:
            y = y.flip(-1)
            if m in flows:
                y = negate_flow_x(y, cfg.flow_center)
        if m in photo and (cfg.brightness or cfg.contrast):
            dt = y.dtype
            lim = None if dt.is_floating_point else (torch.iinfo(dt).min, torch.iinfo(dt).max)
            y = _to_dtype(jitter(y.float(), photometric(cfg, seed, epoch, index, m, base), lim), dt)
        out[m] = y
    return out


def _crop_all(clips: Mapping[str, torch.Tensor], top: int, left: int, h: int, w: int) -> dict:
    return {m: x[..., top:top + h, left:left + w].clone(memory_format=torch.contiguous_format)
            for m, x in clips.items()}


def _fit(clips: Mapping[str, torch.Tensor], size) -> tuple[int, int, int, int]:
    """(H, W) of the sample's frames and the crop (h, w); a DataError when the crop is larger than the frames."""
    H, W = _check_sample(clips)
    pair = _pair(size)
    if pair is None or not all(_is_int(s) and s >= 1 for s in pair):
        raise UserError(f"a crop size is two whole numbers of at least 1, [H, W], got {size!r}")
    h, w = int(pair[0]), int(pair[1])
    if h > H or w > W:
        raise DataError(f"frames of {H}x{W} pixels are smaller than the {h}x{w} crop; decode them at a size of at "
                        "least the crop size")
    return H, W, h, w


def center_crop(clips: Mapping[str, torch.Tensor], size) -> dict:
    """The central (h, w) = ``size`` crop of every modality (no resize, no randomness)."""
    H, W, h, w = _fit(clips, size)
    return _crop_all(clips, (H - h) // 2, (W - w) // 2, h, w)


def three_crop(clips: Mapping[str, torch.Tensor], size) -> list[dict]:
    """Three (h, w) = ``size`` crops of every modality: at the start, centre and end of the axis with more room
    (left/centre/right for landscape frames, top/centre/bottom for portrait ones; horizontal on a tie), centred
    on the other axis. No resize, no randomness."""
    H, W, h, w = _fit(clips, size)
    if W - w >= H - h:
        top = (H - h) // 2
        return [_crop_all(clips, top, left, h, w) for left in (0, (W - w) // 2, W - w)]
    left = (W - w) // 2
    return [_crop_all(clips, top, left, h, w) for top in (0, (H - h) // 2, H - h)]


def eval_views(clips: Mapping[str, torch.Tensor], cfg: ClipConfig, crops: Optional[int] = None) -> list[dict]:
    """The spatial test views of one clip: ``[center_crop]`` for 1 crop, ``three_crop`` for 3 (``crops`` or
    ``cfg.test_crops``), each of ``cfg.size``."""
    crops = cfg.test_crops if crops is None else crops
    if crops == 1:
        return [center_crop(clips, cfg.out_size)]
    if crops == 3:
        return three_crop(clips, cfg.out_size)
    raise UserError(f"a test clip has 1 or 3 crops, got {crops!r}")
