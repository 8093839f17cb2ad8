"""The action-recognition loaders (nw-ucla, ntu60, ucf101, hmdb51) on tiny fixtures in each release's layout of
pre-extracted frames: labels and class mappings, the protocols' splits, validation carved from train by whole
groups, numeric frame order, pairing by frame number, flow with one frame fewer, 16-bit depth scaling, and a
one-sentence DataError for every broken input."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import clip_fixtures as cf
import numpy as np
import pytest
import torch

from mmhal.config import load_config
from mmhal.data.actions import NTU_DEPTH_RANGE, hmdb_source
from mmhal.data.base import FOLDER_DATASETS, load_dataset
from mmhal.data.files import decode_image
from mmhal.data.frames import list_frames
from mmhal.errors import DataError

pytestmark = pytest.mark.usefixtures("one_thread")

CLIP = ["data.clip.length=4", "data.clip.size=16,16"]
UCLA_LONG = (1, 1, 1, 0)  # view 1, a01, s01, e00: 11 frames, so frame_10 and frame_11 follow frame_9


def load(name: str, root, *overrides: str):
    cfg = load_config(None, [f"data.name={name}", f"data.path={root}", *CLIP, *overrides])
    return load_dataset(cfg.data)


def one_error(name: str, root, *overrides: str) -> str:
    """The message of the DataError loading raises, checked to be one sentence on one line."""
    with pytest.raises(DataError) as exc:
        load(name, root, *overrides)
    msg = str(exc.value)
    assert "\n" not in msg and ". " not in msg and msg, msg
    return msg


def copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def index(data, folder: str) -> int:
    """The sample whose first modality's frame folder is ``folder`` (relative to the data's root)."""
    folders = next(iter(data.sources.values()))[0].folders.tolist()
    return folders.index(folder)


def scaled(mm: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """16-bit millimetres as the loaders encode them: clipped to [lo, hi], scaled to 0..255, rounded."""
    x = (np.clip(mm.astype(np.float32), lo, hi) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    return np.floor(x + np.float32(0.5)).astype(np.uint8)


def check_val_carved_from_train(data, protocol_train: np.ndarray) -> None:
    """val holds only samples of the protocol's train side, and no group is in both train and val."""
    assert (data.split[~protocol_train] == "test").all()
    assert set(data.split[protocol_train].tolist()) == {"train", "val"}
    train_groups = set(data.groups[data.split == "train"].tolist())
    val_groups = set(data.groups[data.split == "val"].tolist())
    assert val_groups and not (train_groups & val_groups)
    assert data.info["val_groups"] == sorted(val_groups)


@pytest.fixture(scope="module")
def ucla(tmp_path_factory) -> Path:
    return cf.write_nw_ucla(tmp_path_factory.mktemp("ucla") / "NW-UCLA", long={UCLA_LONG: 11})


@pytest.fixture(scope="module")
def ntu(tmp_path_factory) -> Path:
    return cf.write_ntu(tmp_path_factory.mktemp("ntu") / "NTU")


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> Path:
    return cf.write_ucf101(tmp_path_factory.mktemp("ucf") / "UCF101")


@pytest.fixture(scope="module")
def hmdb(tmp_path_factory) -> Path:
    return cf.write_hmdb51(tmp_path_factory.mktemp("hmdb") / "HMDB51")


def test_the_four_loaders_are_folder_datasets():
    assert {"nw-ucla", "ntu60", "ucf101", "hmdb51"} <= set(FOLDER_DATASETS)


# ----------------------------------------------------------------------------- NW-UCLA
def test_nw_ucla_labels_with_gaps_and_the_cross_view_split(ucla):
    data = load("nw-ucla", ucla)
    assert data.num_classes == 10 and data.class_names[0] == "pick up with one hand"
    assert data.class_names[6] == "donning" and data.class_names[9] == "carry"
    folders = data.sources["rgb"][0].folders.tolist()
    assert "view_1/readme" not in folders and len(folders) == 70  # the stray folder is skipped
    for i, f in enumerate(folders):
        code = int(f.split("/")[1][1:3])
        assert data.labels[i] == cf.UCLA_CODES.index(code)
    assert data.labels[index(data, "view_2/a08_s02_e00")] == 6
    assert data.labels[index(data, "view_1/a11_s03_e00")] == 8
    view = np.array([int(f[5]) for f in folders])
    check_val_carved_from_train(data, view != 3)
    assert (data.groups == np.array(["s" + f.split("_s")[1][:2] for f in folders])).all()
    info = data.info
    assert info["protocol"] == "cross-view" and info["views"] == {"train": [1, 2], "test": [3]}
    assert info["counts"]["test"] == 10 and sum(info["counts"].values()) == 70
    assert info["frames"] == {"min": 3, "median": 3.0, "max": 11}
    assert data.shapes == {"rgb": (3, 4, 16, 16), "depth": (1, 4, 16, 16)}
    json.dumps(info)  # goes into results.json


