"""The action-recognition datasets of the MMH paper, read from folders of pre-extracted frames.

``mmhal run --data <name> --root DIR`` gives a :class:`mmhal.data.frames.ClipData` (only folder names, frame
patterns and frame counts are held; frames are decoded when a clip is read). Frames are ordered and the
modalities of a sample paired by the frame number in the file name (never by listing order or position), and
every sample's modalities are checked to have the same frames when the data are loaded (optical flow: the same
or one fewer); a mismatch is one sentence naming the sample. Frames are decoded at ``data.image_size`` (default:
the size of the first sample's first RGB frame), clips sampled as ``data.clip`` says. Which modality is optical
flow comes from ``data.clip.flow_modalities`` (default ``["flow"]``, the name these loaders give it).

Validation (``val``) is never part of a protocol's test side: it is carved from the protocol's train side by
mmhal's seeded, stratified split that keeps groups whole (``data.val_fraction`` of train, ``data.split_seed``;
``mmhal.data.split.make_split``); the group of each dataset is named below and in ``info["split"]``.

``nw-ucla`` (Northwestern-UCLA Multiview Action 3D; RGB + depth)::

    <root>[/multiview_action]/view_{1,2,3}/a<AA>_s<SS>_e<EE>/frame_<n>_tc_<timestamp>_{rgb.jpg,depth.png}

  Frame ``n`` is unpadded and the RGB and depth timestamps of one ``n`` differ, so frames are numbered and
  paired by ``n`` alone (``_tc_<timestamp>`` may be absent); ``*_depth_vis.jpg``, ``*_maprgbd.png`` and
  ``skeletons.txt`` are not read, nor folders not named ``a??_s??_e??``. The action codes have gaps: a01, a02,
  a03, a04, a05, a06, a08, a09, a11, a12 are labels 0-9 (:data:`UCLA_ACTIONS`); another code is an error.
  ``data.protocol``: ``cross-view`` (= ``auto``: train views 1 and 2, test view 3) or ``cross-view-<k>`` (test
  view k, train the other two; not the standard protocol for k != 3). Groups (validation): the subject
  ``s<SS>`` (every subject is in every view, so the test view holds the train subjects: that is the
  protocol). Modalities ``rgb`` (3 channels) and ``depth`` (1 channel, the 16-bit ``_depth.png``): neither
  DOMAINS nor the paper states a depth range for NW-UCLA (its bit depth is unverified), so depth is clipped
  to ``data.depth_range`` and scaled to 0..255 when that is set, and otherwise kept as its raw values.

``ntu60`` (NTU RGB+D 60; RGB + masked depth)::

    <root>/rgb/<name>/img_00001.jpg ...                    (mmaction2 rawframes, 1-based; also <root>/rawframes/)
    <root>/depth/<name>/MDepth-00000001.png ...            (person-masked 16-bit millimetres, 1-based; also
                                                            <root>/nturgb+d_depth_masked/<name>/)

  ``<name>`` is ``SsssCcccPpppRrrrAaaa`` (an RGB folder may end in ``_rgb``); RGB and depth folders are paired
  by that name, and a sample with only one of them is an error. Label = action - 1 (A001 -> 0; class names
  :data:`NTU_ACTIONS`). Samples of NTU RGB+D 120 (setups S018+, actions A061+) are skipped, with a warning.
  ``data.protocol``: ``cross-subject`` (= ``auto``; train performers :data:`NTU_CS_TRAIN`, test the other 20)
  or ``cross-view`` (train cameras 2 and 3, test camera 1). Groups (validation): the performer ``P<ppp>``.
  Depth is clipped to ``data.depth_range`` or, when that is not set, to 500-4500 mm (:data:`NTU_DEPTH_RANGE`:
  our chosen clipping, a common choice that DOMAINS marks unverified), then scaled to 0..255.

``ucf101`` (RGB + optical flow)::

    <root>/ucfTrainTestlist/{classInd.txt,trainlist0<k>.txt,testlist0<k>.txt}
    <root>/rawframes/<Class>/<video>/{img,flow_x,flow_y}_00001.jpg ...   (mmaction2 / denseflow)

  ``data.protocol``: ``split-1`` (= ``auto``), ``split-2`` or ``split-3``. ``classInd.txt`` is 1-based
  (``1 ApplyEyeMakeup`` -> label 0); the class of a video is always its list path's folder looked up in
  ``classInd`` (the test lists have no label; the folder ``HandstandPushups`` holds ``v_HandStandPushups_*``,
  so the file name is never used), and a train line's label must agree with its folder. Groups (validation):
  the UCF group ``gXX`` of the video name, over all classes (as the official splits hold out whole groups).

``hmdb51`` (RGB + optical flow)::

    <root>/testTrainMulti_7030_splits/<class>_test_split{1,2,3}.txt   (lines "<video>.avi <id>")
    <root>/rawframes/<class>/<video>/{img,flow_x,flow_y}_00001.jpg ...

  ``data.protocol``: ``split-1`` (= ``auto``), ``split-2`` or ``split-3``; id 1 = train, 2 = test, 0 = not
  used (its frames are not needed). Lines are parsed by whitespace (video names hold ``( ) ! &``). Classes are
  the class names of the split's files sorted alphabetically -> labels 0..K-1 (51 for the full data). Groups
  (validation): the source video of a clip, its name less the HMDB tags (``_<class>_<body>_<camera>_np<k>_
  <view>_<quality>_<clip index>``), so clips cut from one movie or YouTube video stay together, over all
  classes; a name without the tags loses only a trailing ``_<number>``.

For ``ucf101`` and ``hmdb51`` the modalities are ``rgb`` (``img_*``, 3 channels) and ``flow`` (two grey sources,
``flow_x_*`` then ``flow_y_*``, from the same folder); flow may have one frame fewer than RGB (flow frame t is
the motion t -> t+1). ``info`` records the protocol, the split sizes, the frame counts (min, median, max) and how
the split was made.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..config import DataConfig
from ..errors import DataError
from .base import SPLITS, register_dataset
from .frames import ClipData, FrameSource, build_clip_data, prefix_pattern
from .split import make_split

RGB_PATTERN = prefix_pattern("img_")
FLOW_X_PATTERN = prefix_pattern("flow_x_")
FLOW_Y_PATTERN = prefix_pattern("flow_y_")

# ----------------------------------------------------------------------------- NW-UCLA
#: action code -> class name, in label order (codes a07 and a10 do not exist)
UCLA_ACTIONS = {1: "pick up with one hand", 2: "pick up with two hands", 3: "drop trash", 4: "walk around",
                5: "sit down", 6: "stand up", 8: "donning", 9: "doffing", 11: "throw", 12: "carry"}
UCLA_LABEL = {code: k for k, code in enumerate(UCLA_ACTIONS)}
UCLA_RGB_PATTERN = r"frame_(\d+)(?:_tc_\d+)?_rgb"
UCLA_DEPTH_PATTERN = r"frame_(\d+)(?:_tc_\d+)?_depth"  # "_depth_vis" does not match (patterns match whole names)
UCLA_VIEWS = (1, 2, 3)
UCLA_PROTOCOLS = ("cross-view",) + tuple(f"cross-view-{v}" for v in UCLA_VIEWS)
_UCLA_SAMPLE = re.compile(r"^a(\d{2})_s(\d{2})_e(\d{2})$")

# ----------------------------------------------------------------------------- NTU RGB+D 60
NTU_ACTIONS = [
    "drink water", "eat meal/snack", "brushing teeth", "brushing hair", "drop", "pickup", "throw", "sitting down",
    "standing up (from sitting position)", "clapping", "reading", "writing", "tear up paper", "wear jacket",
    "take off jacket", "wear a shoe", "take off a shoe", "wear on glasses", "take off glasses", "put on a hat/cap",
    "take off a hat/cap", "cheer up", "hand waving", "kicking something", "reach into pocket",
    "hopping (one foot jumping)", "jump up", "make a phone call/answer phone", "playing with phone/tablet",
    "typing on a keyboard", "pointing to something with finger", "taking a selfie", "check time (from watch)",
    "rub two hands together", "nod head/bow", "shake head", "wipe face", "salute", "put the palms together",
    "cross hands in front (say stop)", "sneeze/cough", "staggering", "falling", "touch head (headache)",
    "touch chest (stomachache/heart pain)", "touch back (backache)", "touch neck (neckache)",
    "nausea or vomiting condition", "use a fan (with hand or paper)/feeling warm", "punching/slapping other person",
    "kicking other person", "pushing other person", "pat on back of other person", "point finger at the other person",
    "hugging other person", "giving something to other person", "touch other person's pocket", "handshaking",
    "walking towards each other", "walking apart from each other",
]
NTU_CS_TRAIN = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU_CV_TRAIN = (2, 3)
NTU_CV_TEST = (1,)
NTU_PROTOCOLS = ("cross-subject", "cross-view")
NTU_RGB_DIRS = ("rgb", "rawframes")
NTU_DEPTH_DIRS = ("depth", "nturgb+d_depth_masked")
NTU_DEPTH_PATTERN = r"M?Depth-(\d+)"
#: the depth clipping (mm) used when data.depth_range is not set: our choice; DOMAINS marks it unverified
NTU_DEPTH_RANGE = (500.0, 4500.0)
NTU60_SETUPS = 17
_NTU_NAME = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})(?:_rgb)?$")

# ----------------------------------------------------------------------------- UCF101 and HMDB51
SPLIT_PROTOCOLS = ("split-1", "split-2", "split-3")
UCF_LISTS = "ucfTrainTestlist"
UCF_CLASSES = "classInd.txt"
_UCF_GROUP = re.compile(r"_(g\d+)_c\d+$")
HMDB_SPLITS = "testTrainMulti_7030_splits"
_HMDB_FILE = re.compile(r"^(.+)_test_split([123])\.txt$")
_HMDB_TAGS = re.compile(r"_[fhul]_(?:cm|nm)_np\d+_(?:fr|ba|le|ri)_(?:bad|med|goo)_\d+$")
HMDB_IDS = {"0": None, "1": "train", "2": "test"}
FRAMES = "rawframes"


# ----------------------------------------------------------------------------- shared
def _root(cfg: DataConfig, path: Optional[str], name: str, title: str) -> Path:
    folder = path if path is not None else cfg.path
    if not folder:
        raise DataError(f"{name} needs the dataset's folder: pass --root DIR (or set data.path)")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DataError(f"the {title} folder '{root}' does not exist")
    return root


def _protocol(cfg: DataConfig, name: str, choices: tuple[str, ...]) -> str:
    """``data.protocol`` resolved (``auto`` = the first choice); anything else is a one-sentence DataError."""
    p = choices[0] if cfg.protocol == "auto" else cfg.protocol
    if p not in choices:
        raise DataError(f"data.protocol for {name} must be auto (= {choices[0]}) or one of {', '.join(choices)}, "
                        f"got '{cfg.protocol}'")
    return p


def _check_flow(cfg: DataConfig, name: str) -> None:
    if "flow" not in set(cfg.clip.flow_modalities):
        raise DataError(f"{name}'s 'flow' modality is optical flow (x and y frames), but data.clip.flow_modalities "
                        f"({list(cfg.clip.flow_modalities)}) does not name it; add 'flow' to it")


def _flow_sources(folders: np.ndarray) -> dict[str, list[FrameSource]]:
    """``rgb`` and ``flow`` of mmaction2's rawframes: img_*, flow_x_* and flow_y_* side by side in one folder."""
    return {"rgb": [FrameSource(folders, RGB_PATTERN, 3)],
            "flow": [FrameSource(folders, FLOW_X_PATTERN, 1), FrameSource(folders, FLOW_Y_PATTERN, 1)]}


