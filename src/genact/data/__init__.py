"""Video input: decoding, sampling, augmentation, datasets and split readers."""

from genact.data.datasets import (
    SkipReport,
    VideoDataset,
    VideoItem,
    collate_videos,
    iterate,
    make_loader,
)
from genact.data.splits import (
    Split,
    load_split,
    read_class_file,
    read_folder,
    read_hmdb51,
    read_k600_zs,
    read_kinetics_csv,
    read_list,
    read_ucf101,
    readable_name,
)
from genact.data.transforms import VideoTransform
from genact.data.video import (
    VideoDecodeError,
    read_video,
    sample_indices,
    time_windows,
    video_duration,
    write_video,
)

__all__ = [
    "SkipReport",
    "Split",
    "VideoDataset",
    "VideoDecodeError",
    "VideoItem",
    "VideoTransform",
    "collate_videos",
    "iterate",
    "load_split",
    "make_loader",
    "read_class_file",
    "read_folder",
    "read_hmdb51",
    "read_k600_zs",
    "read_kinetics_csv",
    "read_list",
    "read_ucf101",
    "read_video",
    "readable_name",
    "sample_indices",
    "time_windows",
    "video_duration",
    "write_video",
]