def test_nw_ucla_cross_view_k_tests_on_view_k(ucla):
    data = load("nw-ucla", ucla, "data.protocol=cross-view-1")
    view = np.array([int(f[5]) for f in data.sources["rgb"][0].folders.tolist()])
    check_val_carved_from_train(data, view != 1)
    assert data.info["views"] == {"train": [2, 3], "test": [1]}


def test_nw_ucla_frames_in_numeric_order_paired_by_number_despite_timestamps(ucla):
    data = load("nw-ucla", ucla)
    i = index(data, "view_1/a01_s01_e00")
    assert data.num_frames[i] == 11
    rgb, depth = data.sources["rgb"][0], data.sources["depth"][0]
    numbers, names = list_frames(data.folder(rgb, i), rgb.pattern)
    assert numbers == list(range(1, 12)) and names[9].startswith("frame_10_") and names[8].startswith("frame_9_")
    d_numbers, d_names = list_frames(data.folder(depth, i), depth.pattern)
    assert d_numbers == numbers and all(n.endswith("_depth.png") for n in d_names)  # never *_depth_vis.jpg
    t_rgb, t_depth = cf.ucla_timestamps(10)
    assert names[9] == f"frame_10_tc_{t_rgb}_rgb.jpg" and d_names[9] == f"frame_10_tc_{t_depth}_depth.png"
    clip = data.read_clip(i, ["rgb", "depth"], np.array([9, 10, 8]))
    folder = data.folder(rgb, i)
    for t, n in enumerate((10, 11, 9)):
        t_rgb, _ = cf.ucla_timestamps(n)
        expected = decode_image(os.path.join(folder, f"frame_{n}_tc_{t_rgb}_rgb.jpg"), 3)
        assert torch.equal(clip["rgb"][:, t], expected)
        mm = cf.frame_pixels("view_1/a01_s01_e00", 0, "depth", n)  # raw millimetres without data.depth_range
        assert clip["depth"].dtype == torch.int32 and np.array_equal(clip["depth"][0, t].numpy(), mm)


def test_nw_ucla_depth_is_scaled_with_data_depth_range(ucla):
    data = load("nw-ucla", ucla, "data.depth_range=1000,5000")
    assert data.value_range == {"depth": (1000.0, 5000.0)}
    i = index(data, "view_2/a05_s03_e00")
    got = data.read_clip(i, ["depth"], np.array([1]))["depth"][0, 0].numpy()
    mm = cf.frame_pixels("view_2/a05_s03_e00", 4, "depth", 2)
    assert got.dtype == np.uint8 and np.array_equal(got, scaled(mm, 1000, 5000))


def test_nw_ucla_a_sample_whose_depth_lacks_a_frame_is_one_sentence_naming_it(ucla, tmp_path):
    root = copy(ucla, tmp_path)
    folder = root / "multiview_action" / "view_2" / "a03_s02_e00"
    os.remove(folder / f"frame_2_tc_{cf.ucla_timestamps(2)[1]}_depth.png")
    msg = one_error("nw-ucla", root)
    assert "'view_2/a03_s02_e00'" in msg and "3 'rgb' frames but 2 'depth' frames" in msg


def test_nw_ucla_bad_inputs_are_one_sentence(ucla, tmp_path):
    assert one_error("nw-ucla", tmp_path / "nowhere") == f"the NW-UCLA folder '{tmp_path / 'nowhere'}' does not exist"
    msg = one_error("nw-ucla", ucla, "data.protocol=cross-subject")
    assert msg.startswith("data.protocol for nw-ucla must be auto (= cross-view) or one of cross-view, cross-view-1")
    root = copy(ucla, tmp_path)
    shutil.rmtree(root / "multiview_action" / "view_3")
    assert "view_3" in one_error("nw-ucla", root)
    (root / "multiview_action" / "view_3" / "a07_s01_e00").mkdir(parents=True)
    assert "names action a07" in one_error("nw-ucla", root)


