from pathlib import Path

import pytest

from genact.data import (
    read_class_file,
    read_folder,
    read_hmdb51,
    read_k600_zs,
    read_kinetics_csv,
    read_list,
    read_ucf101,
    readable_name,
)
from genact.errors import DataError
from helpers import FIXTURES


def touch(root: Path, *names: str) -> None:
    for n in names:
        (root / n).parent.mkdir(parents=True, exist_ok=True)
        (root / n).write_bytes(b"")


@pytest.mark.parametrize(
    "raw,name",
    [
        ("ApplyEyeMakeup", "apply eye makeup"),
        ("brush_hair", "brush hair"),
        ("YoYo", "yo yo"),
        ("playing guitar", "playing guitar"),
        ("PlayingDaf", "playing daf"),
        ("HandstandPushups", "handstand pushups"),
    ],
)
def test_readable_name(raw, name):
    assert readable_name(raw) == name


def test_hmdb51_split_selects_train_and_test(tmp_path, caplog):
    touch(
        tmp_path,
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0.avi",
        "brush_hair/Atempting_to_brush_hair_u_nm_np1_fr_goo_0.avi",
        "brush_hair/Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi",
        "cartwheel/Cartwheel_Lesson_cartwheel_f_cm_np1_ri_med_0.avi",
        "cartwheel/Gymnastics_cartwheel_f_cm_np1_le_bad_1.avi",
    )
    test = read_hmdb51(FIXTURES / "hmdb51", tmp_path, split=1, subset="test")
    assert test.class_names == ["brush hair", "cartwheel"]
    assert sorted((Path(i.path).name, i.label) for i in test.items) == [
        ("Atempting_to_brush_hair_u_nm_np1_fr_goo_0.avi", 0),
        ("Cartwheel_Lesson_cartwheel_f_cm_np1_ri_med_0.avi", 1),
    ]
    assert test.missing == ["missing_cartwheel_video_0.avi"]
    assert "1 of 3 listed videos not found" in caplog.text
    train = read_hmdb51(FIXTURES / "hmdb51", tmp_path, split=2, subset="train")
    assert sorted(Path(i.path).name for i in train.items) == [
        "Atempting_to_brush_hair_u_nm_np1_fr_goo_0.avi",
        "Brushing_Hair_with_Beth_brush_hair_h_nm_np1_le_goo_0.avi",
        "Cartwheel_Lesson_cartwheel_f_cm_np1_ri_med_0.avi",
    ]
    with pytest.raises(DataError, match="test_split3"):
        read_hmdb51(FIXTURES / "hmdb51", tmp_path, split=3)


def test_ucf101_labels_from_folder(tmp_path):
    touch(
        tmp_path,
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
        "HandstandPushups/v_HandStandPushups_g01_c01.avi",
        "YoYo/v_YoYo_g01_c01.avi",
        "YoYo/v_YoYo_g02_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
    )
    test = read_ucf101(FIXTURES / "ucf101", tmp_path, split=1, subset="test")
    assert test.class_names == ["apply eye makeup", "handstand pushups", "yo yo"]
    assert [(Path(i.path).name, i.label) for i in test.items] == [
        ("v_ApplyEyeMakeup_g01_c01.avi", 0),
        ("v_HandStandPushups_g01_c01.avi", 1),
        ("v_YoYo_g01_c01.avi", 2),
        ("v_YoYo_g02_c01.avi", 2),
    ]
    train = read_ucf101(FIXTURES / "ucf101", tmp_path, split=1, subset="train")
    assert [i.label for i in train.items] == [0] and len(train.missing) == 2


def test_kinetics_csv_trimmed_clips_and_full_videos(tmp_path):
    touch(
        tmp_path,
        "abseiling/--3ouPhoy2A_000020_000030.mp4",
        "air_drumming/--nQbRBEz2s_000104_000114.mp4",
        "-0B5dHNvxjA_000002_000012.mp4",
        "zzzzzzzzzz1.mkv",
    )
    split = read_kinetics_csv(FIXTURES / "kinetics" / "train.csv", tmp_path, subset="train")
    assert split.class_names == ["abseiling", "air drumming", "playing guitar"]
    got = [(Path(i.path).name, i.label, i.start, i.end) for i in split.items]
    assert got == [
        ("--3ouPhoy2A_000020_000030.mp4", 0, None, None),
        ("--nQbRBEz2s_000104_000114.mp4", 1, None, None),
        ("zzzzzzzzzz1.mkv", 2, 0.0, 10.0),
    ]
    everything = read_kinetics_csv(FIXTURES / "kinetics" / "train.csv", tmp_path)
    assert len(everything.items) == 4 and not everything.missing


