"""Settings of the radiomics stage: the ``radiomics:`` section of a study file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from her2dlr.radiomics.parameters import shipped_params_help
from her2dlr.schema import StrictModel

__all__ = ["RadiomicsSettings"]


class RadiomicsSettings(StrictModel):
    params: str = Field("us2d", description=f"Shipped set ({shipped_params_help()}) or a PyRadiomics params YAML path.")
    roi: Literal["mask", "bbox", "auto"] = Field(
        "mask", description="'bbox': the mask's (or given box's) bounding rectangle, as in seed 000; 'auto': the "
                            "out-of-fold mask of the segmentation stage (her2dlr train seg).")
    n_jobs: int = Field(-1, description="Parallel workers (-1: all cores).")
    backend: Literal["loky", "threading", "sequential", "dask", "ray"] = "loky"