def test_nw_ucla_frames_decode_at_data_image_size(ucla):
    data = load("nw-ucla", ucla, "data.image_size=18,22")
    assert data.frame_size == (18, 22)
    assert data.read_clip(0, ["rgb"], np.array([0]))["rgb"].shape == (3, 1, 18, 22)


# ----------------------------------------------------------------------------- NTU RGB+D 60
def _ntu_fields(data):
    names = [f.split("/")[1] for f in data.sources["rgb"][0].folders.tolist()]
    return names, np.array([int(n[5:8]) for n in names]), np.array([int(n[9:12]) for n in names])


def test_ntu_labels_and_the_cross_subject_split(ntu):
    data = load("ntu60", ntu)
    assert data.num_classes == 60 and data.class_names[0] == "drink water"
    assert data.class_names[59] == "walking apart from each other"
    names, _, performer = _ntu_fields(data)
    assert len(names) == 184 and "S018C001P001R001A061" not in names  # NTU RGB+D 120 is skipped, with a warning
    assert any("NTU RGB+D 120" in w for w in data.info["warnings"])
    assert all(data.labels[i] == int(n[17:20]) - 1 for i, n in enumerate(names))
    assert data.labels[names.index(cf.ntu_name(1, 2, 1, 1, 60))] == 59
    check_val_carved_from_train(data, performer != 3)
    assert (data.groups == np.array([f"P{p:03d}" for p in performer])).all()
    assert data.split[names.index(cf.ntu_name(1, 1, 1, 2, 1))] != "test"  # performer 1 trains, whatever the camera
    assert data.info["protocol"] == "cross-subject" and data.info["counts"]["test"] == 3
    assert data.info["frames"] == {"min": 2, "median": 2.0, "max": 2}
    assert data.sources["depth"][0].folders[0].startswith("depth/")


def test_ntu_cross_view_tests_on_camera_1(ntu):
    data = load("ntu60", ntu, "data.protocol=cross-view")
    names, camera, _ = _ntu_fields(data)
    check_val_carved_from_train(data, camera != 1)
    assert data.split[names.index(cf.ntu_name(1, 1, 1, 2, 1))] == "test"
    assert data.info["counts"]["test"] == 4


def test_ntu_depth_is_clipped_to_500_4500_mm_unless_data_depth_range_says_otherwise(ntu):
    name = cf.ntu_name(1, 3, 2, 1, 17)
    mm = cf.frame_pixels(name, 16, "depth", 2)
    for overrides, (lo, hi) in (((), NTU_DEPTH_RANGE), (("data.depth_range=2000,3500",), (2000, 3500))):
        data = load("ntu60", ntu, *overrides)
        assert data.value_range == {"depth": (lo, hi)}
        got = data.read_clip(index(data, f"rgb/{name}"), ["depth"], np.array([1]))["depth"][0, 0].numpy()
        assert np.array_equal(got, scaled(mm, lo, hi))
    assert NTU_DEPTH_RANGE == (500.0, 4500.0)


def test_ntu_reads_the_release_depth_folder_name(ntu, tmp_path):
    root = copy(ntu, tmp_path)
    (root / "depth").rename(root / "nturgb+d_depth_masked")
    data = load("ntu60", root)
    assert data.sources["depth"][0].folders[0].startswith("nturgb+d_depth_masked/")


def test_ntu_a_sample_with_fewer_depth_frames_is_one_sentence_naming_it(ntu, tmp_path):
    root = copy(ntu, tmp_path)
    name = cf.ntu_name(1, 2, 4, 1, 33)
    os.remove(root / "depth" / name / "MDepth-00000002.png")
    msg = one_error("ntu60", root)
    assert f"NTU sample '{name}'" in msg and "2 'rgb' frames but 1 'depth' frames" in msg


def test_ntu_bad_inputs_are_one_sentence(ntu, tmp_path):
    assert one_error("ntu60", tmp_path / "none") == f"the NTU RGB+D folder '{tmp_path / 'none'}' does not exist"
    assert one_error("ntu60", ntu, "data.protocol=split-1").startswith("data.protocol for ntu60 must be auto")
    root = copy(ntu, tmp_path)
    name = cf.ntu_name(1, 1, 3, 1, 2)
    shutil.rmtree(root / "depth" / name)
    msg = one_error("ntu60", root)
    assert name in msg and str(root / "depth" / name) in msg
    shutil.rmtree(root / "depth")
    assert "no depth frame folder" in one_error("ntu60", root)


