"""Action clips read from folders of pre-extracted frames (or video files), decoded on demand (the third
implementation of a dataset).

A :class:`ClipData` holds, per sample and modality, one or more *frame sources*: a folder and a pattern that
picks the modality's frames in it (RGB ``img_00001.jpg``, 16-bit depth ``MDepth-00000001.png``, optical flow as
two grey sources x and y, ``flow_x_00001.jpg`` / ``flow_y_00001.jpg``, stacked as 2 channels). Frames are ordered
by the integer the pattern captures (frame names are often unpadded: ``frame_7_`` before ``frame_10_``), never
by listing order, and the modalities of a sample are paired by that frame number: their numbers must be the
same (flow: the RGB numbers less the last one, or the same), checked when the dataset is made, so a sample
whose modalities disagree is one sentence naming it and the counts.

A non-flow modality may instead be read from one **video file** per sample (``FrameSource.video``; the optional
extra ``mmhal[video]``, PyAV: ``mmhal.data.video``): its frames are numbered 0, 1, ... in decoding order, counted by
decoding, and pair with the sample's other modalities by count alone (the same count; flow one fewer). Optical
flow is read from frame folders only.

Nothing but folder names, patterns and frame counts is held (NTU RGB+D has 56,880 samples of up to 300 frames),
and for a video file the positions and timestamps of its key frames, where reads start (``video``);
a reader lists a sample's folder when it reads the sample (kept in a small per-process cache) and opens a
sample's video file only while it decodes it (in the process that reads: no decoder is pickled). ``read_clip``
decodes the frames of given indices into a ``(C, T, H, W)`` ``uint8`` tensor per modality, resized to
``frame_size`` (H, W); 16-bit depth (millimetres) is clipped to ``value_range[m] = (lo, hi)`` and scaled to
0..255 (a stated, tested encoding: NTU's default is 500-4500 mm) or, without a range, kept as int32 values.

Which frames and views a sample gives is the clip policy of ``data.clip`` (``mmhal.data.clips``):
``sample(i, modalities, mode, seed, epoch)`` with mode ``train`` (one random clip, augmented with one draw for
every modality), ``val`` (the centre clip, centre crop) or ``test`` (``num_test_clips`` clips x
``test_crops`` crops, stacked as a leading view axis: ``(V, C, T, h, w)``). ``read(i, modalities)`` is the
``val`` view, as every other dataset's ``read``.
"""
from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np
import torch

from ..config import ClipConfig, default_cache_dir
from ..errors import DataError
from .base import check_common
from .files import IMAGE_SUFFIXES, decode_image
from .video import cached_index, is_video_name, read_video_frames, video_channels, video_frame_size

#: the default frame pattern: an image file whose name's last integer is the frame number
LAST_NUMBER = r"(?:.*\D)?(\d+)\D*"


@dataclass(frozen=True)
class FrameSource:
    """One channel group of a modality: the frames in ``folders[i]`` whose file name fully matches ``pattern``
    (a regular expression whose first group is the frame number; matched against the name without its image
    suffix), decoded with ``channels`` (1 grey, 3 RGB). With ``video``, ``folders[i]`` is a video file instead,
    whose decoded frames are the frames (``pattern`` unused)."""

    folders: np.ndarray  # str (N,): absolute folder (or video file), or relative to ClipData.root
    pattern: str = LAST_NUMBER
    channels: int = 3
    video: bool = False
    # a video source's key frames, object (N,) of int64 (K, 2) (position, timestamp) arrays (video.video_index),
    # recorded when its frames are counted (count_frames); None: every read decodes from the first frame
    keys: Optional[np.ndarray] = None


@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> "re.Pattern":
    return re.compile(pattern)


def list_frames(folder: str, pattern: str = LAST_NUMBER) -> tuple[list[int], list[str]]:
    """(frame numbers ascending, file names in that order) of the image files in ``folder`` matching ``pattern``;
    a DataError when the folder is missing or two files carry the same number."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        raise DataError(f"frame folder '{folder}' does not exist") from None
    except NotADirectoryError:
        raise DataError(f"'{folder}' is a file, not a folder of frames") from None
    rx = _compiled(pattern)
    found: dict[int, str] = {}
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext.lower() not in IMAGE_SUFFIXES:
            continue
        m = rx.fullmatch(stem)
        if m is None:
            continue
        k = int(m.group(1))
        if k in found:
            raise DataError(f"frame folder '{folder}' has two frames numbered {k}: '{found[k]}' and '{name}'")
        found[k] = name
    keys = sorted(found)
    return keys, [found[k] for k in keys]


def _scale_range(img: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Values clipped to [lo, hi] and scaled to 0..255 (rounded half up), as uint8; float32 arithmetic."""
    x = (img.float().clamp_(lo, hi) - lo) * (255.0 / (hi - lo))
    return x.add_(0.5).floor_().to(torch.uint8)


