"""The study files ``her2dlr init`` writes: the commented example, and the paper templates.

``her2dlr init --template seed000`` (... ``seed004``) writes a study file that runs one of the five
papers' protocols on the user's cohort, each setting commented with the paper's section; they are
the YAML files in ``her2dlr/data/templates/``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from her2dlr.errors import InputError
from her2dlr.io.atomic import write_text_atomic
from her2dlr.radiomics.parameters import shipped_params

__all__ = ["CLINICAL_BLOCK", "EXAMPLE_STUDY", "PAPER_TEMPLATES", "example_study", "template_text", "write_example",
           "write_template"]

#: The ``learn:`` lines that add the clinical model and its fusions (commented out in the example).
CLINICAL_BLOCK = """\
features: [radiomics_us2d_mask, clinical]
clinical:                  # the clinical branch (her2dlr.learn.settings.ClinicalConfig)
  columns: [age, menopause, ER, PR, Ki67, tumour_size]   # default: every clinical column of the sources
  units: {age: years, Ki67: "%", tumour_size: mm}        # shown in the model card and by her2dlr serve
  alpha_uni: 0.05          # univariable selection: p-value threshold
  alpha_multi: 0.05        # stepwise multivariable selection: p-value threshold
  fusion: [early, late, stack, combined]   # also: pairs (every imaging x clinical classifier, seed 001)
"""

_TEMPLATE = """\
# her2dlr study file. Paths are relative to this file's folder.
# Validate and build the cohort with:  her2dlr cohort qc study.yaml
name: her2-us                  # names the run folder: runs/her2-us/
# output_dir: runs/her2-us     # where every stage writes its outputs

cohort:
  # Text cells read as missing in tables (case-insensitive).
  missing_values: ["", "NA", "n/a", "unknown", "not available", "not applicable", "-"]
  sources:
    # A manifest table (CSV / XLSX / Parquet): one row per image.
    - kind: table
      path: data/cohort.xlsx
      sheet: 0
      image_root: data/images          # image and mask paths are relative to this folder
      image_column: image
      mask_column: mask                # several masks in one cell: joined by multi_value_separator
      # bbox_columns: [x, y, w, h]     # a box instead of a mask (seed 000: rectangular ROI)
      # bbox_column: box               # or one column holding [x, y, w, h]
      case_id_column: case_id
      patient_id_column: patient_id    # several images per patient stay on one side of every split
      # centre_column: centre          # needed for split.by_centre (external validation)
      # spacing_column: pixel_size     # pixel size, when PNG/JPEG files do not carry it
      # spacing_unit: mm               # mm or cm
      clinical_columns: [age, menopause, ER, PR, Ki67, tumour_size]
      clinical_types: {menopause: categorical}   # numeric | categorical | multi; guessed when absent
      label_columns: [ihc, ish]        # kept for the label rule
      multi_value_separator: "&"
      # time_column: rfs_months        # survival follow-up
      # event_column: recurrence
      # treatment_column: anti_her2
    # A folder per class, X.png with X_mask.png / X_mask_1.png (BUSI layout):
    # - kind: folders
    #   path: data/busi
    #   classes: [benign, malignant]
    #   label_column: class
    # A flat folder of volumes with masks found by a template (NRRD / NIfTI / DICOM):
    # - kind: files
    #   path: data/mri
    #   modality: MR
    #   image_glob: "*_image.nrrd"
    #   strip_from_stem: _image
    #   mask_template: "{stem_base}_label.nrrd"
    # DCE-MRI as DICOM (any folder tree, one or many patients; de-identified on read):
    # - kind: dicom
    #   path: data/dce
    #   phase: post3                   # pre | post<k> | last | peak (largest mean enhancement in the mask)
    #   image_from: phase              # or a kinetic map: subtraction | wash_in | ser | ttp
    #   maps: [subtraction, ser]       # extra volumes, columns image_<map>
    #   mask_glob: "*mask*.nrrd"       # in each study's folder; a mask of another geometry is refused ...
    #   resample_mask: false           # ... unless this is true
    #   # resample_mm: 1.0             # common isotropic voxel spacing
    #   table: data/dce_clinical.csv   # one row per study, matched by folder (or table_key: patient_id)
    #   table_key_column: folder
    #   clinical_columns: [age]
    #   label_columns: [ihc, ish]
    #   pseudonym_key: pseudonym.key   # secret keying the case ids; created when absent; keep it private