# ----------------------------------------------------------------------------- UCF101
def _ucf_groups(data):
    return np.array([int(f.rsplit("_g", 1)[1][:2]) for f in data.sources["rgb"][0].folders.tolist()])


def test_ucf101_classes_from_classind_and_folders_and_the_official_splits(ucf):
    data = load("ucf101", ucf)
    assert data.class_names == list(cf.UCF_CLASSES)
    i = index(data, "rawframes/HandstandPushups/v_HandStandPushups_g08_c01")  # folder and file spell it differently
    assert data.labels[i] == 2
    for i, f in enumerate(data.sources["rgb"][0].folders.tolist()):
        assert data.labels[i] == cf.UCF_CLASSES.index(f.split("/")[1])
    group = _ucf_groups(data)
    check_val_carved_from_train(data, group > 7)  # split 1 tests on g01-g07
    assert data.info["protocol"] == "split-1" and data.info["counts"]["test"] == 6
    data2 = load("ucf101", ucf, "data.protocol=split-2")
    check_val_carved_from_train(data2, ~np.isin(_ucf_groups(data2), range(8, 15)))
    assert set(data2.groups[data2.split == "val"].tolist()) <= {"g01", "g02", "g15", "g22"}


def test_ucf101_flow_is_x_and_y_with_one_frame_fewer_than_rgb(ucf):
    data = load("ucf101", ucf)
    assert data.channels("rgb") == 3 and data.channels("flow") == 2 and data.is_flow("flow")
    assert (data.num_frames == 5).all() and data.info["frames"]["max"] == 5
    x, y = data.sources["flow"]
    numbers, names = list_frames(data.folder(x, 0), x.pattern)
    assert numbers == [1, 2, 3, 4] and names[0] == "flow_x_00001.jpg"
    assert list_frames(data.folder(y, 0), y.pattern)[1][0] == "flow_y_00001.jpg"
    assert list_frames(data.folder(data.sources["rgb"][0], 0), data.sources["rgb"][0].pattern)[0] == [1, 2, 3, 4, 5]
    clip = data.read_clip(0, ["rgb", "flow"], np.array([3, 4]))  # rgb frame 5 has no flow: flow's last serves
    assert clip["rgb"].shape == (3, 2, 20, 24) and clip["flow"].shape == (2, 2, 20, 24)
    assert torch.equal(clip["flow"][:, 0], clip["flow"][:, 1])
    views = data.sample(0, ["rgb", "flow"], "test")
    assert views["flow"].shape == (10 * 3, 2, 4, 16, 16)


def test_ucf101_a_video_with_a_missing_rgb_frame_is_one_sentence_naming_it(ucf, tmp_path):
    root = copy(ucf, tmp_path)
    os.remove(root / "rawframes" / "Archery" / "v_Archery_g09_c01" / "img_00003.jpg")
    msg = one_error("ucf101", root)
    assert "UCF101 video 'Archery/v_Archery_g09_c01'" in msg and "4 'rgb' frames but 4 'flow' frames" in msg


def test_ucf101_bad_inputs_are_one_sentence(ucf, tmp_path):
    assert one_error("ucf101", tmp_path / "none") == f"the UCF101 folder '{tmp_path / 'none'}' does not exist"
    assert one_error("ucf101", ucf, "data.protocol=split-4").startswith(
        "data.protocol for ucf101 must be auto (= split-1) or one of split-1, split-2, split-3")
    lists = ucf / "ucfTrainTestlist"
    assert one_error("ucf101", ucf, "data.protocol=split-3") == (
        f"the UCF101 train list '{lists / 'trainlist03.txt'}' does not exist")
    assert "flow_modalities" in one_error("ucf101", ucf, "data.clip.flow_modalities=[]")
    root = copy(ucf, tmp_path)
    gone = root / "rawframes" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g02_c01"
    shutil.rmtree(gone)
    assert one_error("ucf101", root) == (
        f"UCF101 video 'ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01' has no frame folder: '{gone}' does not exist")
    train = root / "ucfTrainTestlist" / "trainlist01.txt"
    train.write_text(train.read_text().replace("v_Archery_g08_c01.avi 2", "v_Archery_g08_c01.avi 3"))
    assert "the label 3, but its folder 'Archery' is class 2" in one_error("ucf101", root)


