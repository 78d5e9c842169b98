"""Image preparation for the networks: ROI crop with margin, padding, resizing, normalisation (2D and 3D)."""

from her2dlr.imaging.roi import (
    PAD_MODES,
    SPATIAL_DIMS,
    Box,
    RoiSpec,
    crop_box,
    crop_roi,
    load_roi,
    prepare_roi,
    resize_image,
    roi_box,
    to_channels,
    zscore,
)

__all__ = ["PAD_MODES", "SPATIAL_DIMS", "Box", "RoiSpec", "crop_box", "crop_roi", "load_roi", "prepare_roi", "resize_image",
           "roi_box", "to_channels", "zscore"]