label:
  # column: any column, positive / negative values listed.
  # her2_status: HER2-positive vs negative from IHC + ISH (ASCO/CAP 2018).
  # her2_low: HER2-low (IHC 1+, or 2+ with ISH negative) vs HER2-zero.
  # her2_three_class: HER2-zero / HER2-low / HER2-positive.
  # IHC 2+ without an ISH result is reported and left out, never guessed.
  rule: her2_status
  ihc_column: ihc
  ish_column: ish
  # rule: column
  # column: Classification
  # positive: [malignant]
  # negative: [benign]

split:
  seed: 2024                 # splits depend on labels, groups and this seed only
  holdout:
    test_size: 0.3           # stratified, patient-level
  kfold:
    n_splits: 5              # repeated stratified group k-fold
    n_repeats: 3
  # by_centre:               # external validation: these centres form the test set
  #   test_centres: [hospital-B]

qc:
  lesion_policy: largest     # several lesions per image: largest | union | each (each lesion a case)
  # near_duplicate_distance: 10   # perceptual-hash Hamming distance for near-duplicates
  # resample_mask: false     # volumes: a mask on another grid than its image is refused; true resamples it

radiomics:
  params: us2d               # a shipped set below, or the path of your own PyRadiomics params YAML
  # shipped sets (also listed by `her2dlr extract radiomics --help`):
{params}
  roi: mask                  # mask, or bbox: the lesion's bounding rectangle (a box cell: [x, y, w, h];
                             # [x, y, z, w, h, d] on volumes), or auto: the out-of-fold masks of `train seg`
  pixel_size: training       # training: 2D images resampled to the training images' pixel size; as_given
  # voxel_size: params       # volumes: params (the set's resampledPixelSpacing) | training (median of the
  #                          # training volumes, per axis) | a spacing in mm, e.g. 1.0 or [0.7, 0.7, 1.5]
  n_jobs: -1                 # -1: all cores
  backend: loky              # loky | threading | sequential | dask | ray
  # scheduler: tcp://node01:8786   # with backend dask (ray: ray://node01:10001): run on a lab cluster (README)

learn:
{features}
  selection:                 # fitted inside every training fold, in this order (her2dlr learn steps)
    - {name: variance}
    - {name: zscore}
    - {name: ttest, alpha: 0.05}
    - {name: pearson, threshold: 0.9}
    - {name: greedy, threshold: 0.9}
    - {name: lasso, cv: 10}
  models: [lr, svm, rf, extratrees, xgboost, lightgbm]   # her2dlr learn models
  schemes: [kfold, holdout]  # outer evaluation on the splits above
  search: {inner_splits: 5, search: grid}   # best setting by inner-CV median AUC
  threshold: {method: youden}               # chosen on training data, applied unchanged to test
  # backend: dask                           # outer folds on a lab cluster: loky (default) | dask | ray
  # scheduler: tcp://node01:8786

deep:                        # her2dlr train deep study.yaml (options on the command line override)
  arch: densenet3block       # seed 000's network; her2dlr train archs lists the others
  spatial_dims: 2            # 2: images (modality US); 3: volumes (modality MR), cubic ROIs
  # slices: 5                # 2.5D: 5 slices of an MR volume around the lesion as channels (spatial_dims: 2)
  margin: 10                 # px around the lesion's bounding rectangle (seed 002)
  epochs: 40
  patience: 10               # early stopping on the inner validation AUC (keep: last = full schedule)
  schemes: [kfold, holdout]  # the same outer folds as the radiomics models
  final: false               # true: also train the network to deploy (for a k-fold-only study)
  device: auto               # CUDA when present, else the CPU
  dlr: {radiomics: radiomics_us2d_mask, model: lr, n_components: 64}   # her2dlr learn dlr study.yaml