def _carve_val(cfg: DataConfig, labels: np.ndarray, groups: np.ndarray, split: np.ndarray, kind: str,
               info: dict[str, Any], protocol: str) -> None:
    """Move a seeded, stratified share of the train samples to ``val``, every ``kind`` (the group) whole."""
    train = np.flatnonzero(split == "train")
    if len(train) == 0:
        raise DataError(f"no sample falls on the train side of protocol {protocol}")
    sub = make_split(labels[train], groups[train], cfg.val_fraction, 0.0, cfg.split_seed)
    split[train[sub == "val"]] = "val"
    if not (split == "val").any():
        n = len(np.unique(groups[train]))
        raise DataError(f"the train side of protocol {protocol} holds {n} distinct {kind} value(s) and "
                        f"data.val_fraction is {cfg.val_fraction}, so none could be held out whole for validation")
    info["split"] = (f"protocol {protocol}; val = a seeded, stratified share of its train side that keeps every "
                     f"{kind} whole (val_fraction={cfg.val_fraction} of train, seed={cfg.split_seed}); test as the "
                     "protocol says")
    info["val_groups"] = sorted(map(str, np.unique(groups[split == "val"]).tolist()))
    info.update(split_seed=cfg.split_seed, val_fraction=cfg.val_fraction)