def test_k600_zero_shot_and_generalized(tmp_path):
    touch(
        tmp_path,
        "k6_aaaaaaaaaaa_000010_000020.mp4",
        "k6_bbbbbbbbbbb_000000_000010.mp4",
        "k6_ccccccccccc_000005_000015.mp4",
        "k6_ddddddddddd_000001_000011.mp4",
        "k6_eeeeeeeeeee_000030_000040.mp4",
    )
    zs = read_k600_zs(FIXTURES / "k600zs", tmp_path, split=1)
    assert zs.class_names == ["acting in play", "adjusting glasses"]
    assert sorted((Path(i.path).stem[3:6], i.label) for i in zs.items) == [
        ("aaa", 0),
        ("bbb", 1),
        ("eee", 0),
    ]
    gzs = read_k600_zs(FIXTURES / "k600zs", tmp_path, split=1, generalized=True)
    assert len(gzs.class_names) == 6 and gzs.class_names[4] == "acting in play"
    assert sorted((Path(i.path).stem[3:6], i.label) for i in gzs.items) == [
        ("aaa", 4),
        ("bbb", 5),
        ("eee", 4),
    ]
    zs2 = read_k600_zs(FIXTURES / "k600zs", tmp_path, split=2)
    assert zs2.class_names == ["adjusting glasses", "arm wrestling"]
    assert sorted((Path(i.path).stem[3:6], i.label) for i in zs2.items) == [("bbb", 0), ("ccc", 1)]


def test_generic_lists_and_class_files(tmp_path, caplog):
    touch(tmp_path, "videos/a.mp4", "videos/b.mp4", "videos/c.mp4")
    names = ["riding bike", "rock climbing", "swimming"]
    assert read_class_file(FIXTURES / "list" / "classes.csv") == names
    assert read_class_file(FIXTURES / "list" / "classes.txt") == names
    split = read_list(
        FIXTURES / "list" / "val_space.txt", tmp_path, FIXTURES / "list" / "classes.csv"
    )
    assert [(Path(i.path).name, i.label) for i in split.items] == [
        ("a.mp4", 0),
        ("b.mp4", 2),
        ("c.mp4", 1),
    ]
    assert split.missing == ["videos/gone.mp4"] and "gone.mp4" in caplog.text
    by_name = read_list(
        FIXTURES / "list" / "val_names.csv", tmp_path, FIXTURES / "list" / "classes.txt"
    )
    assert [i.label for i in by_name.items] == [0, 2]
    ucf_style = tmp_path / "ind.txt"
    ucf_style.write_text("1 RidingBike\n2 RockClimbing\n3 Swimming\n")
    one_based_list = tmp_path / "one_based.txt"
    one_based_list.write_text("videos/a.mp4 1\nvideos/b.mp4 3\n")
    one_based = read_list(one_based_list, tmp_path, ucf_style)  # ids 1..3 -> labels 0..2
    assert [i.label for i in one_based.items] == [0, 2] and one_based.class_names == names
    with pytest.raises(ValueError, match="not one of the 3 classes"):
        bad = tmp_path / "bad.txt"
        bad.write_text("videos/a.mp4 7\n")
        read_list(bad, tmp_path, FIXTURES / "list" / "classes.csv")


def test_unlabelled_folder(tmp_path):
    touch(tmp_path, "x/b.mp4", "a.webm", "notes.txt")
    split = read_folder(tmp_path)
    assert [Path(i.path).name for i in split.items] == ["a.webm", "b.mp4"]
    assert all(i.label is None for i in split.items)
    with pytest.raises(DataError, match="no video files"):
        read_folder(tmp_path / "x" / "nothing")


def test_every_reader_keeps_a_last_line_without_a_newline(tmp_path):
    """Split, list and class files saved without a final newline read the same."""
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(FIXTURES, cut)
    for f in cut.rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes().rstrip(b"\n"))
    videos = tmp_path / "videos"
    for name in [
        "a.mp4",
        "b.mp4",
        "c.mp4",
        "--3ouPhoy2A_000020_000030.mp4",
        "--nQbRBEz2s_000104_000114.mp4",
        "zzzzzzzzzz1.mkv",
        "-0B5dHNvxjA_000002_000012.mp4",
    ]:
        touch(videos, f"videos/{name}")
    for path in [
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
        "Archery/v_Archery_g01_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "Archery/v_Archery_g08_c02.avi",
    ]:
        touch(videos, path)
    for f in (FIXTURES / "hmdb51").iterdir():
        for line in f.read_text().splitlines():
            touch(videos, "hmdb/" + line.split()[0])
    for line in (FIXTURES / "k600zs" / "tst_video_metas.jsonl").read_text().splitlines():
        touch(videos, "k6/" + __import__("json").loads(line)["videoname"] + ".mp4")

    def everything(root):
        items = lambda s: [(Path(i.path).name, i.label, i.start) for i in s.items]  # noqa: E731
        return [
            read_class_file(root / "list" / "classes.csv"),
            read_class_file(root / "list" / "classes.txt"),
            items(
                read_list(root / "list" / "val_space.txt", videos, root / "list" / "classes.csv")
            ),
            items(
                read_list(root / "list" / "val_names.csv", videos, root / "list" / "classes.txt")
            ),
            items(read_kinetics_csv(root / "kinetics" / "train.csv", videos)),
            items(read_hmdb51(root / "hmdb51", videos, split=1, subset="train")),
            items(read_ucf101(root / "ucf101", videos, split=1, subset="test")),
            read_ucf101(root / "ucf101", videos, split=1).class_names,
            items(read_k600_zs(root / "k600zs", videos, split=1)),
        ]

    full, without = everything(FIXTURES), everything(cut)
    assert all(full) and without == full
