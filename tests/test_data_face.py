"""Face anti-spoofing loaders (CASIA-SURF, CeFA) on synthetic files in the exact release layouts."""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import face_fixtures as ff
from mmhal.config import DataConfig, load_config
from mmhal.data.base import PAD_CLASSES, load_dataset
from mmhal.data.casia_surf import frame_key, load_casia_surf
from mmhal.data.cefa import PRESETS, load_cefa, pick_frames
from mmhal.errors import DataError, UserError


@pytest.fixture(scope="module")
def surf(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("surf")
    return {"challenge": ff.write_casia_surf_challenge(base / "challenge"),
            "rerelease": ff.write_casia_surf_rerelease(base / "rerelease")}


@pytest.fixture(scope="module")
def cefa_root(tmp_path_factory) -> Path:
    # the default videos plus a device-2 and a session-3 real video per subject (outside mmh-4@5's filters)
    return ff.write_cefa(tmp_path_factory.mktemp("cefa"), videos=ff.CEFA_VIDEOS + ((2, 1, 1), (1, 3, 1)))


def copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def one_error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as exc:
        fn(*args, **kwargs)
    assert "\n" not in str(exc.value)
    return str(exc.value)


def load_surf(root: Path, **cfg):
    return load_casia_surf(DataConfig(name="casia-surf", path=str(root), **cfg))


def load_cefa_(root: Path, **cfg):
    cefa = cfg.pop("cefa", {})
    c = DataConfig(name="cefa", path=str(root), **cfg)
    for k, v in cefa.items():
        setattr(c.cefa, k, v)
    return load_cefa(c)


def edit_lines(file: Path, fn) -> None:
    lines = file.read_text().splitlines()
    file.write_text("\n".join(fn(lines)) + "\n")


def digest(data, i: int) -> str:
    return hashlib.sha256(Path(data.path("rgb", i)).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- CASIA-SURF
def test_challenge_release(surf):
    data = load_dataset(DataConfig(name="casia-surf", path=str(surf["challenge"])))
    # fixture: train 3 subjects, val 2, test 2; 4 videos each (real + 3 attacks), 2 frames per video
    assert [int((data.split == s).sum()) for s in ("train", "val", "test")] == [24, 16, 16]
    assert data.class_names == PAD_CLASSES
    assert np.array_equal(data.labels, data.bona_fide.astype(np.int64))
    assert int(data.bona_fide.sum()) == 14  # one real video of 2 frames per subject
    assert data.species is None and data.video is None
    assert data.info["release"] == "challenge" and "1 = bona fide" in data.info["polarity"]
    assert data.info["scoring"] == "sample"
    assert data.groups[0] == "CLKJ_AS0001" and data.groups[data.split == "val"][0] == "Val/0000"
    assert data.channels == {"rgb": 3, "depth": 1, "ir": 1} and data.image_size == (112, 112)
    assert "Training/real_part/CLKJ_AS0001/real.rssdk/color/1.jpg" == data.files["rgb"][0]  # unpadded names
    x = data.read(0, ["rgb", "depth", "ir"])
    assert [tuple(t.shape) for t in x.values()] == [(3, 112, 112), (1, 112, 112), (1, 112, 112)]
    assert len(data.fingerprint()) == 16


def test_rerelease(surf):
    for root in (surf["rerelease"], surf["rerelease"] / "CASIA_SURF"):  # either folder works as --root
        data = load_surf(root, image_size=[32, 28])
        assert data.info["release"] == "rerelease" and "0 = bona fide" in data.info["polarity"]
        assert [int((data.split == s).sum()) for s in ("train", "val", "test")] == [24, 16, 16]
        assert data.image_size == (32, 28)
        assert sorted(set(data.species[data.split == "train"].tolist())) == ["", "04", "05", "06"]
        assert sorted(set(data.species[data.split == "test"].tolist())) == ["", "01", "02", "03"]
        assert (data.species[data.bona_fide] == "").all() and (data.species[~data.bona_fide] != "").all()
        assert data.groups[0] == "CLKJ_AS0001"
        assert data.video[0].endswith("CLKJ_AS0001/real.rssdk")
        assert data.files["depth"][0].endswith("real.rssdk/depth/0001.jpg")
        data.check()
    assert load_surf(surf["rerelease"], scoring="video").info["scoring"] == "video"


def test_polarity_swap_gives_the_same_bona_fide_flag_per_image(surf):
    ch, re = load_surf(surf["challenge"]), load_surf(surf["rerelease"])
    flags_ch = {digest(ch, i): (bool(ch.bona_fide[i]), ch.split[i]) for i in range(len(ch.labels))}
    flags_re = {digest(re, i): (bool(re.bona_fide[i]), re.split[i]) for i in range(len(re.labels))}
    assert len(flags_ch) == len(ch.labels) == 56  # every image distinct
    assert flags_ch == flags_re


def test_protocol_choice(surf, tmp_path):
    assert load_surf(surf["challenge"], protocol="challenge").info["release"] == "challenge"
    assert "protocol file CASIA_SURF@p1_image_train.txt is neither in" in one_error(
        load_surf, surf["challenge"], protocol="rerelease")
    assert "train_list.txt" in one_error(load_surf, surf["rerelease"], protocol="challenge")
    msg = one_error(load_surf, tmp_path)
    assert "train_list.txt" in msg and "CASIA_SURF@p1_image_train.txt" in msg
    assert "auto, challenge or rerelease" in one_error(load_surf, surf["challenge"], protocol="4@1")
    assert "--root" in one_error(load_casia_surf, DataConfig(name="casia-surf"))


def test_a_line_pairing_different_frames_is_an_error(surf, tmp_path):
    root = copy(surf["challenge"], tmp_path)
    edit_lines(root / "train_list.txt", lambda ls: [ls[0].replace("depth/1.jpg", "depth/11.jpg", 1)] + ls[1:])
    assert "line 1 of 'train_list.txt' pairs images of different frames" in one_error(load_surf, root)
    edit_lines(root / "val_private_list.txt",
               lambda ls: [ls[0].replace("000000-depth", "000001-depth")] + ls[1:])
    edit_lines(root / "train_list.txt", lambda ls: [ls[0].replace("depth/11.jpg", "depth/1.jpg", 1)] + ls[1:])
    assert "line 1 of 'val_private_list.txt' pairs images" in one_error(load_surf, root)


def test_swapped_depth_and_ir_columns_are_an_error(surf, tmp_path):
    root = copy(surf["challenge"], tmp_path)

    def swap(ls):
        a = ls[2].split()
        return ls[:2] + [" ".join([a[0], a[2], a[1], a[3]])] + ls[3:]

    edit_lines(root / "train_list.txt", swap)
    assert "line 3 of 'train_list.txt' puts" in one_error(load_surf, root)


def test_a_missing_modality_file_is_one_sentence_naming_it(surf, tmp_path):
    root = copy(surf["challenge"], tmp_path)
    os.remove(root / "Testing" / "0001" / "000002-ir.jpg")
    msg = one_error(load_surf, root)
    assert "000002-ir.jpg" in msg and "line 3 of 'test_private_list.txt'" in msg and "does not exist" in msg
    root = copy(surf["rerelease"], tmp_path / "re")
    victim = next((root / "CASIA_SURF" / "Data" / "Val").rglob("depth/0011.jpg"))
    os.remove(victim)
    msg = one_error(load_surf, root)
    assert str(victim) in msg and "CASIA_SURF@p1_image_dev.txt" in msg


def test_public_lists_cannot_be_used(surf, tmp_path):
    root = copy(surf["challenge"], tmp_path)
    (root / "val_private_list.txt").unlink()
    assert "has no labels" in one_error(load_surf, root)
    shutil.copy(root / "val_public_list.txt", root / "val_private_list.txt")
    assert "line 1 of 'val_private_list.txt' has no label" in one_error(load_surf, root)
    shutil.copy(surf["challenge"] / "val_private_list.txt", root / "val_label.txt")
    (root / "val_private_list.txt").unlink()
    (root / "test_private_list.txt").unlink()
    data = load_surf(root)  # val_label.txt = the labelled dev list; no labelled test list: no test figures
    assert data.info["lists"]["val"].endswith("val_label.txt")
    assert not (data.split == "test").any() and "no labels" in data.info["warnings"][0]


def test_a_label_contradicting_the_folder_points_at_the_polarity(surf, tmp_path):
    root = copy(surf["rerelease"], tmp_path)
    proto = root / "CASIA_SURF" / "protocol" / "CASIA_SURF@p1_image_train.txt"
    edit_lines(proto, lambda ls: [ls[0][:-1] + "1"] + ls[1:])  # a real_part image labelled fake
    assert "labels the real_part image" in one_error(load_surf, root)
    edit_lines(proto, lambda ls: [ls[0][:-1] + "x"] + ls[1:])
    assert "line 1" in one_error(load_surf, root) and "'x'" in one_error(load_surf, root)


def test_frame_key():
    assert frame_key("Training/real_part/S/real.rssdk/depth/31.jpg") == ("depth", "Training/real_part/S/real.rssdk/31")
    assert frame_key("Val/0000/000007-ir.jpg") == ("ir", "Val/0000/000007")
    assert frame_key("a/b/x.png") == (None, "x")


# ----------------------------------------------------------------------------- CeFA
def test_cefa_protocol_4_1(cefa_root):
    data = load_dataset(DataConfig(name="cefa", path=str(cefa_root)))
    assert data.info["protocol"] == "4@1" and data.info["filters"] == PRESETS["4@1"]
    # train: AF 000, 001 x (real, replay) [+ the device-2 and session-3 real videos: no device/session filter]
    assert data.info["videos"] == {"train": 8, "val": 4, "test": 20}
    assert [int((data.split == s).sum()) for s in ("train", "val", "test")] == [24, 12, 60]
    assert set(data.groups[data.split == "train"].tolist()) == {"AF-000", "AF-001"}
    assert set(data.groups[data.split == "test"].tolist()) == {"CA-300", "CA-301", "EA-300", "EA-301"}
    assert set(data.species[data.split == "train"].tolist()) == {"", "replay"}
    assert set(data.species[data.split == "test"].tolist()) == {"", "print"}
    assert (data.species[data.bona_fide] == "").all() and (data.species[~data.bona_fide] != "").all()
    assert np.array_equal(data.labels, data.bona_fide.astype(np.int64))
    assert data.video[0] == "1_000_1_1_1" and data.info["scoring"] == "video"
    assert data.files["rgb"][0] == "AF/AF-000/1_000_1_1_1/profile/0001.jpg"
    assert data.files["ir"][0] == "AF/AF-000/1_000_1_1_1/ir/0001.jpg"
    x = data.read(0, ["rgb", "depth"])
    assert tuple(x["rgb"].shape) == (3, 112, 112) and tuple(x["depth"].shape) == (1, 112, 112)
    assert load_cefa_(cefa_root, scoring="sample").info["scoring"] == "sample"


def test_cefa_other_presets_and_overrides(cefa_root):
    d3 = load_cefa_(cefa_root, protocol="4@3")
    assert set(d3.groups[d3.split == "train"].tolist()) == {"EA-000", "EA-001"}
    assert {g[:2] for g in d3.groups[d3.split == "test"]} == {"AF", "CA"}
    mmh = load_cefa_(cefa_root, protocol="mmh-4@5")
    assert mmh.info["videos"] == {"train": 4, "val": 2, "test": 6}  # devices {1,3}, sessions {1,2}
    assert {g[:2] for g in mmh.groups[mmh.split == "test"]} == {"AF"}
    assert not any(v.split("_")[2] == "2" or v.split("_")[3] == "3" for v in mmh.video)
    over = load_cefa_(cefa_root, protocol="4@1", cefa={"test_races": ["ea"], "test_pais": [2], "devices": [3]})
    assert over.info["filters"]["test_races"] == ["EA"] and over.info["filters"]["train_races"] == ["AF"]
    assert not over.bona_fide[over.split == "test"].any()
    assert set(over.video[over.split == "train"].tolist()) == {"1_000_3_1_4", "1_001_3_1_4"}  # real: device 1
    custom = load_cefa_(cefa_root, protocol="custom", cefa={"train_races": ["CA"], "test_races": ["CA"]})
    assert {g for g in custom.groups} == {"CA-000", "CA-001", "CA-200", "CA-300", "CA-301"}
    assert set(custom.species.tolist()) == {"", "print", "replay"}


def test_cefa_overlapping_filters_and_empty_splits(cefa_root):
    msg = one_error(load_cefa_, cefa_root, protocol="custom", cefa={"test_ids": [0, 499]})
    assert "matches the filters of both train and test" in msg
    msg = one_error(load_cefa_, cefa_root, cefa={"train_ids": [150, 199]})
    assert msg.startswith("no CeFA video") and "train filters of protocol 4@1" in msg
    data = load_cefa_(cefa_root, cefa={"test_ids": [400, 499]})
    assert not (data.split == "test").any() and "no test figures" in data.info["warnings"][0]
    assert "must be auto, 4@1" in one_error(load_cefa_, cefa_root, protocol="challenge")


def test_cefa_frames_per_video(cefa_root):
    data = load_cefa_(cefa_root, cefa={"frames_per_video": 2})
    assert data.info["videos"]["train"] == 8 and int((data.split == "train").sum()) == 16
    assert [f.rsplit("/", 1)[1] for f in data.files["rgb"][:2]] == ["0001.jpg", "0003.jpg"]
    assert pick_frames(90, 8).tolist() == [5, 16, 28, 39, 50, 61, 73, 84]
    assert pick_frames(3, 5).tolist() == [0, 1, 2] and pick_frames(4, 0).tolist() == [0, 1, 2, 3]


def test_cefa_color_folder_id_card_unpadded_frames_and_ethnicity_folder(tmp_path):
    ff.write_cefa(tmp_path / "Ethnicity", races=("AF", "CA"), ids=(0, 200, 300), frames=11,
                  rgb_folder="color", id_card=True, padded=False)
    assert "needs the 'EA' folder" in one_error(load_cefa_, tmp_path)  # 4@1 tests on CA and EA
    data = load_cefa_(tmp_path, cefa={"test_races": ["CA"]})
    assert data.info["source"] == str(tmp_path / "Ethnicity")
    first = data.files["rgb"][data.video == "1_000_1_1_1"]
    assert first[0] == "AF/AF-000-19901/1_000_1_1_1/color/1.jpg"
    assert [f.rsplit("/", 1)[1] for f in first] == [f"{k}.jpg" for k in range(1, 12)]  # by number, not text
    assert data.groups[0] == "AF-000"


def test_cefa_a_frame_missing_in_one_modality(tmp_path):
    root = ff.write_cefa(tmp_path, ids=(0, 200, 300), frames=3)
    video = root / "AF" / "AF-200" / "1_200_3_1_4"
    os.remove(video / "depth" / "0002.jpg")
    msg = one_error(load_cefa_, root)
    assert msg == ("video 'AF/AF-200/1_200_3_1_4' has frame '0002.jpg' in 'profile' but not in 'depth' "
                   "(3 vs 2 frames)")
    shutil.copy(video / "ir" / "0003.jpg", video / "ir" / "0004.jpg")
    shutil.copy(video / "ir" / "0003.jpg", video / "depth" / "0002.jpg")
    assert "has frame '0004.jpg' in 'ir' but not in 'profile' (4 vs 3 frames)" in one_error(load_cefa_, root)
    os.remove(video / "ir" / "0004.jpg")
    shutil.copytree(video / "profile", video / "color")
    assert "both a 'profile' and a 'color' folder" in one_error(load_cefa_, root)
    shutil.rmtree(video / "color")
    shutil.rmtree(video / "ir")
    assert one_error(load_cefa_, root) == "video 'AF/AF-200/1_200_3_1_4' has no 'ir' folder"


def test_cefa_folder_names_are_checked(tmp_path):
    root = ff.write_cefa(tmp_path, ids=(0, 200, 300), frames=1)
    (root / "AF" / "AF-000" / "1_001_1_1_1").mkdir()
    assert "names race 1 and subject 001, which do not match" in one_error(load_cefa_, root)
    (root / "AF" / "AF-000" / "1_001_1_1_1").rmdir()
    (root / "AF" / "AF-000" / "extra").mkdir()
    assert "'AF/AF-000/extra' is not a CeFA video folder" in one_error(load_cefa_, root)
    (root / "AF" / "AF-000" / "extra").rmdir()
    (root / "CA" / "EA-999").mkdir()
    assert "'CA/EA-999' is not a CeFA subject folder" in one_error(load_cefa_, root)
    assert "holds no AF, CA or EA folder" in one_error(load_cefa_, root / "AF")


def test_cefa_config_keys_and_their_validation():
    cfg = load_config(None, ["data.name=cefa", "data.protocol=mmh-4@5", "data.cefa.train_races=AF,CA",
                             "data.cefa.test_ids=300,399", "data.cefa.frames_per_video=8"])
    assert cfg.data.cefa.train_races == ["AF", "CA"] and cfg.data.cefa.test_ids == [300, 399]
    assert cfg.data.cefa.frames_per_video == 8
    for bad, words in (("data.cefa.test_races=XX", "ethnicities"), ("data.cefa.train_pais=5", "PAIs"),
                       ("data.cefa.sessions=0", "sessions"), ("data.cefa.dev_ids=300,200", "range"),
                       ("data.cefa.frames_per_video=-1", "frames_per_video")):
        with pytest.raises(UserError, match=words):
            load_config(None, [bad])