def _assemble(cfg: DataConfig, name: str, root: Path, sources: dict[str, list[FrameSource]], labels: np.ndarray,
              split: np.ndarray, class_names: list[str], groups: np.ndarray, info: dict[str, Any],
              value_range: dict[str, tuple[float, float]], where: Callable[[int], str],
              progress: Optional[bool]) -> ClipData:
    """The ClipData of the listed samples, after counting (and pairing) every sample's frames."""
    sizes = {s: int((split == s).sum()) for s in SPLITS}
    info["counts"] = sizes
    info["split_sizes"] = ", ".join(f"{s} {sizes[s]}" for s in SPLITS)
    if not sizes["test"]:
        info.setdefault("warnings", []).append(
            f"no {name} sample falls on the test side of protocol {info.get('protocol')}, so there are no test figures")
        info["test"] = "no sample on the protocol's test side, so there are no test figures"
    info.setdefault("warnings", [])
    return build_clip_data(cfg, name, str(root), sources, labels, split, class_names, where, progress,
                           value_range=value_range, info=info, groups=groups)


def _read_lines(path: Path, what: str) -> list[tuple[int, list[str]]]:
    """(line number, whitespace-split fields) of the non-blank lines of a list file."""
    if not path.is_file():
        raise DataError(f"{what} '{path}' does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    return [(k, line.split()) for k, line in enumerate(text.splitlines(), start=1) if line.strip()]


def _check_frame_folders(root: Path, folders: list[str], where: Callable[[int], str]) -> None:
    for i, rel in enumerate(folders):
        if not os.path.isdir(os.path.join(root, rel)):
            raise DataError(f"{where(i)} has no frame folder: '{os.path.join(root, rel)}' does not exist")


# ----------------------------------------------------------------------------- NW-UCLA
def _ucla_base(root: Path) -> Path:
    for base in (root / "multiview_action", root):
        if any((base / f"view_{v}").is_dir() for v in UCLA_VIEWS):
            return base
    raise DataError(f"'{root}' holds no view_1, view_2 or view_3 folder (nor multiview_action/view_*); the NW-UCLA "
                    "layout is <root>/multiview_action/view_<k>/a<AA>_s<SS>_e<EE>/frame_<n>_tc_<time>_rgb.jpg")


@register_dataset("nw-ucla")
def load_nw_ucla(cfg: DataConfig, path: Optional[str] = None, progress: Optional[bool] = None) -> ClipData:
    """NW-UCLA's RGB and depth frames under ``path`` (default ``cfg.path``, the CLI's ``--root``); see the module
    docstring."""
    root = _root(cfg, path, "nw-ucla", "NW-UCLA")
    protocol = _protocol(cfg, "nw-ucla", UCLA_PROTOCOLS)
    test_view = 3 if protocol == "cross-view" else int(protocol.rsplit("-", 1)[1])
    base = _ucla_base(root)
    folders: list[str] = []
    labels: list[int] = []
    split: list[str] = []
    groups: list[str] = []
    skipped = 0
    for v in UCLA_VIEWS:
        vdir = base / f"view_{v}"
        if not vdir.is_dir():
            raise DataError(f"protocol {protocol} needs the NW-UCLA view folder '{vdir}', which does not exist")
        for entry in sorted(os.listdir(vdir)):
            m = _UCLA_SAMPLE.match(entry)
            if m is None or not (vdir / entry).is_dir():
                skipped += 1
                continue
            action, subject = int(m.group(1)), m.group(2)
            if action not in UCLA_LABEL:
                raise DataError(f"NW-UCLA folder '{vdir / entry}' names action a{m.group(1)}, which is not one of the "
                                "ten (a01-a06, a08, a09, a11, a12)")
            folders.append(f"view_{v}/{entry}")
            labels.append(UCLA_LABEL[action])
            split.append("test" if v == test_view else "train")
            groups.append(f"s{subject}")
    if not folders:
        raise DataError(f"no NW-UCLA sample folder (a<AA>_s<SS>_e<EE>) under the view folders of '{base}'")
    arr = np.asarray(folders, dtype=str)
    sources = {"rgb": [FrameSource(arr, UCLA_RGB_PATTERN, 3)], "depth": [FrameSource(arr, UCLA_DEPTH_PATTERN, 1)]}
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(split, dtype="<U5")
    g = np.asarray(groups, dtype=str)
    train_views = [v for v in UCLA_VIEWS if v != test_view]
    info: dict[str, Any] = {
        "source": str(base), "format": "nw-ucla", "protocol": protocol,
        "views": {"train": train_views, "test": [test_view]},
        "labels": "action codes a01-a06, a08, a09, a11, a12 -> 0-9",
        "depth": (f"16-bit depth clipped to {list(cfg.depth_range)} and scaled to 0..255 (data.depth_range)"
                  if cfg.depth_range else "raw depth values (set data.depth_range to clip and scale them)"),
        "skipped_entries": skipped,
    }
    _carve_val(cfg, y, g, s, "subject", info, protocol)
    value_range = {"depth": (float(cfg.depth_range[0]), float(cfg.depth_range[1]))} if cfg.depth_range else {}
    return _assemble(cfg, "nw-ucla", base, sources, y, s, list(UCLA_ACTIONS.values()), g, info, value_range,
                     lambda i: f"NW-UCLA sample '{folders[i]}'", progress)


# ----------------------------------------------------------------------------- NTU RGB+D 60
def _ntu_folders(base: Path, kind: str) -> dict[str, str]:
    """20-character sample name -> folder name of the sample folders under ``base``."""
    out: dict[str, str] = {}
    for entry in os.listdir(base):
        m = _NTU_NAME.match(entry)
        if m is None or not (base / entry).is_dir():
            continue
        key = entry[:20]
        if key in out:
            raise DataError(f"NTU sample '{key}' has two {kind} folders under '{base}': '{out[key]}' and '{entry}'")
        out[key] = entry
    return out


def _first_dir(root: Path, names: tuple[str, ...], kind: str) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise DataError(f"the NTU RGB+D folder '{root}' has no {kind} frame folder ("
                    + " or ".join(f"'{root / n}'" for n in names) + ")")


@register_dataset("ntu60")
def load_ntu60(cfg: DataConfig, path: Optional[str] = None, progress: Optional[bool] = None) -> ClipData:
    """NTU RGB+D 60's RGB and masked-depth frames under ``path`` (default ``cfg.path``); see the module docstring."""
    root = _root(cfg, path, "ntu60", "NTU RGB+D")
    protocol = _protocol(cfg, "ntu60", NTU_PROTOCOLS)
    rgb_dir = _first_dir(root, NTU_RGB_DIRS, "RGB")
    depth_dir = _first_dir(root, NTU_DEPTH_DIRS, "depth")
    rgb = _ntu_folders(rgb_dir, "RGB")
    depth = _ntu_folders(depth_dir, "depth")
    for key in sorted(set(rgb) ^ set(depth)):
        found, missing = (rgb_dir / rgb[key], depth_dir / key) if key in rgb else (depth_dir / depth[key], rgb_dir / key)
        raise DataError(f"NTU sample '{key}' has the frame folder '{found}' but no '{missing}' to pair it with")
    names: list[str] = []
    rows: list[tuple[int, int, int]] = []  # (camera, performer, action)
    skipped = 0
    for key in sorted(rgb):
        setup, camera, performer, _, action = (int(x) for x in _NTU_NAME.match(key).groups())
        if setup > NTU60_SETUPS or action > len(NTU_ACTIONS):
            skipped += 1
            continue
        if action < 1:
            raise DataError(f"NTU sample '{key}' names action A000; actions are A001-A060")
        if protocol == "cross-view" and camera not in NTU_CV_TRAIN + NTU_CV_TEST:
            raise DataError(f"NTU sample '{key}' names camera C{camera:03d}; NTU RGB+D 60 has cameras C001-C003")
        names.append(key)
        rows.append((camera, performer, action))
    if not names:
        raise DataError(f"no NTU RGB+D 60 sample folder (SsssCcccPpppRrrrAaaa) under '{rgb_dir}'"
                        + (f" ({skipped} NTU RGB+D 120 samples skipped)" if skipped else ""))
    table = np.asarray(rows, dtype=np.int64)
    y = table[:, 2] - 1
    if protocol == "cross-subject":
        on_train = np.isin(table[:, 1], NTU_CS_TRAIN)
    else:
        on_train = np.isin(table[:, 0], NTU_CV_TRAIN)
    s = np.where(on_train, "train", "test").astype("<U5")
    g = np.asarray([f"P{p:03d}" for p in table[:, 1]], dtype=str)
    rgb_rel = np.asarray([f"{rgb_dir.name}/{rgb[k]}" for k in names], dtype=str)
    depth_rel = np.asarray([f"{depth_dir.name}/{depth[k]}" for k in names], dtype=str)
    sources = {"rgb": [FrameSource(rgb_rel, RGB_PATTERN, 3)], "depth": [FrameSource(depth_rel, NTU_DEPTH_PATTERN, 1)]}
    lo_hi = (float(cfg.depth_range[0]), float(cfg.depth_range[1])) if cfg.depth_range else NTU_DEPTH_RANGE
    info: dict[str, Any] = {
        "source": str(root), "format": "ntu60", "protocol": protocol,
        "labels": "action A<aaa> -> aaa - 1",
        "train_side": (f"performers {list(NTU_CS_TRAIN)}" if protocol == "cross-subject"
                       else f"cameras {list(NTU_CV_TRAIN)} (test camera {NTU_CV_TEST[0]})"),
        "depth": (f"16-bit millimetres clipped to {list(lo_hi)} and scaled to 0..255"
                  + (" (data.depth_range)" if cfg.depth_range else " (the loader's default; unverified choice)")),
        "warnings": [],
    }
    if skipped:
        info["warnings"].append(f"skipped {skipped} NTU RGB+D 120 samples (setups S018+ or actions A061+): ntu60 reads "
                                "NTU RGB+D 60 only")
    _carve_val(cfg, y, g, s, "performer", info, protocol)
    return _assemble(cfg, "ntu60", root, sources, y, s, list(NTU_ACTIONS), g, info, {"depth": lo_hi},
                     lambda i: f"NTU sample '{names[i]}'", progress)


# ----------------------------------------------------------------------------- UCF101
def _ucf_classes(path: Path) -> list[str]:
    index: dict[int, str] = {}
    for line, fields in _read_lines(path, "the UCF101 class list"):
        if len(fields) != 2 or not fields[0].isdigit():
            raise DataError(f"line {line} of '{path}' is not '<index> <class name>' (e.g. '1 ApplyEyeMakeup')")
        k = int(fields[0])
        if k in index:
            raise DataError(f"line {line} of '{path}' gives the class index {k} a second time")
        index[k] = fields[1]
    if not index:
        raise DataError(f"the UCF101 class list '{path}' names no class")
    if sorted(index) != list(range(1, len(index) + 1)):
        raise DataError(f"the class indices of '{path}' are not 1..{len(index)} (classInd.txt is 1-based)")
    names = [index[k] for k in range(1, len(index) + 1)]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"the UCF101 class list '{path}' names the class '{dup}' twice")
    return names


