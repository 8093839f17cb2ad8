"""Frames decoded from video files with PyAV (the optional extra ``pip install "mmhal[video]"``).

A clip manifest's cell may name a video file (``VIDEO_SUFFIXES``) instead of a folder of frames; ``data.frames``
reads it through the functions here: :func:`video_index` (the frame count and the key frames; kept on disk by
:func:`cached_index`),
:func:`video_frame_size`, :func:`video_channels` and :func:`read_video_frames`. PyAV is imported when one of
them is called, never when this module is imported, so everything else works without it.

* **Frame count: always by decoding.** A container's own count (``stream.frames``) is missing in Matroska and
  WebM, a guess in some AVI files, and in MP4 counts samples that the decoder may drop (edit lists, packed
  B-frames, a damaged tail), while a clip's frame positions must exist when they are read. So the count is the
  number of frames the decoder gives, from the same decoding loop that :func:`read_video_frames` runs (the
  count and the positions agree by construction); no frame is converted to pixels. It costs one decoding pass
  per video (UCF101-sized files: ~30 ms for MPEG-4, ~140 ms for H.264 on one core), so :func:`cached_index`
  keeps each file's count and key frames in ``<cache>/video-index/``, under a name made from the file's path,
  size and modification time and PyAV's version: a video is decoded to count its frames once, and again only
  when it changes.
* **Reading: from a key frame whose position was counted, else from the first frame.** Frame ``k`` is the
  ``k``-th frame the decoder gives. A timestamp alone does not give a frame's position (variable frame rates,
  B-frames, edit lists), so the counting pass (:func:`video_index`) also records the position and timestamp of
  every key frame the decoder gives. A read of frames from position ``a`` on seeks to the last recorded key frame
  at or before ``a``, skips what the decoder gives before the frame of that timestamp (an open GOP's leading
  frames) and counts positions from there; every later recorded key frame the read passes is checked against
  the record (the frames between key frames are not checked one by one: what follows a key frame in a
  conforming stream does not depend on what precedes it, so the decoder gives it as it did from the start).
  Where the decoder disagrees (the key frame's timestamp never comes, comes late, or a key frame lands at
  another position) or the file has no usable timestamps, the read starts over from the first frame: the
  frames are the same either way, only the cost differs (the tests compare the two on MPEG-4, H.264 with
  B-frames and an open GOP, and VP9, in MP4, Matroska and AVI). It stops after the last wanted frame.
* **Processes:** every call opens the file, decodes and closes it; no decoder outlives a call, so datasets
  holding video paths pickle into DataLoader worker processes and each worker opens its own decoders.

Frames are decoded at 8 bits per channel: RGB (``rgb24``) or, with one channel, luma (``gray``).
"""
from __future__ import annotations

import os
from typing import Optional, Sequence

import numpy as np
import torch

from ..errors import DataError, UserError

#: the file suffixes (lower case) a manifest cell names a video with
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v")

MISSING = 'decoding video files needs PyAV, the optional extra: pip install "mmhal[video]"'


def is_video_name(path: str) -> bool:
    """Whether ``path`` ends with a video suffix (case-insensitive); the file is not opened."""
    return os.path.splitext(str(path))[1].lower() in VIDEO_SUFFIXES


def _av():
    """The ``av`` module, or a UserError telling how to install it."""
    try:
        import av
    except ImportError:
        raise UserError(MISSING) from None
    return av


