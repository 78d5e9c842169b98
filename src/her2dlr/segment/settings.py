"""Settings of the segmentation stage: the ``segment:`` section of a study file.

Read by ``her2dlr train seg`` (and ``her2dlr run``); a command-line option overrides it.
Reading a study file does not load torch: the network names are checked when training starts.
``segment.dsfr`` also sets ``her2dlr extract dsfr`` and ``her2dlr learn dsfr`` (seed 003), and,
with ``models: true``, makes ``her2dlr run`` chain them after the segmentation networks.

Example (YAML)::

    segment:
      arch: unet                 # unet, attention_unet or segresnet
      spatial_dims: 2            # 3 for volumes
      image_size: null           # default: 128 (2D), 64 (3D)
      features: null             # level widths, default the arch's (unet: [16, 32, 64, 128, 256])
      box_prompt: false          # true: the network reads the reader's box (seed 000: nobody delineates)
      epochs: 60
      batch_size: 16
      lr: 0.001
      patience: 10               # early stopping on the inner validation Dice
      repetition: 0              # the k-fold repetition whose outer folds give the out-of-fold masks
      final: true                # also the network trained on every case with a mask (deployable)
      post: {threshold: 0.5, keep: largest, min_size: 0.0, fill_holes: true}
      dsfr:                      # deep semantic segmentation features (seed 003)
        layer: 9                 # the 10th activation layer (0-based index 9), or a module name
        n_clusters: 2            # k-means groups of the channels; the largest is kept
        models: false            # true: `her2dlr run` extracts them and fits the DSFR, radiomics, DLR models
        radiomics: null          # radiomics table of those models; default: the first in learn.features
        model: lr                # zoo classifier of the DSFR and radiomics models
        selection: null          # after the channel clusters; default seed 003's zscore, mutual_info, lasso
        heatmaps: 4              # cases drawn with their kept channels
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath
from typing import Any, Literal

from pydantic import Field

from her2dlr.errors import InputError
from her2dlr.schema import StrictModel

__all__ = ["DSFRSettings", "SegPostConfig", "SegmentSettings"]


class SegPostConfig(StrictModel):
    """``segment.post``: how a probability map becomes a mask."""

    threshold: float = Field(0.5, gt=0, lt=1)
    keep: Literal["largest", "all"] = "largest"
    min_size: float = Field(0.0, ge=0, description="Smallest kept component: a fraction of the image (< 1) or pixels.")
    fill_holes: bool = True


class DSFRSettings(StrictModel):
    """``segment.dsfr``: deep semantic segmentation features (seed 003)."""

    layer: int | str = Field(9, description="Activation layer: 0-based index in forward order, or its name.")
    n_clusters: int = Field(2, ge=2, le=10)
    models: bool = Field(False, description="her2dlr run also extracts the DSFR features and fits the DSFR, "
                                            "radiomics and DLR models (her2dlr extract dsfr + learn dsfr).")
    radiomics: str | None = Field(None, description="Radiomics table of the radiomics and DLR models (name under "
                                                    "<run>/features, or a path); default: the first radiomics "
                                                    "table of learn.features.")
    model: str = Field("lr", description="Zoo classifier of the DSFR and radiomics models (her2dlr learn models).")
    selection: list[dict[str, Any]] | None = Field(
        None, description="Selection steps after the channel clustering, as in learn.selection (checked when the "
                          "study file is read); default seed 003's: zscore, mutual_info (k: 20), lasso (cv: 5).")
    heatmaps: int = Field(4, ge=0, description="Cases drawn with their kept channels over the image (0: none).")

    def radiomics_table(self, learn_features: Sequence[str] = ()) -> str | None:
        """The radiomics table the models read: ``radiomics``, else the first ``radiomics*`` name of ``learn_features``.

        None when neither gives one (see :meth:`require_radiomics_table`).
        """
        if self.radiomics is not None:
            return self.radiomics
        return next((n for n in learn_features if PurePath(n).name.startswith("radiomics")), None)

    def require_radiomics_table(self, learn_features: Sequence[str] = ()) -> str:
        """:meth:`radiomics_table`, or a clear error naming the keys.

        Raises
        ------
        InputError
            Neither ``segment.dsfr.radiomics`` nor a radiomics table in ``learn.features``.
        """
        name = self.radiomics_table(learn_features)
        if name is None:
            have = f"learn.features is {list(learn_features)}" if learn_features else "the study has no learn.features"
            raise InputError(
                "segment.dsfr.radiomics: the DSFR models (seed 003) need a radiomics table for the radiomics and DLR "
                f"models, and {have} with no radiomics table in it. Name one, e.g. `segment.dsfr.radiomics: "
                "radiomics_mri3d_mask` (a table `her2dlr extract radiomics` writes under <run>/features, or a "
                "path to your own table), or add it to learn.features.")
        return name


class SegmentSettings(StrictModel):
    """``segment:``: the lesion segmentation networks trained on the study's outer folds."""

    arch: Literal["unet", "attention_unet", "segresnet"] = "unet"
    spatial_dims: Literal[2, 3] = 2
    image_size: int | None = Field(None, ge=16, description="Network input side (default: 128 in 2D, 64 in 3D).")
    features: list[int] | None = Field(
        None, min_length=2, description="Level widths from the input down (default: the arch's, e.g. unet "
                                        "[16, 32, 64, 128, 256]); fewer levels for small inputs.")
    box_prompt: bool = Field(False, description="The network reads the lesion box as an extra channel.")
    box_margin: float = Field(0.25, ge=0, le=10, description="Context around a box, as a fraction of its size.")
    epochs: int = Field(60, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    patience: int = Field(10, ge=0)
    val_fraction: float = Field(0.15, gt=0, lt=0.9)
    seed: int = Field(0, ge=0)
    device: str = "auto"
    repetition: int = Field(0, ge=0, description="k-fold repetition whose outer folds give the out-of-fold masks.")
    final: bool = Field(True, description="Also train the network on every case with a mask (for new cases).")
    post: SegPostConfig = Field(default_factory=SegPostConfig)
    dsfr: DSFRSettings = Field(default_factory=DSFRSettings)

    @property
    def size(self) -> int:
        """The network input side."""
        return self.image_size or (128 if self.spatial_dims == 2 else 64)