@register_dataset("ucf101")
def load_ucf101(cfg: DataConfig, path: Optional[str] = None, progress: Optional[bool] = None) -> ClipData:
    """UCF101's RGB and optical-flow frames under ``path`` (default ``cfg.path``); see the module docstring."""
    root = _root(cfg, path, "ucf101", "UCF101")
    protocol = _protocol(cfg, "ucf101", SPLIT_PROTOCOLS)
    _check_flow(cfg, "ucf101")
    k = int(protocol[-1])
    lists = root / UCF_LISTS
    if not lists.is_dir():
        raise DataError(f"the UCF101 list folder '{lists}' does not exist (the official ucfTrainTestlist/)")
    if not (root / FRAMES).is_dir():
        raise DataError(f"the UCF101 frame folder '{root / FRAMES}' does not exist (rawframes/<Class>/<video>/)")
    class_names = _ucf_classes(lists / UCF_CLASSES)
    label_of = {c: i for i, c in enumerate(class_names)}
    videos: list[str] = []
    labels: list[int] = []
    split: list[str] = []
    groups: list[str] = []
    seen: dict[str, str] = {}
    for side, fname in (("train", f"trainlist0{k}.txt"), ("test", f"testlist0{k}.txt")):
        file = lists / fname
        for line, fields in _read_lines(file, f"the UCF101 {side} list"):
            here = f"line {line} of '{file}'"
            if len(fields) not in (1, 2):
                raise DataError(f"{here} is not '<Class>/<video>.avi[ <label>]'")
            parts = fields[0].replace("\\", "/").split("/")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise DataError(f"{here} names '{fields[0]}', not '<Class>/<video>.avi'")
            cls, video = parts[0], os.path.splitext(parts[1])[0]
            if cls not in label_of:
                raise DataError(f"{here} names the class folder '{cls}', which '{UCF_CLASSES}' does not list")
            if len(fields) == 2 and fields[1] != str(label_of[cls] + 1):
                raise DataError(f"{here} gives '{fields[0]}' the label {fields[1]}, but its folder '{cls}' is class "
                                f"{label_of[cls] + 1} in '{UCF_CLASSES}'")
            rel = f"{FRAMES}/{cls}/{video}"
            if rel in seen:
                raise DataError(f"{here} lists '{fields[0]}' again (already in the {seen[rel]} list of split {k})")
            seen[rel] = side
            g = _UCF_GROUP.search(video)
            videos.append(rel)
            labels.append(label_of[cls])
            split.append(side)
            groups.append(g.group(1) if g else video)
    if not videos:
        raise DataError(f"the UCF101 lists of split {k} under '{lists}' name no video")
    info: dict[str, Any] = {"labels": "class folder -> its classInd.txt index - 1"}
    return _flow_dataset(cfg, "ucf101", "UCF101", root, videos, labels, split, groups, class_names, info,
                         "UCF video group gXX (over all classes)", protocol, progress)