# ----------------------------------------------------------------------------- HMDB51
def test_hmdb51_classes_sorted_and_the_split_files_ids(hmdb):
    data = load("hmdb51", hmdb)
    assert data.class_names == ["brush_hair", "cartwheel", "catch"]
    folders = data.sources["rgb"][0].folders.tolist()
    assert len(folders) == 3 * 4 * 2 and not any("Unused_clip" in f for f in folders)  # id 0: not read
    assert data.info["unused_videos"] == 3
    source = np.array([int(f.split("Movie_")[1][0]) for f in folders])
    for i, f in enumerate(folders):
        assert data.labels[i] == data.class_names.index(f.split("/")[1])
    check_val_carved_from_train(data, source != 0)
    assert data.info["protocol"] == "split-1"
    assert data.labels[index(data, f"rawframes/catch/{cf.hmdb_video(3, 'catch', 1)}")] == 2
    data2 = load("hmdb51", hmdb, "data.protocol=split-2")
    check_val_carved_from_train(data2, source != 1)
    # the group is the source movie: both clips of it, in every class, are on one side
    assert len(set(data.groups.tolist())) == 4


def test_hmdb51_group_is_the_source_video():
    assert hmdb_source("Movie_3_(take)!_&_brush_hair_u_nm_np1_ba_goo_1", "brush_hair") == "Movie_3_(take)!_&"
    assert hmdb_source("April_09_brush_hair_u_nm_np1_ba_goo_0", "brush_hair") == "April_09"
    assert hmdb_source("some_clip_12", "wave") == "some_clip"


def test_hmdb51_a_video_with_unpaired_frames_is_one_sentence_naming_it(hmdb, tmp_path):
    root = copy(hmdb, tmp_path)
    video = cf.hmdb_video(2, "cartwheel", 0)
    os.remove(root / "rawframes" / "cartwheel" / video / "img_00002.jpg")
    os.remove(root / "rawframes" / "cartwheel" / video / "img_00003.jpg")
    msg = one_error("hmdb51", root)
    assert f"HMDB51 video 'cartwheel/{video}'" in msg and "3 'rgb' frames but 4 'flow' frames" in msg


def test_hmdb51_bad_inputs_are_one_sentence(hmdb, tmp_path):
    assert one_error("hmdb51", tmp_path / "none") == f"the HMDB51 folder '{tmp_path / 'none'}' does not exist"
    assert one_error("hmdb51", hmdb, "data.protocol=cross-view").startswith("data.protocol for hmdb51 must be auto")
    assert one_error("hmdb51", hmdb, "data.protocol=split-3") == (
        f"the HMDB51 split folder '{hmdb / 'testTrainMulti_7030_splits'}' has no '<class>_test_split3.txt' file")
    root = copy(hmdb, tmp_path)
    listed = root / "testTrainMulti_7030_splits" / "catch_test_split1.txt"
    listed.write_text(listed.read_text() + "broken_line.avi 7\n")
    assert one_error("hmdb51", root).startswith(f"line 10 of '{listed}' is not '<video>.avi <id>'")
    shutil.rmtree(root / "testTrainMulti_7030_splits")
    assert one_error("hmdb51", root).startswith("the HMDB51 split folder")


# ----------------------------------------------------------------------------- end to end
E2E = {"nw-ucla": (cf.write_nw_ucla, "cross-view"), "ntu60": (cf.write_ntu, "cross-subject"),
       "ucf101": (cf.write_ucf101, "split-1"), "hmdb51": (cf.write_hmdb51, "split-1")}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(E2E))
def test_mmhal_run_on_each_layouts_frames(tmp_path, capsys, name):
    """Each layout's fixture runs end to end (the small backbone; the recipes' R3D-18 in test_action_recipes)."""
    from mmhal.cli import main

    write, protocol = E2E[name]
    root = write(tmp_path / "data")
    out = tmp_path / "run"
    code = main(["run", "--data", name, "--root", str(root), "--student", "rgb", "--methods", "unimodal,mmh",
                 "--seeds", "1", "--epochs", "1", "--out", str(out), "--no-progress", "model.width=4",
                 "train.batch_size=4", "workers=1", "train.loader_workers=0", "data.clip.length=4",
                 "data.clip.size=16,16", "data.clip.num_test_clips=2", "data.clip.test_crops=1",
                 f"cache_dir={tmp_path / 'cache'}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads((out / "results.json").read_text())
    assert report["dataset"] == name
    assert {"teacher", "unimodal", "mmh"} <= set(report["results"])
    assert report["data_info"]["protocol"] == protocol