def _reason(exc: BaseException) -> str:
    """FFmpeg's own words for ``exc`` (its strerror, without the file name PyAV appends), else its first line."""
    text = str(getattr(exc, "strerror", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class _Video:
    """An open video file (a context manager): its first video stream and the frames its decoder gives, with
    every failure a one-sentence DataError naming the file."""

    def __init__(self, path: str):
        self.path = str(path)
        self.av = _av()
        self.container = None

    def _error(self, exc: BaseException) -> DataError:
        if isinstance(exc, FileNotFoundError):
            return DataError(f"video file '{self.path}' does not exist")
        return DataError(f"video file '{self.path}' cannot be decoded as a video ({_reason(exc)})")

    def __enter__(self) -> "_Video":
        try:
            self.container = self.av.open(self.path, mode="r")
        except (self.av.FFmpegError, OSError, ValueError) as exc:
            raise self._error(exc) from None
        if not self.container.streams.video:
            self.container.close()
            raise DataError(f"video file '{self.path}' holds no video stream")
        self.stream = self.container.streams.video[0]
        return self

    def __exit__(self, *exc) -> None:
        self.container.close()

    def frames(self):
        """The decoded frames in decoding-output order (frame positions 0, 1, ...)."""
        try:
            yield from self.container.decode(self.stream)
        except (self.av.FFmpegError, OSError, ValueError, RuntimeError) as exc:
            raise self._error(exc) from None


def video_index(path: str) -> tuple[int, np.ndarray]:
    """(the number of frames the decoder gives for ``path``, its key frames): frames decoded, never counted from
    the container's header (module docstring); the key frames an int64 (K, 2) array of (position, timestamp) of
    every key frame after the first frame that has a timestamp, empty where the timestamps do not rise with the
    positions (then every read decodes from the first frame)."""
    n, keys = 0, []
    with _Video(path) as v:
        for frame in v.frames():
            if n and frame.key_frame and frame.pts is not None:
                keys.append((n, int(frame.pts)))
            n += 1
    table = np.asarray(keys, dtype=np.int64).reshape(-1, 2)
    if len(table) > 1 and not bool(np.all(np.diff(table[:, 1]) > 0)):
        table = table[:0]
    return n, table


INDEX_VERSION = 1  # of the cached index files' contents


def _index_file(path: str, cache_dir: str) -> Optional[str]:
    """The cache file of ``path``'s index (``cached_index``), or None when ``path`` cannot be stat'ed."""
    import hashlib

    try:
        st = os.stat(path)
    except OSError:
        return None
    key = f"{INDEX_VERSION}|{_av().__version__}|{os.path.realpath(path)}|{st.st_size}|{st.st_mtime_ns}"
    return os.path.join(cache_dir, "video-index", hashlib.sha256(key.encode()).hexdigest()[:24] + ".npy")


def _read_index(file: str) -> Optional[tuple[int, np.ndarray]]:
    """The index kept in ``file`` (an int64 (K + 1, 2) array: the count and a 0, then the key frames), or None
    when there is none or it is not one of ours (never unpickled)."""
    try:
        arr = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if arr.dtype != np.int64 or arr.ndim != 2 or arr.shape[1] != 2 or len(arr) < 1 or arr[0, 0] < 0 or arr[0, 1]:
        return None
    return int(arr[0, 0]), np.ascontiguousarray(arr[1:])


def cached_index(path: str, cache_dir: Optional[str], failed: Optional[list] = None) -> tuple[int, np.ndarray]:
    """``video_index(path)``, kept in ``cache_dir/video-index/`` (module docstring; None: not kept). A cache file
    is written atomically; one that cannot be written is skipped and its reason appended to ``failed``."""
    file = _index_file(path, cache_dir) if cache_dir else None
    if file is not None:
        hit = _read_index(file)
        if hit is not None:
            return hit
    count, keys = video_index(path)
    if file is not None:
        tmp = f"{file}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(file), exist_ok=True)
            with open(tmp, "wb") as f:
                np.save(f, np.concatenate([np.array([[count, 0]], dtype=np.int64), keys]), allow_pickle=False)
            os.replace(tmp, file)
        except OSError as exc:
            if failed is not None:
                failed.append(f"{os.path.dirname(file)}: {exc.strerror or exc}")
            try:
                os.remove(tmp)
            except OSError:
                pass
    return count, keys


def video_frame_count(path: str) -> int:
    """The number of frames the decoder gives for ``path`` (``video_index``)."""
    return video_index(path)[0]


def video_frame_size(path: str) -> tuple[int, int]:
    """(H, W) of the first decoded frame of ``path``."""
    with _Video(path) as v:
        for frame in v.frames():
            return int(frame.height), int(frame.width)
    raise DataError(f"video file '{path}' holds no decodable frame")


def video_channels(path: str) -> int:
    """1 when the video stream's pixel format is grey (``gray``, ``gray10le``, ...), else 3; no frame is decoded."""
    with _Video(path) as v:
        fmt = v.stream.codec_context.pix_fmt or ""
    return 1 if str(fmt).startswith(("gray", "ya")) else 3


class _Disagrees(Exception):
    """The decoder, after a seek, does not give the frames the key-frame record says (``_from_key_frame``)."""


def _from_key_frame(v: "_Video", keys: np.ndarray, first: int):
    """(position, frame) pairs of ``v``'s frames from the last key frame of ``keys`` (``video_index``) at or before
    position ``first`` on; ``_Disagrees`` where the decoder does not give the recorded frames."""
    j = int(np.searchsorted(keys[:, 0], first, side="right")) - 1
    pos, pts = int(keys[j, 0]), int(keys[j, 1])
    at = {int(t): int(p) for p, t in keys[j:]}  # the later key frames' positions, by timestamp
    try:
        v.container.seek(pts, stream=v.stream, backward=True, any_frame=False)
    except (v.av.FFmpegError, OSError, ValueError) as exc:
        raise _Disagrees from exc
    n = None  # the position of the frame in hand, once the key frame came
    for frame in v.frames():
        if n is None:
            if frame.pts is None or frame.pts < pts:
                continue  # what a decoder gives before the key frame after a seek (an open GOP's leading frames)
            if frame.pts != pts:
                raise _Disagrees
            n = pos
        elif frame.key_frame and frame.pts is not None and at.get(int(frame.pts), n) != n:
            raise _Disagrees
        yield n, frame
        n += 1


def _collect(positioned, wanted: np.ndarray, fmt: str) -> tuple[list, int]:
    """The ``wanted`` frames (sorted, distinct positions) of the (position, frame) pairs ``positioned`` as arrays
    in ``fmt``, stopping after the last of them; and the number of positions passed (the last one + 1)."""
    got, n = [], 0
    for at, frame in positioned:
        n = at + 1
        if at == wanted[len(got)]:
            # one scaling thread: a thread pool that PyAV (18.1.1) keeps would be missing in a forked DataLoader
            # worker, whose first conversion then waits for it forever; the workers are the parallelism
            px = frame.to_ndarray(format=fmt, threads=1)
            got.append(px[..., None] if px.ndim == 2 else px)
            if len(got) == len(wanted):
                break
    return got, n


def read_video_frames(path: str, indices: Sequence[int], channels: int, size: Optional[tuple[int, int]] = None,
                      keys: Optional[np.ndarray] = None) -> torch.Tensor:
    """The frames at 0-based positions ``indices`` of the video at ``path`` (in any order, repeats allowed, as a
    loop-padded clip's ``0 2 4 0 2 4``: each distinct frame is decoded once, in one pass), as a uint8
    (T, H, W, C) tensor, channel-last as ``ClipData`` stacks frames: RGB for ``channels`` 3, luma for 1;
    resized (antialiased, bilinear, as ``files.decode_image``) to ``size`` (H, W) when given and different.
    ``keys``: the file's key frames from ``video_index``; the read then starts at the last one at or before the
    first wanted frame (module docstring), else at the first frame. A DataError naming the file when it cannot
    be decoded or ends before the last wanted frame."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size == 0:
        raise ValueError("no frame index given")
    if idx.min() < 0:
        raise ValueError(f"frame indices must be non-negative, got {idx.tolist()}")
    wanted = np.unique(idx)  # sorted, distinct
    fmt = "gray" if channels == 1 else "rgb24"
    if keys is not None and len(keys) and int(keys[0, 0]) <= int(wanted[0]):
        try:
            with _Video(path) as v:
                got, _ = _collect(_from_key_frame(v, keys, int(wanted[0])), wanted, fmt)
            if len(got) == len(wanted):  # else the file ended first: the read from the start says how
                return _stacked(got, wanted, idx, size)
        except _Disagrees:
            pass
    with _Video(path) as v:
        got, n = _collect(enumerate(v.frames()), wanted, fmt)
    if len(got) < len(wanted):
        raise DataError(f"video file '{path}' has {n} frames, but frame {int(wanted[len(got)])} (0-based) was asked "
                        "for")
    return _stacked(got, wanted, idx, size)


def _stacked(got: list, wanted: np.ndarray, idx: np.ndarray, size: Optional[tuple[int, int]]) -> torch.Tensor:
    """The decoded ``wanted`` frames ``got`` as the (T, H, W, C) frames at ``idx``, resized to ``size``."""
    frames = torch.from_numpy(np.stack(got))  # (distinct T, H, W, C)
    if len(wanted) != len(idx):
        frames = frames[torch.from_numpy(np.searchsorted(wanted, idx))]
    if size is not None and tuple(frames.shape[1:3]) != tuple(size):
        from .files import _vision

        tvf = _vision()[1]
        frames = tvf.resize(frames.permute(0, 3, 1, 2), list(size), antialias=True).permute(0, 2, 3, 1)
    return frames.contiguous()
