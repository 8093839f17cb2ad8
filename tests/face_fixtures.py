"""Tiny synthetic face anti-spoofing datasets in the exact on-disk layouts the loaders read.

Not a test module: functions that WRITE fixtures (used by the data tests, end-to-end tests and benchmarks).
Every image is a small JPEG/PNG whose content depends on the sample's class, plus seeded noise, so that a
network can learn something in seconds: bona fide images are brighter, and the depth of a bona fide face
has a bump where an attack (a flat print or screen) is flat. The pixels of one sample are a function of
its *key* (split, subject, attack type, frame) only, so the same sample written in two layouts (e.g. the
CASIA-SURF challenge release and the re-release) gives byte-identical files.

* :func:`write_casia_surf_challenge` / :func:`write_casia_surf_rerelease`: the two CASIA-SURF releases
  (1 = bona fide in the challenge lists, 0 = bona fide in the re-release), with the same images;
* :func:`write_cefa`: the CeFA 2D layout ``<root>/{AF,CA,EA}/<RACE>-<ID>/<r>_<ID>_<dev>_<sess>_<pai>/...``;
* :func:`write_manifest`: a ``manifest.csv`` with one PNG per sample and modality.
"""
from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

SIZE = (24, 20)  # (H, W) of every fixture image
GREY = ("depth", "ir", "nir", "infrared", "thermal")
SURF_FOLDER = {"rgb": "color", "depth": "depth", "ir": "ir"}
TRAIN_ATTACKS = ("04_en_b", "05_enm_s", "06_enm_b")  # CASIA-SURF: train attacks 4-6
EVAL_ATTACKS = ("01_e_s", "02_e_b", "03_en_s")  # val/test attacks 1-3


