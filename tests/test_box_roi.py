"""The box ROI (seed 000) is exactly the mask's bounding rectangle, as a plain PyRadiomics script draws it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from PIL import Image

from her2dlr.radiomics.extract import load_case
from her2dlr.radiomics.stage import rows_for_roi


def test_box_roi_is_the_masks_bounding_rectangle(tmp_path: Path):
    mask = np.zeros((30, 40), np.uint8)
    mask[7, 12] = 255  # an L-shaped lesion: rows 7-19, columns 5-12
    mask[10:20, 5:9] = 255
    Image.fromarray(mask).save(tmp_path / "m.png")
    Image.fromarray(np.full((30, 40), 90, np.uint8)).save(tmp_path / "i.png")
    table = pd.DataFrame({"case_id": ["a"], "image": [str(tmp_path / "i.png")], "mask": [str(tmp_path / "m.png")],
                          "bbox": [None], "spacing": [np.nan]})
    row = rows_for_roi(table, "bbox").iloc[0]
    assert row["bbox"] == "[5, 7, 8, 13]" and pd.isna(row["mask"])  # x, y, w, h by hand
    _, roi = load_case(row["image"], None, row["bbox"])
    expected = np.zeros((30, 40), np.uint8)
    expected[7:20, 5:13] = 1
    assert np.array_equal(sitk.GetArrayFromImage(roi), expected)
