"""Settings of the deep stage: the ``deep:`` section of a study file.

Read by ``her2dlr train deep`` (network, ROI input, training, which folds) and ``her2dlr learn
dlr`` (``dlr:``). A command-line option, when given, overrides the study file. Unknown keys
are refused with the allowed ones; the architecture is checked when training starts (the
network registry needs torch, which reading a study file does not load).

Example (YAML)::

    deep:
      arch: densenet3block        # her2dlr train archs
      spatial_dims: 2             # 2: images (modality US); 3: volumes (modality MR), cubic ROIs
      slices: null                # 2.5D: k (odd) slices of an MR volume around the lesion as channels (spatial_dims: 2)
      image_size: 64              # default: 64 for densenet3block, 224 for the others (3D: 32, 64)
      channels: 1
      margin: 10                  # px around the lesion's bounding rectangle (seed 002)
      margin_fraction: 0.0        # more context: this share of the box's side on every side
      epochs: 40
      batch_size: 32
      lr: 0.001
      loss: weighted_ce           # or ce, focal
      scheduler: cosine           # or plateau, none
      patience: 10                # early stopping on the inner validation AUC
      keep: best                  # or last: the full schedule's last weights
      mixup: 0.0                  # Beta(a, a) mixup of each batch (0: off)
      label_smoothing: 0.0
      ema: 0.0                    # moving average of the weights (e.g. 0.99), validated and kept
      tta_flips: false            # predictions: mean over the ROI and its left-right mirror
      pretrain_epochs: 0          # self-supervised rotation pre-training on the training images
      multi_view: false           # balance the classes with views of the smaller class (seed 004)
      jigsaw: 0                   # jigsaw shuffle of training inputs: blocks (2D) / slabs of slices (3D) per side
      clinical_columns: []        # clinical factors fused at the head (mm_resnet); or clinical: true
      recipes:                    # candidates chosen per outer fold on the inner validation split
        - {name: base}
        - {name: context96, image_size: 96, margin: 0, margin_fraction: 0.25, mixup: 0.2, ema: 0.99}
      schemes: [kfold, holdout]
      final: true                 # also the network to deploy
      weights: null               # local file of pretrained weights (never downloaded)
      device: auto
      dlr: {radiomics: radiomics_us2d_bbox, model: lr, n_components: 64}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["DLRSettings", "DeepSettings"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DLRSettings(_Strict):
    """``deep.dlr``: the deep learning radiomics models of ``her2dlr learn dlr``."""

    radiomics: str = Field("radiomics", description="Radiomics table name under <run>/features (or a path).")
    model: str = Field("lr", description="Zoo classifier (her2dlr learn models).")
    n_components: int = Field(64, ge=1, description="PCA components of the deep features, fitted in-fold (seed 002).")


class DeepSettings(_Strict):
    """``deep:``: network, ROI input and training of ``her2dlr train deep``."""

    arch: str = Field("densenet3block", description="Network (her2dlr train archs).")
    spatial_dims: Literal[2, 3] = Field(2, description="2: images (US), 3: volumes (MR) with cubic ROIs.")
    slices: int | None = Field(None, ge=1, description="2.5D input: this many (odd) slices of an MR volume around "
                                                       "the lesion's centre slice as the channels of a 2D network "
                                                       "(spatial_dims: 2, channels: 1); null: off.")
    image_size: int | None = Field(None, ge=8, description="ROI side in px (default by network and spatial_dims).")
    channels: Literal[1, 3] = 1
    margin: int = Field(10, ge=0, description="Pixels added around the lesion's bounding rectangle.")
    margin_fraction: float = Field(0.0, ge=0, le=2, description="Context added on every side as a share of the "
                                                                "box's side (on top of margin).")
    keep_aspect: bool = Field(False, description="Square the ROI with image context instead of stretching it.")
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    loss: Literal["weighted_ce", "ce", "focal"] = "weighted_ce"
    scheduler: Literal["cosine", "plateau", "none"] = "cosine"
    patience: int = Field(10, ge=0, description="Early-stopping patience in epochs (0: off).")
    keep: Literal["best", "last"] = "best"
    mixup: float = Field(0.0, ge=0, description="Mixup: lambda ~ Beta(mixup, mixup) per batch; 0 is off.")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="Label smoothing of the cross-entropy.")
    ema: float = Field(0.0, ge=0, lt=1, description="Decay of the moving average of the weights (0: off).")
    tta_flips: bool = Field(False, description="Predict as the mean over the ROI and its left-right mirror.")
    pretrain_epochs: int = Field(0, ge=0, description="Rotation pre-training epochs on the inner training images.")
    recipes: list[dict[str, Any]] = Field(
        default_factory=list, description="Candidate recipes ({name, <setting>: value}) chosen in every outer fold "
                                          "by the inner validation AUC (her2dlr.deep.recipes); empty: one recipe.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Inner validation share of each training fold.")
    schemes: list[Literal["kfold", "holdout"]] = Field(default_factory=lambda: ["kfold"])
    final: bool = Field(False, description="Also train the deployable network on the hold-out's training rows.")
    weights: Path | None = Field(None, description="Local file of starting weights (never downloaded).")
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N.")
    allow_cpu_fallback: bool = False
    seed: int = 0
    multi_view: bool = Field(False, description="Balance each inner training part's classes with views of the "
                                                "smaller class's inputs (3D: axial, coronal, sagittal and turns; 2D: "
                                                "turns and mirror images); never validation or test cases.")
    jigsaw: int = Field(0, ge=0, description="Jigsaw shuffle of the training inputs every epoch: this many blocks "
                                             "(2D) or slabs of slices (3D) per side; 0 is off. Must divide image_size.")
    clinical_columns: list[str] = Field(
        default_factory=list, description="Clinical-pathological manifest columns fused at the network's head "
                                          "(mm_resnet), standardised on each training part.")
    clinical: bool = Field(False, description="Fuse every clinical column of the cohort (instead of listing them in "
                                              "clinical_columns).")
    roi: Literal["mask", "bbox", "auto"] = Field(
        "mask", description="The lesion: the given mask or box (same crop), or 'auto': the segmentation stage's "
                            "out-of-fold mask.")
    dlr: DLRSettings = Field(default_factory=DLRSettings)

    @field_validator("jigsaw")
    @classmethod
    def _jigsaw_grid(cls, value: int) -> int:
        if value == 1:
            raise ValueError("deep.jigsaw must be 0 (off) or a grid of 2 or more blocks per side; got 1")
        return value

    @field_validator("slices")
    @classmethod
    def _odd_slices(cls, value: int | None) -> int | None:
        if value is not None and value % 2 == 0:
            raise ValueError("deep.slices must be odd (k slices centred on the lesion's centre slice)")
        return value

    @field_validator("clinical_columns")
    @classmethod
    def _distinct_columns(cls, value: list[str]) -> list[str]:
        twice = sorted({c for c in value if value.count(c) > 1})
        if twice:
            raise ValueError(f"deep.clinical_columns names {twice} more than once")
        return value

    @model_validator(mode="after")
    def _slices_make_2d_grey_inputs(self) -> DeepSettings:
        if self.slices is None:
            return self
        if self.spatial_dims != 2:
            raise ValueError(f"deep.slices stacks {self.slices} slices of a volume as the channels of a 2D network: "
                             "set spatial_dims: 2 (or drop deep.slices for 3D cubes)")
        if self.channels != 1:
            raise ValueError("deep.slices: the slices are the channels of a grey volume; set channels: 1")
        return self

    @model_validator(mode="after")
    def _one_clinical_source(self) -> DeepSettings:
        if self.clinical and self.clinical_columns:
            raise ValueError("deep.clinical: true takes every clinical column of the cohort; drop it or drop "
                             "deep.clinical_columns (give one of the two)")
        return self

    def merged(self, **overrides: Any) -> DeepSettings:
        """A validated copy with the given values (``None`` = keep the study file's).

        Raises
        ------
        pydantic.ValidationError
            A given value is not allowed.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        return type(self).model_validate({**self.model_dump(), **given}) if given else self