def face_pixels(key: str, bona_fide: bool, modality: str, size: tuple[int, int] = SIZE) -> np.ndarray:
    """The uint8 pixels (H, W, 3) or (H, W) of one fixture image: class-dependent content plus noise
    seeded by ``key`` (so each sample differs and the same key always gives the same image)."""
    seed = int(hashlib.sha256(f"{key}|{modality}".encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    bump = np.exp(-(((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2))  # a face-like blob
    if modality == "depth":
        img = (60 + 150 * bump) if bona_fide else np.full((h, w), 90.0)
        img = img + rng.normal(0, 12, (h, w))
    elif modality in GREY:
        img = (110 if bona_fide else 80) + 60 * bump + rng.normal(0, 20, (h, w))
    else:
        base = (120 if bona_fide else 100) + 50 * bump
        img = base[..., None] + np.array([8.0, 0.0, -8.0]) + rng.normal(0, 25, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def write_image(path: Path, key: str, bona_fide: bool, modality: str, size: tuple[int, int] = SIZE) -> None:
    """Write one fixture image (JPEG or PNG from the suffix; grey for depth/IR-like modalities)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    px = face_pixels(key, bona_fide, modality, size)
    img = Image.fromarray(px)  # (H, W) uint8 -> "L", (H, W, 3) -> "RGB"
    if path.suffix.lower() in (".jpg", ".jpeg"):
        img.save(path, quality=90)
    else:
        img.save(path)


# ----------------------------------------------------------------------------- CASIA-SURF
def surf_videos(subjects: Sequence[int] = (3, 2, 2), frames: int = 2) -> list[dict]:
    """The fixture's CASIA-SURF videos: per split (train, val, test) ``subjects[i]`` subjects, each with one
    real video and three attack videos (types 4-6 in train, 1-3 in val/test), ``frames`` frames each with
    the unpadded numbers 1, 11, 21, ... Each dict: split, subject, folder (``real`` or ``NN_...``), bona_fide,
    species, frames (ints)."""
    out = []
    prefix = {"train": "AS", "val": "BS", "test": "BS"}
    start = {"train": 1, "val": 101, "test": 301}
    for split, n in zip(("train", "val", "test"), subjects):
        for s in range(n):
            subject = f"CLKJ_{prefix[split]}{start[split] + s:04d}"
            for folder in ("real",) + (TRAIN_ATTACKS if split == "train" else EVAL_ATTACKS):
                out.append({
                    "split": split, "subject": subject, "folder": folder, "bona_fide": folder == "real",
                    "species": "" if folder == "real" else folder[:2], "frames": [1 + 10 * j for j in range(frames)],
                })
    return out


def _surf_key(v: dict, frame: int) -> str:
    return f"{v['split']}/{v['subject']}/{v['folder']}/{frame}"


def write_casia_surf_challenge(
    root: Path, subjects: Sequence[int] = (3, 2, 2), frames: int = 2, public_lists: bool = True,
    size: tuple[int, int] = SIZE,
) -> Path:
    """The ChaLearn challenge release under ``root``: ``Training/{real,fake}_part/<subject>/<type>.rssdk/
    {color,depth,ir}/<n>.jpg`` (unpadded n), anonymised ``Val|Testing/<4-digit>/<6-digit>-{color,depth,ir}.jpg``
    (one 4-digit folder per video), and ``train_list.txt``, ``val_private_list.txt``, ``test_private_list.txt``
    (``<rgb> <depth> <ir> <label>``, 1 = bona fide), plus label-free ``*_public_list.txt``. Returns ``root``."""
    root = Path(root)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    top = {"val": "Val", "test": "Testing"}
    counter = {"val": 0, "test": 0}
    folder_no = {"val": 0, "test": 0}
    for v in surf_videos(subjects, frames):
        for fr in v["frames"]:
            key = _surf_key(v, fr)
            if v["split"] == "train":
                part = "real_part" if v["bona_fide"] else "fake_part"
                d = f"Training/{part}/{v['subject']}/{v['folder']}.rssdk"
                paths = {m: f"{d}/{SURF_FOLDER[m]}/{fr}.jpg" for m in SURF_FOLDER}
            else:
                s = v["split"]
                paths = {m: f"{top[s]}/{folder_no[s]:04d}/{counter[s]:06d}-{SURF_FOLDER[m]}.jpg" for m in SURF_FOLDER}
                counter[s] += 1
            for m, p in paths.items():
                write_image(root / p, key, v["bona_fide"], m, size)
            lines[v["split"]].append(f"{paths['rgb']} {paths['depth']} {paths['ir']} {int(v['bona_fide'])}")
        if v["split"] != "train":
            folder_no[v["split"]] += 1
    names = {"train": "train_list.txt", "val": "val_private_list.txt", "test": "test_private_list.txt"}
    for split, name in names.items():
        (root / name).write_text("\n".join(lines[split]) + "\n")
        if public_lists and split != "train":
            public = [" ".join(line.split()[:3]) for line in lines[split]]
            (root / f"{split}_public_list.txt").write_text("\n".join(public) + "\n")
    return root


def write_casia_surf_rerelease(
    root: Path, subjects: Sequence[int] = (3, 2, 2), frames: int = 2, size: tuple[int, int] = SIZE,
) -> Path:
    """The dataset authors' re-release under ``root``: ``CASIA_SURF/Data/{Training,Val,Testing}/{real,fake}_part/
    <subject>/<type>.rssdk/{color,depth,ir}/NNNN.jpg`` (4-digit padded) and ``CASIA_SURF/protocol/
    CASIA_SURF@p1_image_{train,dev,test}.txt`` (``<colour path> <label>``, paths starting ``CASIA_SURF/``,
    **0 = live**, 1 = fake). The same images as :func:`write_casia_surf_challenge`. Returns ``root``
    (``root/CASIA_SURF`` works as ``--root`` too)."""
    root = Path(root)
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    top = {"train": "Training", "val": "Val", "test": "Testing"}
    for v in surf_videos(subjects, frames):
        part = "real_part" if v["bona_fide"] else "fake_part"
        d = f"CASIA_SURF/Data/{top[v['split']]}/{part}/{v['subject']}/{v['folder']}.rssdk"
        for fr in v["frames"]:
            key = _surf_key(v, fr)
            for m, sub in SURF_FOLDER.items():
                write_image(root / f"{d}/{sub}/{fr:04d}.jpg", key, v["bona_fide"], m, size)
            lines[v["split"]].append(f"{d}/color/{fr:04d}.jpg {0 if v['bona_fide'] else 1}")
    proto = root / "CASIA_SURF" / "protocol"
    proto.mkdir(parents=True, exist_ok=True)
    for split, name in (("train", "train"), ("val", "dev"), ("test", "test")):
        (proto / f"CASIA_SURF@p1_image_{name}.txt").write_text("\n".join(lines[split]) + "\n")
    return root


# ----------------------------------------------------------------------------- CeFA
CEFA_RACES = {"AF": 1, "CA": 2, "EA": 3}
# (device, session, PAI) of each subject's videos: real device 1 session 1; print device 3 sessions 1 and 2;
# replay device 3 session 1 (as the dataset authors' protocol-4 counts suggest).
CEFA_VIDEOS = ((1, 1, 1), (3, 1, 2), (3, 2, 2), (3, 1, 4))


def cefa_video_name(race: str, sid: int, device: int, session: int, pai: int) -> str:
    return f"{CEFA_RACES[race]}_{sid:03d}_{device}_{session}_{pai}"


def write_cefa(
    root: Path, races: Iterable[str] = ("AF", "CA", "EA"), ids: Iterable[int] = (0, 1, 200, 300, 301),
    videos: Iterable[tuple[int, int, int]] = CEFA_VIDEOS, frames: int = 3, rgb_folder: str = "profile",
    id_card: bool = False, padded: bool = True, size: tuple[int, int] = SIZE,
) -> Path:
    """CeFA's 2D layout under ``root``: ``<RACE>/<RACE>-<ID>[-<IdCard>]/<r>_<ID>_<dev>_<sess>_<pai>/
    {rgb_folder,depth,ir}/<frame>.jpg`` for every race, subject ID and (device, session, PAI) in ``videos``;
    frames ``0001.jpg`` .. (``padded``) or ``1.jpg`` .. (unpadded). With the defaults, protocol 4@1 has
    train 4 videos (12 frames), dev 2 (6), test 12 (36). Returns ``root``."""
    root = Path(root)
    for race in races:
        for sid in ids:
            subject = f"{race}-{sid:03d}" + ("-19901" if id_card else "")
            for device, session, pai in videos:
                vname = cefa_video_name(race, sid, device, session, pai)
                for f in range(1, frames + 1):
                    name = f"{f:04d}.jpg" if padded else f"{f}.jpg"
                    key = f"cefa/{vname}/{f}"
                    for m, sub in (("rgb", rgb_folder), ("depth", "depth"), ("ir", "ir")):
                        write_image(root / race / subject / vname / sub / name, key, pai == 1, m, size)
    return root


# ----------------------------------------------------------------------------- manifest.csv
def write_manifest(
    folder: Path, n: int = 24, modalities: Sequence[str] = ("rgb", "depth", "ir"), pad: bool = True,
    with_split: bool = True, with_group: bool = True, with_video: bool = False, with_species: bool = True,
    num_classes: int = 3, absolute: bool = False, name: str = "manifest.csv", size: tuple[int, int] = SIZE,
    rows: Optional[list[dict]] = None,
) -> Path:
    """A manifest CSV in ``folder`` with one PNG per sample and modality under ``folder/images/<modality>/``.

    ``pad``: a ``bona_fide`` column (even rows bona fide) and, with ``with_species``, a ``species`` column
    (``print``/``replay`` for attacks); else a ``label`` column (``i % num_classes``). Groups are subjects of
    4 consecutive rows (``s0``, ``s1``, ...); videos pairs of rows (``v0``, ``v1``, ...); the ``split`` puts
    whole groups in train (the first ~2/3), val and test. ``rows`` (dicts of column -> text) are appended
    after the generated ones as given. Returns the CSV's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_groups = (n + 3) // 4
    header = (["bona_fide"] + (["species"] if with_species else [])) if pad else ["label"]
    header += (["split"] if with_split else []) + (["group"] if with_group else [])
    header += (["video"] if with_video else []) + [f"x.{m}" for m in modalities]
    out = []
    for i in range(n):
        g = i // 4
        label = (i + 1) % 2 if pad else i % num_classes
        bona = bool(label) if pad else True
        row = {"bona_fide": str(label), "label": str(label), "species": "" if bona else ("print", "replay")[(i // 2) % 2],
               "group": f"s{g}", "video": f"v{i // 2}",
               "split": "test" if g == n_groups - 1 and n_groups >= 3 else "val" if g == n_groups - 2 else "train"}
        for m in modalities:
            rel = Path("images") / m / f"{i:04d}.png"
            write_image(folder / rel, f"manifest/{i}", bona if pad else bool(label % 2), m, size)
            row[f"x.{m}"] = str(folder / rel) if absolute else rel.as_posix()
        out.append(row)
    path = folder / name
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for row in out + list(rows or []):
            w.writerow([row.get(c, "") for c in header])
    return path