# ----------------------------------------------------------------------------- HMDB51
def hmdb_source(video: str, cls: str) -> str:
    """The source video of an HMDB51 clip (its validation group): the name less the HMDB tags and the class
    (``Movie_brush_hair_u_nm_np1_ba_goo_2`` -> ``Movie``), or less a trailing ``_<number>`` when the name lacks
    the tags."""
    m = _HMDB_TAGS.search(video)
    if m is None:
        return re.sub(r"_\d+$", "", video) or video
    src = video[: m.start()]
    if src.endswith("_" + cls):
        src = src[: -len(cls) - 1]
    return src or video


@register_dataset("hmdb51")
def load_hmdb51(cfg: DataConfig, path: Optional[str] = None, progress: Optional[bool] = None) -> ClipData:
    """HMDB51's RGB and optical-flow frames under ``path`` (default ``cfg.path``); see the module docstring."""
    root = _root(cfg, path, "hmdb51", "HMDB51")
    protocol = _protocol(cfg, "hmdb51", SPLIT_PROTOCOLS)
    _check_flow(cfg, "hmdb51")
    k = protocol[-1]
    lists = root / HMDB_SPLITS
    if not lists.is_dir():
        raise DataError(f"the HMDB51 split folder '{lists}' does not exist (the official testTrainMulti_7030_splits/)")
    if not (root / FRAMES).is_dir():
        raise DataError(f"the HMDB51 frame folder '{root / FRAMES}' does not exist (rawframes/<class>/<video>/)")
    files: dict[str, Path] = {}
    for entry in os.listdir(lists):
        m = _HMDB_FILE.match(entry)
        if m and m.group(2) == k:
            files[m.group(1)] = lists / entry
    if not files:
        raise DataError(f"the HMDB51 split folder '{lists}' has no '<class>_test_split{k}.txt' file")
    class_names = sorted(files)
    videos: list[str] = []
    labels: list[int] = []
    split: list[str] = []
    groups: list[str] = []
    unused = 0
    for label, cls in enumerate(class_names):
        file = files[cls]
        for line, fields in _read_lines(file, "the HMDB51 split file"):
            here = f"line {line} of '{file}'"
            if len(fields) != 2 or fields[1] not in HMDB_IDS:
                raise DataError(f"{here} is not '<video>.avi <id>' with id 0 (unused), 1 (train) or 2 (test)")
            side = HMDB_IDS[fields[1]]
            if side is None:
                unused += 1
                continue
            video = os.path.splitext(fields[0])[0]
            videos.append(f"{FRAMES}/{cls}/{video}")
            labels.append(label)
            split.append(side)
            groups.append(hmdb_source(video, cls))
    if not videos:
        raise DataError(f"the HMDB51 split files of split {k} under '{lists}' mark no video as train or test")
    if len(set(videos)) != len(videos):
        dup = next(v for v in videos if videos.count(v) > 1)
        raise DataError(f"HMDB51 video '{dup[len(FRAMES) + 1:]}' is listed twice in the split files of split {k}")
    info: dict[str, Any] = {"labels": f"the {len(class_names)} class names of the split files, sorted "
                                      f"alphabetically -> 0..{len(class_names) - 1}", "unused_videos": unused}
    return _flow_dataset(cfg, "hmdb51", "HMDB51", root, videos, labels, split, groups, class_names, info,
                         "source video", protocol, progress)


def _flow_dataset(cfg: DataConfig, name: str, title: str, root, videos: list, labels: list, split: list,
                  groups: list, class_names: list, info: dict, group_desc: str, protocol: str,
                  progress: Optional[bool]) -> ClipData:
    """The RGB + flow ClipData of ``videos`` (``rawframes/<class>/<video>`` paths) once their lists are read:
    frame folders checked, validation carved from train by ``group_desc`` groups, frame counts checked."""
    where = lambda i: f"{title} video '{videos[i][len(FRAMES) + 1:]}'"  # noqa: E731
    _check_frame_folders(root, videos, where)
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(split, dtype="<U5")
    gr = np.asarray(groups, dtype=str)
    info = {"source": str(root), "format": name, "protocol": protocol, **info, "warnings": []}
    _carve_val(cfg, y, gr, s, group_desc, info, protocol)
    return _assemble(cfg, name, root, _flow_sources(np.asarray(videos, dtype=str)), y, s, class_names, gr, info,
                     {}, where, progress)