@functools.lru_cache(maxsize=16)
def _range_table(lo: float, hi: float) -> np.ndarray:
    """``_scale_range`` of every 16-bit value 0..65535 (uint8 (65536,)): indexed by a 16-bit frame it gives
    that frame's ``_scale_range`` exactly (the arithmetic is per value), in a fraction of the time."""
    return _scale_range(torch.arange(1 << 16, dtype=torch.int32), lo, hi).numpy()


@functools.lru_cache(maxsize=256)
def _listing(folder: str, pattern: str) -> tuple[str, ...]:
    return tuple(list_frames(folder, pattern)[1])


@dataclass
class ClipData:
    name: str
    sources: dict[str, list[FrameSource]]  # modality -> its channel groups (flow: x then y)
    num_frames: np.ndarray  # int64 (N,): frames of the sample's reference (non-flow) modalities
    labels: np.ndarray  # int64 (N,)
    split: np.ndarray  # str (N,)
    class_names: list[str]
    frame_size: tuple[int, int]  # (H, W) every frame is resized to when decoded
    clip: ClipConfig = field(default_factory=ClipConfig)
    value_range: dict[str, tuple[float, float]] = field(default_factory=dict)  # modality -> (lo, hi) of 16-bit frames
    root: str = ""
    groups: Optional[np.ndarray] = None
    info: dict = field(default_factory=dict)
    bona_fide: Optional[np.ndarray] = None
    species: Optional[np.ndarray] = None
    video: Optional[np.ndarray] = None

    in_memory = False
    is_clips = True

    # ------------------------------------------------------------------ what the engine asks of every dataset
    @property
    def modalities(self) -> dict[str, list[FrameSource]]:
        return self.sources

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def channels(self, m: str) -> int:
        return sum(s.channels for s in self.sources[m])

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """(C, T, h, w) of the network's input: ``data.clip.length`` frames at ``data.clip.size``."""
        h, w = self.clip.out_size
        return {m: (self.channels(m), int(self.clip.length), h, w) for m in self.sources}

    def indices(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def is_flow(self, m: str) -> bool:
        return m in set(self.clip.flow_modalities)

    def folder(self, src: FrameSource, i: int) -> str:
        p = str(src.folders[i])
        return os.path.join(self.root, p) if self.root else p

    def views(self, mode: str) -> int:
        """Views per sample in ``mode``: 1, or num_test_clips x test_crops for ``test``."""
        return int(self.clip.num_test_clips) * int(self.clip.test_crops) if mode == "test" else 1

    # ------------------------------------------------------------------ decoding
    def _frames(self, m: str, paths: Sequence[str], channels: int) -> torch.Tensor:
        """The frames at ``paths`` decoded and stacked channel-last, (T, H, W, C); 16-bit (or resized) frames of a
        modality with a ``data.depth_range`` clipped and scaled to uint8 (at once, for the whole stack)."""
        x = torch.stack([decode_image(p, channels, self.frame_size).permute(1, 2, 0) for p in paths])
        if x.dtype == torch.uint8:
            return x
        lo_hi = self.value_range.get(m)
        if lo_hi is None:
            return x.to(torch.int32)
        lo, hi = float(lo_hi[0]), float(lo_hi[1])
        if x.dtype == torch.uint16:  # decoded at the stored size: a table lookup, the same values as below
            return torch.from_numpy(np.take(_range_table(lo, hi), x.numpy()))
        return _scale_range(x, lo, hi)

    def read_clip(self, i: int, modalities: Sequence[str], frames: np.ndarray) -> dict[str, torch.Tensor]:
        """``{modality: (C, T, H, W)}`` of sample ``i`` at the frame positions ``frames`` (T,) of its reference
        modalities (flow: clamped to its one fewer frame; a video source: those frames of its file). Each is a view
        of a (T, H, W, C) tensor: the decoders give channel-last frames, so stacking them is a plain copy, and the
        (T, C, H, W) frames the crops resize are then channels-last, the fast path of torchvision's uint8 resize
        (benchmarks/clip_loading.py)."""
        from .clips import flow_indices

        out = {}
        for m in modalities:
            parts = []
            for src in self.sources[m]:
                folder = self.folder(src, i)
                if src.video:  # never flow (check): the reference frame positions as they are
                    keys = None if src.keys is None else src.keys[i]
                    parts.append(read_video_frames(folder, np.asarray(frames), src.channels, self.frame_size, keys))
                    continue
                names = _listing(folder, src.pattern)
                idx = flow_indices(frames, len(names)) if self.is_flow(m) else np.asarray(frames)
                if len(names) == 0 or int(idx.max()) >= len(names):
                    raise DataError(f"sample {i}: frame folder '{folder}' has {len(names)} '{m}' frames, fewer than "
                                    f"the {int(self.num_frames[i])} it had when the dataset was read")
                parts.append(self._frames(m, [os.path.join(folder, names[k]) for k in idx.tolist()], src.channels))
            out[m] = (parts[0] if len(parts) == 1 else torch.cat(parts, dim=3)).permute(3, 0, 1, 2)
        return out

    # ------------------------------------------------------------------ the clip policy
    def sample(self, i: int, modalities: Sequence[str], mode: str = "val", seed: int = 0, epoch: int = 0) -> dict:
        """Sample ``i`` under the clip policy of ``mode`` (module docstring)."""
        from .clips import augment_clip, center_crop, clip_indices, eval_views

        n = int(self.num_frames[i])
        rows = clip_indices(n, self.clip, mode, seed, epoch, i)
        if mode == "train":
            return augment_clip(self.read_clip(i, modalities, rows[0]), self.clip, seed, epoch, i)
        if mode == "val":
            return center_crop(self.read_clip(i, modalities, rows[0]), self.clip.out_size)
        # The test clips overlap in short videos (10 clips of 16 from 40 frames): each distinct frame is decoded
        # once, and every clip takes its frames from those (the same values as decoding each clip on its own).
        frames, at = np.unique(rows, return_inverse=True)
        whole = self.read_clip(i, modalities, frames)
        at = torch.from_numpy(at.reshape(rows.shape))
        views = [v for r in at for v in eval_views({m: x[:, r] for m, x in whole.items()}, self.clip)]
        return {m: torch.stack([v[m] for v in views]) for m in modalities}

    def read(self, i: int, modalities) -> dict:
        """Sample ``i``'s validation view: the centre clip, centre crop."""
        return self.sample(i, list(modalities), "val")

    # ------------------------------------------------------------------ identity and checks
    def fingerprint(self) -> str:
        """A hash of the labels, the split, the decoding and clip settings and every frame folder's (or video
        file's) path, frame count and modification time (no pixel is read)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.labels).tobytes())
        h.update("|".join(map(str, self.split.tolist())).encode())
        h.update(np.ascontiguousarray(self.num_frames).tobytes())
        h.update(repr((tuple(self.frame_size), sorted(self.value_range.items()))).encode())
        for m in sorted(self.sources):
            for src in self.sources[m]:
                kind = "\0video" if src.video else ""  # nothing added for frame folders: their hashes stay
                h.update(f"{m}\0{src.pattern}\0{src.channels}{kind}".encode())
                for i, rel in enumerate(src.folders.tolist()):
                    try:
                        st = os.stat(self.folder(src, i))
                    except FileNotFoundError:
                        raise DataError(f"sample {i} has no '{m}' frames: '{self.folder(src, i)}' does not exist") from None
                    h.update(f"{rel}\0{st.st_mtime_ns}\n".encode())
        return h.hexdigest()[:16]

    def check(self) -> None:
        n = len(self.labels)
        if len(self.num_frames) != n:
            raise DataError(f"the clip data has {n} labels but {len(self.num_frames)} frame counts")
        for m, srcs in self.sources.items():
            if not srcs:
                raise DataError(f"modality '{m}' has no frame source")
            for src in srcs:
                if len(src.folders) != n:
                    raise DataError(f"modality '{m}' has {len(src.folders)} frame folders but there are {n} labels")
                if src.channels not in (1, 3):
                    raise DataError(f"modality '{m}' frames must be read with 1 or 3 channels, got {src.channels}")
            if self.is_flow(m) and any(src.video for src in srcs):
                raise DataError(f"optical-flow modality '{m}' is read from video files; flow is read from folders of "
                                "frames only")
            if self.is_flow(m) and self.channels(m) != 2:
                raise DataError(f"optical-flow modality '{m}' needs 2 channels (x and y), got {self.channels(m)}")
        if (self.num_frames < 1).any():
            i = int(np.flatnonzero(self.num_frames < 1)[0])
            raise DataError(f"sample {i} ({describe(self, i)}) has no frames")
        fh, fw = self.frame_size
        h, w = self.clip.out_size
        if fh < h or fw < w:
            raise DataError(f"frames are decoded at {fh}x{fw} but data.clip.size is {h}x{w}: the evaluation crops "
                            "need frames at least that large; raise data.image_size or lower data.clip.size")
        check_common(self)


def describe(data: ClipData, i: int) -> str:
    """A sample's folders (or video files), for messages: the first source's of each modality."""
    return ", ".join(f"{m}: '{data.folder(srcs[0], i)}'" for m, srcs in data.sources.items())


#: a source's frames in one sample: (count, frame numbers), the numbers None for a video file
_Frames = tuple[int, Optional[list[int]]]


def _pairs(a: _Frames, b: _Frames, fewer: bool = False) -> bool:
    """Whether frames ``a`` pair with ``b``: the same frame numbers (``fewer``: b's but the last), or, where
    either is a video (no numbers), the same count (``fewer``: one less)."""
    if a[1] is None or b[1] is None:
        return a[0] == b[0] - (1 if fewer else 0)
    return a[1] == (b[1][:-1] if fewer else b[1])


def count_frames(sources: Mapping[str, Sequence[FrameSource]], root: str, flow: Sequence[str], where,
                 progress: bool = False, cache_dir: Optional[str] = None,
                 failed: Optional[list] = None) -> tuple[np.ndarray, dict[str, list[FrameSource]]]:
    """The reference frame count of every sample, after checking that its modalities pair frame by frame:
    every non-flow source lists the same frame numbers, and a flow source the same numbers or all but the last;
    a video source (frames counted by decoding) pairs by count alone: the same count, or flow one fewer.
    ``where(i)`` names sample ``i`` in the one-sentence DataError of a mismatch. Also the sources, each video
    source with the key frames its counting pass found (``FrameSource.keys``); video indexes are kept in
    ``cache_dir`` (``video.cached_index``; cache writes that failed are appended to ``failed``)."""
    from dataclasses import replace

    from tqdm.auto import tqdm

    n = len(next(iter(next(iter(sources.values())))).folders)
    counts = np.zeros(n, dtype=np.int64)
    flows = set(flow)
    key_frames = {(m, j): np.empty(n, dtype=object)
                  for m, srcs in sources.items() for j, src in enumerate(srcs) if src.video}
    desc = "counting frames" + (" (videos are decoded once)" if key_frames else "")
    for i in tqdm(range(n), desc=desc, unit="sample", leave=False, disable=not progress):
        ref: Optional[tuple[str, _Frames]] = None
        flow_lists = []
        for m, srcs in sources.items():
            mine: Optional[_Frames] = None
            for j, src in enumerate(srcs):
                p = str(src.folders[i])
                folder = os.path.join(root, p) if root else p
                if src.video:
                    count, key_frames[m, j][i] = cached_index(folder, cache_dir, failed)
                    got: _Frames = (count, None)
                    if not got[0]:
                        raise DataError(f"{where(i)} has no '{m}' frames: the video file '{folder}' holds no "
                                        "decodable frame")
                else:
                    keys, _ = list_frames(folder, src.pattern)
                    if not keys:
                        raise DataError(f"{where(i)} has no '{m}' frames in '{folder}' (no image file matches the "
                                        "frame pattern)")
                    got = (len(keys), keys)
                if mine is None:
                    mine = got
                elif not _pairs(got, mine):
                    raise DataError(f"{where(i)} has {mine[0]} and {got[0]} frames in the channel folders of "
                                    f"'{m}' (e.g. flow x and y); they need the same frames")
            if m in flows:
                flow_lists.append((m, mine))
            elif ref is None:
                ref = (m, mine)
            elif not _pairs(mine, ref[1]):
                raise DataError(f"{where(i)} has {ref[1][0]} '{ref[0]}' frames but {mine[0]} '{m}' frames"
                                + ("" if mine[0] != ref[1][0] else " with other frame numbers")
                                + "; every modality needs the same frames")
        if ref is None:  # flow only: its own count
            counts[i] = flow_lists[0][1][0]
            continue
        for m, got in flow_lists:
            if not _pairs(got, ref[1]) and not _pairs(got, ref[1], fewer=True):
                raise DataError(f"{where(i)} has {ref[1][0]} '{ref[0]}' frames but {got[0]} '{m}' frames; "
                                f"optical flow has as many frames as '{ref[0]}' or one fewer, with the same numbers")
        counts[i] = ref[1][0]
    return counts, {m: [replace(src, keys=key_frames[m, j]) if src.video else src for j, src in enumerate(srcs)]
                    for m, srcs in sources.items()}


# ----------------------------------------------------------------------------- frame folders named by a manifest
FLOW_SUBFOLDERS = (("x", "y"), ("u", "v"))
FLOW_PREFIXES = (("flow_x", "flow_y"), ("x_", "y_"))


def prefix_pattern(prefix: str) -> str:
    """The frame pattern of files named ``<prefix><anything not a digit><number>...``."""
    return re.escape(prefix) + r"\D*(\d+)\D*"


def folder_sources(m: str, folders: Sequence[str], root: str, flow: bool) -> list[FrameSource]:
    """The frame sources of modality ``m`` whose per-sample folders are ``folders``, told from the first one:

    * optical flow: subfolders ``x/`` and ``y/`` (or ``u/`` and ``v/``), or files ``flow_x_*`` and ``flow_y_*``
      (or ``x_*`` and ``y_*``) side by side: two grey sources;
    * otherwise every image file, numbered by the last integer in its name; in a folder that also holds
      ``flow_*`` files (mmaction2's rawframes), only the ``img_*`` files;
    * a video file (``video.VIDEO_SUFFIXES``; not for optical flow): its decoded frames, 1 channel when its pixel
      format is grey, else 3.
    """
    from .files import image_channels

    first = os.path.join(root, folders[0]) if root else folders[0]
    arr = np.asarray(folders, dtype=str)
    if is_video_name(first) and not os.path.isdir(first):  # (a flow video is refused: check_frame_folders, check)
        return [FrameSource(arr, LAST_NUMBER, video_channels(first), video=True)]
    try:
        names = os.listdir(first)
    except FileNotFoundError:
        raise DataError(f"frame folder '{first}' (modality '{m}') does not exist") from None
    except NotADirectoryError:
        raise DataError(f"'{first}' (modality '{m}') is a file; a clip manifest names one folder of frames per "
                        "modality and sample") from None
    if flow:
        for a, b in FLOW_SUBFOLDERS:
            if os.path.isdir(os.path.join(first, a)) and os.path.isdir(os.path.join(first, b)):
                return [FrameSource(np.char.add(arr, "/" + a), LAST_NUMBER, 1),
                        FrameSource(np.char.add(arr, "/" + b), LAST_NUMBER, 1)]
        for a, b in FLOW_PREFIXES:
            if any(n.startswith(a) for n in names) and any(n.startswith(b) for n in names):
                return [FrameSource(arr, prefix_pattern(a), 1), FrameSource(arr, prefix_pattern(b), 1)]
        raise DataError(f"optical-flow folder '{first}' has neither x/ and y/ (or u/ and v/) subfolders nor "
                        "flow_x_*/flow_y_* (or x_*/y_*) frames")
    pattern = LAST_NUMBER
    if any(n.startswith("img_") for n in names) and any(n.startswith("flow_") for n in names):
        pattern = prefix_pattern("img_")
    _, frames = list_frames(first, pattern)
    if not frames:
        raise DataError(f"frame folder '{first}' (modality '{m}') holds no image file "
                        f"({', '.join(IMAGE_SUFFIXES)}) with a frame number in its name")
    return [FrameSource(arr, pattern, image_channels(os.path.join(first, frames[0])))]


def first_frame(data_sources: Mapping[str, Sequence[FrameSource]], root: str) -> str:
    """The path of the first frame of sample 0's first modality (its size is the default decode size; see
    ``frame_size_of``), or of its video file for a video source."""
    src = next(iter(data_sources.values()))[0]
    p = str(src.folders[0])
    folder = os.path.join(root, p) if root else p
    if src.video:
        return folder
    return os.path.join(folder, list_frames(folder, src.pattern)[1][0])


def frame_size_of(path: str) -> tuple[int, int]:
    """(H, W) of the image file at ``path``, or of the first decoded frame of a video file."""
    from .files import image_size_of

    if is_video_name(path) and os.path.isfile(path):
        return video_frame_size(path)
    return image_size_of(path)


def check_frame_folders(files: Mapping[str, Sequence[str]], root: str, where, flow: Sequence[str] = ()) -> None:
    """A DataError for the first cell of ``files`` (modality -> per-sample folders or video files) that is neither
    a folder of frames nor an existing video file (``video.VIDEO_SUFFIXES``), is a video file of an optical-flow
    modality (in ``flow``), or is not of the kind of the modality's first cell; ``where(m, i)`` says where it was
    listed. Nothing is decoded."""
    flows = set(flow)
    for m, paths in files.items():
        kind = None
        for i, rel in enumerate(paths):
            p = os.path.join(root, rel) if root else rel
            if os.path.isdir(p):
                mine = "a folder of frames"
            elif is_video_name(p):
                if m in flows:
                    raise DataError(f"{where(m, i)}: '{p}' is a video file, but optical flow ('{m}') is read from "
                                    "folders of frames only")
                if not os.path.isfile(p):
                    raise DataError(f"{where(m, i)}: video file '{p}' does not exist")
                mine = "a video file"
            else:
                raise DataError(f"{where(m, i)}: '{p}' is not a folder of frames (a clip manifest names one folder "
                                "per modality and sample, or a video file with the extra mmhal[video])")
            if kind is None:
                kind = mine
            elif mine != kind:
                raise DataError(f"{where(m, i)}: '{p}' is {mine} but the first '{m}' cell names {kind}; every sample "
                                "of a modality needs the same kind")


def build_clip_data(cfg, name: str, root: str, sources: Mapping[str, list[FrameSource]], labels, split, class_names,
                    where, progress: Optional[bool] = False, value_range=None, info: Optional[dict] = None,
                    **fields) -> ClipData:
    """The ClipData of ``sources`` read as ``cfg`` (a DataConfig) says, after counting and pairing every sample's
    frames (``count_frames``; ``where(i)`` names sample ``i``; ``progress`` None = a bar when stderr is a
    terminal): frames decoded at ``cfg.image_size`` (default: the first frame's size), 16-bit frames clipped to
    ``value_range`` (default: ``cfg.depth_range`` for every modality, when set), clips as ``cfg.clip``.
    ``info`` gains the frame counts (min, median, max) and the input shapes; ``fields``: groups, bona_fide, ..."""
    import sys

    from .files import resolve_image_size

    show = sys.stderr.isatty() if progress is None else bool(progress)
    failed: list[str] = []
    counts, sources = count_frames(sources, root, list(cfg.clip.flow_modalities), where, progress=show,
                                   cache_dir=default_cache_dir(), failed=failed)
    if value_range is None:
        value_range = {m: tuple(cfg.depth_range) for m in sources} if cfg.depth_range else {}
    info = {} if info is None else info
    if failed:
        info.setdefault("warnings", []).append(
            f"the frame counts of {len(failed)} video files could not be kept in the cache ({failed[0]}); they are "
            "decoded to count their frames on every load: set $MMHAL_CACHE to a writable folder")
    info["frames"] = {"min": int(counts.min()), "median": float(np.median(counts)), "max": int(counts.max())}
    first = first_frame(sources, root)
    frame_size = resolve_image_size(cfg.image_size, first, frame_size_of)
    data = ClipData(name=name, sources=dict(sources), num_frames=counts, labels=labels, split=split,
                    class_names=list(class_names), frame_size=frame_size,
                    clip=cfg.clip, value_range=value_range, root=root, info=info, **fields)
    info["modalities"] = {m: list(shape) for m, shape in data.shapes.items()}
    return data


def manifest_clip_data(cfg, name: str, root: str, files: Mapping[str, Sequence[str]], labels, split, class_names,
                       where_cell, where_sample, progress: Optional[bool] = False, **fields) -> ClipData:
    """``build_clip_data`` of a manifest's frame-folder cells (``files``: modality -> per-sample folders or video
    files), each checked to be a folder or a video file first; flow layouts as ``folder_sources`` tells them."""
    flow = set(cfg.clip.flow_modalities)
    check_frame_folders(files, root, where_cell, sorted(flow))
    sources = {m: folder_sources(m, paths, root, m in flow) for m, paths in files.items()}
    return build_clip_data(cfg, name, root, sources, labels, split, class_names, where_sample, progress, **fields)
