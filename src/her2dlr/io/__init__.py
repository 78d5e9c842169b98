"""Readers for images, volumes and tables, and atomic writers."""

from her2dlr.io.atomic import atomic_path, write_csv_atomic, write_parquet_atomic, write_text_atomic
from her2dlr.io.cells import is_missing, parse_bbox
from her2dlr.io.images import read_image, read_mask, to_grey
from her2dlr.io.tables import read_table
from her2dlr.io.video import VideoInfo, VideoReader, open_video

__all__ = [
    "VideoInfo",
    "VideoReader",
    "atomic_path",
    "is_missing",
    "open_video",
    "parse_bbox",
    "read_image",
    "read_mask",
    "read_table",
    "to_grey",
    "write_csv_atomic",
    "write_parquet_atomic",
    "write_text_atomic",
]
