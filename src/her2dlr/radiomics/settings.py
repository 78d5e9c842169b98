"""Settings of the radiomics stage: the ``radiomics:`` section of a study file."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from her2dlr.radiomics.parameters import shipped_params_help
from her2dlr.schema import StrictModel

__all__ = ["RadiomicsSettings"]


class RadiomicsSettings(StrictModel):
    params: str = Field("us2d", description=f"Shipped set ({shipped_params_help()}) or a PyRadiomics params YAML path.")
    roi: Literal["mask", "bbox", "auto"] = Field(
        "mask", description="'bbox': the mask's (or given box's) bounding rectangle, as in seed 000; 'auto': the "
                            "out-of-fold mask of the segmentation stage (her2dlr train seg).")
    pixel_size: Literal["training", "as_given"] = Field(
        "training", description="'training': 2D images whose pixel size differs from the training images' are "
                                "resampled to it, and what is assumed when a side gives none is said (see "
                                "her2dlr.radiomics.pixel_size); 'as_given': each image on its own pixel grid.")
    voxel_size: Literal["params", "training"] | float | list[float] = Field(
        "params", description="Volumes: 'params': the parameter set's resampledPixelSpacing (mri3d: 1 mm isotropic); "
                              "'training': per axis, the median voxel spacing of the training volumes; or a spacing "
                              "in mm, one number or [x, y, z] (see her2dlr.radiomics.voxel_size).")
    n_jobs: int = Field(-1, description="Parallel workers (-1: all cores).")
    backend: Literal["loky", "threading", "sequential", "dask", "ray"] = Field(
        "loky", description="joblib backend: loky (local processes), or dask / ray to run on a lab cluster.")
    scheduler: str | None = Field(
        None, description="Address of a running Dask scheduler (tcp://host:8786) or Ray cluster (ray://host:10001) "
                          "for backend dask / ray; the image paths must be readable by its workers.")

    @model_validator(mode="after")
    def _voxel_size_form(self) -> RadiomicsSettings:
        v = self.voxel_size
        if (isinstance(v, list) and (len(v) != 3 or min(v) <= 0)) or (isinstance(v, float) and v <= 0):
            raise ValueError(f"voxel_size {v!r}: 'params', 'training', a spacing in mm > 0 or three [x, y, z]")
        return self

    @model_validator(mode="after")
    def _scheduler_needs_cluster_backend(self) -> RadiomicsSettings:
        if self.scheduler is not None and self.backend not in ("dask", "ray"):
            raise ValueError(f"scheduler {self.scheduler!r} needs backend: dask (or ray), not {self.backend!r}")
        return self