# survival:                  # her2dlr survival run study.yaml
#   time_column: time        # the manifest's time / event / treatment columns (see the table source)
#   event_column: event
#   time_unit: months
#   group_columns: [treatment]
#   covariates: [age, tumour_size]
#   score_column: risk_score
#   treatment_column: treatment
"""


def example_study(*, clinical: bool = False) -> str:
    """The commented example study file.

    Parameters
    ----------
    clinical : bool, default=False
        Write :data:`CLINICAL_BLOCK` as study lines (the clinical model and its fusions) instead
        of as comments under ``learn.features``: what a user gets by uncommenting them.

    Returns
    -------
    str
        YAML text with comments.
    """
    width = max(map(len, shipped_params()))
    params = "\n".join(f"  #   {name:<{width}}  {desc}" for name, desc in shipped_params().items())
    block = CLINICAL_BLOCK.splitlines()
    if clinical:
        features = "\n".join(f"  {line}" for line in block)
    else:
        features = "\n".join([
            "  features: [radiomics_us2d_mask]   # tables under runs/<name>/features, joined by case id",
            "  # A clinical model and its fusions with the radiomics model: add `clinical` (the sources'",
            "  # clinical_columns, encoded and selected inside every training fold). Uncomment these lines",
            "  # (early: concatenate, then select; late: mean probability; stack: logistic regression on both",
            "  # models' logits; combined: signature + clinical variables, the nomogram model):",
            *(f"  # {line}" for line in block),
        ])
    return _TEMPLATE.replace("{params}", params).replace("{features}", features)


EXAMPLE_STUDY = example_study()
"""The example study file that ``her2dlr init`` writes."""


def write_example(path: str | Path, *, force: bool = False) -> Path:
    """Write :data:`EXAMPLE_STUDY` to ``path`` (refuses to overwrite unless ``force``)."""
    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{path} already exists; use --force to overwrite it.")
    return write_text_atomic(path, EXAMPLE_STUDY)


#: Paper template name -> what it reproduces (``her2dlr init --list-templates``).
PAPER_TEMPLATES = {
    "seed000": "Xu 2022 - ultrasound image, 3-block DenseNet on a drawn rectangle, radiomics and clinical comparators",
    "seed001": "Quan 2023 - ultrasound video, per-frame radiomics curves, time-frequency features + clinical pairs",
    "seed002": "Hu - ultrasound image, radiomics zoo, CNN + PCA deep features (DLR), clinical nomogram",
    "seed003": "MRI DLR - DCE-MRI 3D radiomics, U-Net DSFR features, their DLR average, HER2-low vs HER2-zero, "
               "Kaplan-Meier and AIC-stepwise Cox",
    "seed004": "Tong, DeepTEPP - DCE-MRI 3D network on recurrence, risk groups and anti-HER2 benefit per group",
}


def template_text(name: str) -> str:
    """The YAML text of paper template ``name`` (one of :data:`PAPER_TEMPLATES`).

    Raises
    ------
    InputError
        Unknown name (lists the known ones).
    """
    from her2dlr.errors import nearest

    if name not in PAPER_TEMPLATES:
        raise InputError(f"Unknown template '{name}'. Known: {', '.join(PAPER_TEMPLATES)}.{nearest(name, PAPER_TEMPLATES)}")
    return resources.files("her2dlr").joinpath("data", "templates", f"{name}.yaml").read_text(encoding="utf-8")


def write_template(name: str, path: str | Path, *, force: bool = False) -> Path:
    """Write paper template ``name`` to ``path`` (refuses to overwrite unless ``force``)."""
    text = template_text(name)
    path = Path(path)
    if path.exists() and not force:
        raise InputError(f"{path} already exists; use --force to overwrite it.")
    return write_text_atomic(path, text)
